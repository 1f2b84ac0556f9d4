//! Cerb behavior engine.
