//! What a service binary must not do with secrets, checked the same way for each: run with the
//! test suite's public key (without SWITCHBOARD_ALLOW_TEST_KEY=1, tests only), or show a password
//! from DATABASE_URL or NATS_URL, NATS_PASSWORD or NATS_TOKEN, or a master key, in `--help` or in
//! an error.

use std::process::{Command, Output};

use crate::MASTER_KEY;

fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(bin);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("the binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `bin run` refuses the test suite's public key, as the current key and among the old ones,
/// with one line saying how to make a key.
pub fn the_test_key_is_refused(bin: &str) {
    let env = [
        ("DATABASE_URL", "postgres://127.0.0.1:1/db"),
        ("NATS_URL", "nats://127.0.0.1:1"),
        ("SWITCHBOARD_MASTER_KEY", MASTER_KEY),
    ];
    let out = run(bin, &["run"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("Error: "))
        .unwrap_or_default();
    assert_eq!(
        line,
        "Error: SWITCHBOARD_MASTER_KEY is the public test key of Switchboard's test suite, which anyone can read: make a key with `openssl rand -base64 32` (only tests may use it, with SWITCHBOARD_ALLOW_TEST_KEY=1)",
        "{stderr}"
    );
    // Among the old keys too.
    let out = run(
        bin,
        &["run"],
        &[
            ("DATABASE_URL", "postgres://127.0.0.1:1/db"),
            ("SWITCHBOARD_MASTER_KEY", &"ab".repeat(32)),
            ("SWITCHBOARD_OLD_MASTER_KEYS", MASTER_KEY),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("Error: SWITCHBOARD_OLD_MASTER_KEYS is the public test key"),
        "{}",
        text(&out)
    );
}

/// Neither `bin --help` nor the error of `bin migrate` against an unreachable database shows a
/// password from DATABASE_URL or NATS_URL, NATS_PASSWORD, NATS_TOKEN, or a master key.
pub fn passwords_are_never_shown(bin: &str) {
    let env = [
        ("DATABASE_URL", "postgres://u:s3cr3t@127.0.0.1:1/db"),
        ("NATS_URL", "nats://n:n4ts3cr3t@127.0.0.1:1"),
        ("NATS_USER", "n"),
        ("NATS_PASSWORD", "n4tsp4ssw0rd"),
        ("NATS_TOKEN", "n4tst0k3n"),
        ("SWITCHBOARD_MASTER_KEY", &"ab".repeat(32)),
        ("SWITCHBOARD_OLD_MASTER_KEYS", &"cd".repeat(32)),
    ];
    let help = run(bin, &["--help"], &env);
    assert!(help.status.success());
    assert!(text(&help).contains("DATABASE_URL"), "{}", text(&help));
    // PostgreSQL is not there: the error is printed.
    let failed = run(bin, &["migrate"], &env);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert!(text(&failed).contains("Error: "), "{}", text(&failed));
    for out in [&help, &failed] {
        for secret in [
            "s3cr3t",
            "n4ts3cr3t",
            "n4tsp4ssw0rd",
            "n4tst0k3n",
            &"ab".repeat(32),
            &"cd".repeat(32),
        ] {
            assert!(!text(out).contains(secret), "{secret}: {}", text(out));
        }
    }
}
