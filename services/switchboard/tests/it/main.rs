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

/// What a run of the `switchboard` binary printed, and its exit code.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `switchboard ARGS` with `env` and none of the caller's Switchboard settings, its
/// standard input closed.
pub async fn cli(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.args(args);
    for var in [
        "SWITCHBOARD_MASTER_KEY",
        "SWITCHBOARD_OLD_MASTER_KEYS",
        "SWITCHBOARD_ALLOW_TEST_KEY",
        "DATABASE_URL",
        "NATS_URL",
        "SWITCHBOARD_SMS_FROM",
        "TWILIO_AUTH_TOKEN",
        "ACCOUNT_TOKEN",
        "ACCOUNT_PASSWORD",
    ] {
        command.env_remove(var);
    }
    command.stdin(std::process::Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || command.output().expect("runs"))
        .await
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}
