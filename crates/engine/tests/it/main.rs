//! Integration tests of the behavior engine: tree semantics, conditions and actions, driven
//! through the public API with behaviors written as Cerb JSON.

mod actions;
mod conditions;
mod keys;
mod loops;
mod support;
mod tree;
mod variables;
