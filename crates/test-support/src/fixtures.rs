//! Files of the repository the tests read: the seed package (`examples/`) and its golden
//! replies (`tests/golden/seed/`). Everything is inside the repository; nothing beside it.

use std::path::{Path, PathBuf};

/// The repository root (this crate is `crates/test-support`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/test-support is two levels below the repository root")
        .to_path_buf()
}

/// The seed package: Cerb's "Twilio Bot" package, unmodified
/// (`examples/twilio-bot.package.json`; its origin in `examples/README.md`).
pub fn seed_package_path() -> PathBuf {
    repo_root().join("examples/twilio-bot.package.json")
}

/// The seed package's text.
pub fn seed_package() -> String {
    read(&seed_package_path(), "the seed package")
}

/// A byte-exact reply of the seed package's webhook behavior, from `tests/golden/seed/`.
pub fn golden(name: &str) -> String {
    read(
        &repo_root().join("tests/golden/seed").join(name),
        "golden file",
    )
}

fn read(path: &Path, what: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{what} at {}: {e}", path.display()))
}
