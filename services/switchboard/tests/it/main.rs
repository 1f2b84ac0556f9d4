//! Tests of the `switchboard` CLI: the simulator on the seed package (golden outputs), and the
//! binary's interface (exit codes, one-line errors).

mod account_kinds;
mod cli;
mod jobs;
mod lifecycle;
mod retention;
mod rotation;
mod seed;
mod views;

/// The fixtures: the repository root, the seed package (`examples/twilio-bot.package.json`)
/// and its golden replies (`tests/golden/seed/`).
pub use switchboard_test_support::{
    golden, repo_root, seed_package, seed_package_path as seed_path,
};
