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
