//! The `switchboard` operator CLI as a library: each subcommand is a function the binary and the
//! tests call alike.

pub mod accounts;
pub mod args;
pub mod jobs;
pub mod lifecycle;
pub mod ops;
pub mod refusal;
pub mod run;
pub mod simulate;
pub mod views;
