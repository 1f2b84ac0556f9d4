//! `switchboard send` and `switchboard lookup` as a script calls them: arguments are checked
//! with the job contract's rules before anything is published, and every error is one line that
//! names the option. (The outcome printed with a running outbound service is tested end to end
//! in `tests/e2e/tests/it/status.rs`.)

use std::process::Command;

fn switchboard(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("SWITCHBOARD_SMS_FROM")
        // Nothing listens here: a command that got as far as NATS says so.
        .env("NATS_URL", "nats://127.0.0.1:9")
        .output()
        .expect("runs");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn bad_arguments_are_refused_before_anything_is_published() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "send",
                "--to",
                "555-1234",
                "--body",
                "hi",
                "--from",
                "+15005550006",
                "--account",
                "1",
            ],
            "error: --to: must be E.164",
        ),
        (
            &[
                "send",
                "--to",
                "+14155551234",
                "--body",
                &"x".repeat(1601),
                "--from",
                "Shop",
                "--account",
                "acme",
            ],
            "error: --body: 1601 characters; at most 1600",
        ),
        (
            &[
                "send",
                "--to",
                "+14155551234",
                "--body",
                "hi",
                "--account",
                "1",
            ],
            "error: --from is required",
        ),
        (
            &[
                "send",
                "--to",
                "+14155551234",
                "--body",
                "hi",
                "--from",
                "12345",
                "--account",
                "1",
            ],
            "error: --from: must be an E.164 number or an alphanumeric sender ID",
        ),
        (
            &["lookup", "+14155551234"],
            "error: --account is required when DATABASE_URL is not set",
        ),
        (
            &[
                "lookup",
                "+14155551234",
                "--field",
                "carrier",
                "--account",
                "1",
            ],
            "error: --field: unknown \"carrier\"",
        ),
        (
            &["lookup", "4155551234", "--account", "1"],
            "error: NUMBER: must be E.164",
        ),
        (
            &[
                "send",
                "--to",
                "+14155551234",
                "--body",
                "hi",
                "--from",
                "+15005550006",
                "--account",
                "1",
                "--wait",
            ],
            "error: connecting to NATS at nats://127.0.0.1:9",
        ),
    ];
    for (args, expected) in cases {
        let (code, stderr) = switchboard(args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with(expected), "{args:?}: {stderr}");
    }
    let (code, stderr) = switchboard(&[
        "lookup",
        "+14155551234",
        "--field",
        "caller_name",
        "--v1-type",
        "carrier",
    ]);
    assert_eq!(code, 2, "a usage error: {stderr}");
    assert!(stderr.contains("--v1-type"), "{stderr}");
}

/// NATS options that do not fit together (or a file that is not there) stop a command that needs
/// NATS with one line naming them, before anything connects, and never with the password.
#[test]
fn conflicting_nats_options_are_named_without_the_password() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("NATS_CREDS", "/nonexistent/user.creds"),
                ("NATS_USER", "cli"),
                ("NATS_PASSWORD", "s3cr3t-pw"),
            ],
            "error: NATS_CREDS and NATS_USER/NATS_PASSWORD are both set: authenticate to NATS one way only",
        ),
        (
            &[
                ("NATS_URL", "nats://cli:s3cr3t-pw@127.0.0.1:9"),
                ("NATS_TOKEN", "s3cr3t-tok"),
            ],
            "error: NATS_TOKEN and the credentials in NATS_URL are both set: authenticate to NATS one way only",
        ),
        (
            &[("NATS_USER", "cli")],
            "error: NATS_USER is set without NATS_PASSWORD",
        ),
        (
            &[("NATS_CA", "/nonexistent/ca.pem")],
            "error: NATS_CA: cannot read /nonexistent/ca.pem",
        ),
    ];
    for (env, expected) in cases {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command.args(["run", "bot_twilio", "behavior_41"]);
        for name in [
            "NATS_URL",
            "NATS_CREDS",
            "NATS_NKEY",
            "NATS_USER",
            "NATS_PASSWORD",
            "NATS_TOKEN",
            "NATS_CA",
            "NATS_CERT",
            "NATS_KEY",
        ] {
            command.env_remove(name);
        }
        command
            .env("NATS_URL", "nats://127.0.0.1:9")
            .envs(env.iter().copied());
        let out = command.output().expect("runs");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with(expected), "{env:?}: {stderr}");
        assert!(
            !stderr.contains("s3cr3t"),
            "{env:?}: the password shown: {stderr}"
        );
    }
}
