//! Integration tests of the package crate: the seed Twilio package planned exactly, every import
//! error with its message and location, import-time templates, placeholders and hostile input.

mod error_table;
mod errors;
mod hostile;
mod placeholders;
mod seed;
mod support;
mod templates;
