//! Tests of the `switchboard` CLI: the simulator on the seed package (golden outputs), and the
//! binary's interface (exit codes, one-line errors).

mod cli;
mod jobs;
mod seed;

use std::path::PathBuf;

/// The repository root (`services/switchboard/../..`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The seed package, read from `shared/` next to the repository (as CI lays it out).
pub fn seed_package() -> String {
    let path = repo_root().join("../shared/seed/twilio-bot.package.json");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the seed package must exist at {}: {e}", path.display()))
}

pub fn seed_path() -> PathBuf {
    repo_root().join("../shared/seed/twilio-bot.package.json")
}

/// A golden body from `tests/golden/seed/`.
pub fn golden(name: &str) -> String {
    let path = repo_root().join("tests/golden/seed").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("golden file {}: {e}", path.display()))
}
