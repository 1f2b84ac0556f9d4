//! The `switchboard simulate` binary as other tools script it: the exact interface, `--json`
//! output, exit codes and one-line errors.

use std::process::Command;

use pretty_assertions::assert_eq;
use serde_json::Value;

use crate::{golden, seed_path};

fn switchboard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .output()
        .expect("runs")
}

#[test]
fn the_documented_command_works_as_it_stands() {
    let seed = seed_path();
    let out = switchboard(&[
        "simulate",
        seed.to_str().unwrap(),
        "--behavior",
        "behavior_43",
        "--param",
        "Body=help",
        "--param",
        "From=+15551234567",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("Text: `help` is `help`"), "{stdout}");
    assert!(
        stdout.ends_with(&format!("{}\n", golden("help.xml"))),
        "{stdout}"
    );
}

#[test]
fn json_output_has_the_documented_shape() {
    let seed = seed_path();
    let out = switchboard(&[
        "simulate",
        seed.to_str().unwrap(),
        "--behavior",
        "behavior_43",
        "--param",
        "Body=logo",
        "--param",
        "From=+15551234567",
        "--json",
    ]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "body",
            "bot_keys",
            "errors",
            "headers",
            "http_requests",
            "status",
            "trace",
            "vars"
        ]
    );
    assert_eq!(v["status"], 200);
    assert_eq!(v["body"], golden("logo.xml"));
    assert_eq!(v["headers"]["content-type"], "text/xml; charset=utf-8");
    assert!(v["trace"].as_array().unwrap().len() > 5);
}

#[test]
fn bad_input_exits_non_zero_with_one_line() {
    let seed = seed_path();
    let seed = seed.to_str().unwrap();
    let bad_json = std::env::temp_dir().join(format!("sb-bad-{}.json", std::process::id()));
    std::fs::write(&bad_json, "{\"package\": ").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["simulate", "/nonexistent/p.json", "--behavior", "x"],
            "cannot read /nonexistent/p.json",
        ),
        (
            vec!["simulate", bad_json.to_str().unwrap(), "--behavior", "x"],
            "Invalid JSON",
        ),
        (
            vec!["simulate", seed, "--behavior", "behavior_99"],
            "unknown behavior uid 'behavior_99'",
        ),
        (
            vec![
                "simulate",
                seed,
                "--behavior",
                "behavior_43",
                "--param",
                "Body",
            ],
            "'Body' is not NAME=VALUE",
        ),
        (
            vec![
                "simulate",
                seed,
                "--behavior",
                "behavior_43",
                "--param",
                "=x",
            ],
            "empty name",
        ),
        (vec!["simulate", seed], "--behavior"),
        (
            vec![
                "simulate",
                seed,
                "--behavior",
                "behavior_43",
                "--prompt",
                "nosuch=1",
            ],
            "the package has no prompt 'nosuch' (its prompts: twilio_account_id, account_sid, default_from)",
        ),
        (
            vec![
                "simulate",
                seed,
                "--behavior",
                "behavior_43",
                "--prompt",
                "default_from=+15551230000",
                "--prompt",
                "default_from=+15551230001",
            ],
            "--prompt default_from is given more than once",
        ),
        (
            vec![
                "simulate",
                seed,
                "--behavior",
                "behavior_43",
                "--method",
                "GE T",
            ],
            "'GE T' is not an HTTP method",
        ),
        (
            vec![
                "simulate",
                seed,
                "--behavior",
                "behavior_43",
                "--var",
                "var_to=1",
            ],
            "behavior 'behavior_43' is a webhook behavior",
        ),
        (
            vec![
                "simulate",
                seed,
                "--behavior",
                "behavior_41",
                "--var",
                "nosuch=1",
            ],
            "behavior 'behavior_41' has no variable 'nosuch' (its variables: var_to, var_body)",
        ),
        (
            vec![
                "simulate",
                seed,
                "--behavior",
                "behavior_41",
                "--var",
                "var_to=+15551230000",
                "--var",
                "var_to=+15551230001",
            ],
            "--var var_to is given more than once",
        ),
        (
            vec![
                "simulate",
                seed,
                "--behavior",
                "behavior_41",
                "--param",
                "Body=hi",
            ],
            "--param: behavior 'behavior_41' is a macro behavior",
        ),
        (
            vec![
                "simulate",
                seed,
                "--behavior",
                "behavior_41",
                "--method",
                "GET",
            ],
            "--method: behavior 'behavior_41' is a macro behavior",
        ),
        (
            vec!["run", "bot_twilio", "behavior_41", "--var", "var_to"],
            "'var_to' is not NAME=VALUE",
        ),
        (
            vec![
                "run",
                "bot_twilio",
                "behavior_41",
                "--var",
                "var_to=1",
                "--var",
                "var_to=2",
            ],
            "--var var_to is given more than once",
        ),
        (vec!["run", "bot_twilio"], "BEHAVIOR"),
        (
            // Nothing listens on port 9: NATS is unreachable.
            vec![
                "run",
                "bot_twilio",
                "behavior_41",
                "--nats-url",
                "nats://127.0.0.1:9",
            ],
            "connecting to NATS at nats://127.0.0.1:9",
        ),
    ];
    for (args, needle) in cases {
        let out = switchboard(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: one line, got {stderr:?}"
        );
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr:?} should mention {needle:?}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    std::fs::remove_file(bad_json).ok();
}

/// A reader that goes away (`switchboard simulate ... | head -1`) ends the CLI quietly: no panic
/// about a broken pipe.
#[test]
fn a_closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;

    let seed = seed_path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "simulate",
            seed.to_str().unwrap(),
            "--behavior",
            "behavior_43",
        ])
        .args(["--param", "Body=help", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    // The only read end of the pipe is closed before the child has written anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("waits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(libc_sigpipe()),
        "{:?}",
        out.status
    );
}

/// SIGPIPE is 13 on every Unix the CLI is built for (Linux, macOS, the BSDs).
fn libc_sigpipe() -> i32 {
    13
}

/// A refused package: one issue per line under its feature with counts (stderr), or with
/// `--json` one object `{"errors": [...]}` on stdout; non-zero exit either way.
#[test]
fn refused_packages_list_every_issue_by_feature_or_as_json() {
    let mut doc: Value = serde_json::from_str(&crate::seed_package()).unwrap();
    let help = doc["bots"][0]["behaviors"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|b| b["uid"] == "behavior_43")
        .unwrap();
    let actions = help["nodes"][0]["nodes"][0]["nodes"][0]["params"]["actions"]
        .as_array_mut()
        .unwrap();
    actions.push(serde_json::json!({"action": "send_email", "to": "a@b"}));
    actions.push(serde_json::json!({"action": "send_email", "to": "c@d"}));
    doc["workspaces"] = serde_json::json!([{"uid": "workspace_1"}]);
    let path = std::env::temp_dir().join(format!("sb-refused-{}.json", std::process::id()));
    std::fs::write(&path, doc.to_string()).unwrap();
    let path = path.to_str().unwrap();

    let out = switchboard(&["simulate", path, "--behavior", "behavior_43"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let node = help_title(&doc);
    assert_eq!(
        stderr,
        format!(
            "error: invalid package: 3 issues
  action 'send_email' (2):
    bots (behavior_43) nodes[0].nodes[0].nodes[0].params.actions[1].action [node '{node}']: Unsupported action 'send_email'
    bots (behavior_43) nodes[0].nodes[0].nodes[0].params.actions[2].action [node '{node}']: Unsupported action 'send_email'
  section 'workspaces' (1):
    workspaces: Unsupported section 'workspaces': Switchboard imports only bots, behaviors and webhook_listener records
"
        )
    );

    let out = switchboard(&["simulate", path, "--behavior", "behavior_43", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3);
    assert_eq!(
        errors[0],
        serde_json::json!({
            "section": "bots",
            "uid": "behavior_43",
            "node": node,
            "path": "nodes[0].nodes[0].nodes[0].params.actions[1].action",
            "feature": "action 'send_email'",
            "message": "Unsupported action 'send_email'"
        })
    );
    assert_eq!(errors[2]["feature"], "section 'workspaces'");
    assert_eq!(errors[2]["uid"], Value::Null);
    std::fs::remove_file(path).ok();
}

/// The title of the seed's "help" reply action node.
fn help_title(doc: &Value) -> String {
    doc["bots"][0]["behaviors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["uid"] == "behavior_43")
        .unwrap()["nodes"][0]["nodes"][0]["nodes"][0]["title"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The bot keys fixture (`examples/message-counter.package.json`): `_get_key` and `_set_key` run
/// in the simulator as in Cerb's, in memory, and the keys set are listed (text and `--json`).
#[test]
fn simulate_shows_the_bot_keys_a_run_set() {
    let package = seed_path().with_file_name("message-counter.package.json");
    let package = package.to_str().unwrap();
    let args = [
        "simulate",
        package,
        "--behavior",
        "behavior_count",
        "--prompt",
        "window=2030-01-01 00:00",
        "--param",
        "Body=hi",
        "--param",
        "From=+15551234567",
    ];
    let out = switchboard(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for expected in [
        ">> Getting value for persistent key: messages:+15551234567",
        ">> Setting value for persistent key: messages:+15551234567\n",
        "Expires: Tue, 01 Jan 2030 00:00:00 +0000\n",
        "== Bot keys (kept in memory for this simulation only) ==\n\"messages:+15551234567\" = \"1\" (expires: 2030-01-01T00:00:00Z)\n",
        "Welcome! This is your first message.",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    let out = switchboard(&[&args[..], &["--json"]].concat());
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(
        v["bot_keys"],
        serde_json::json!([{
            "bot_id": v["bot_keys"][0]["bot_id"],
            "key": "messages:+15551234567",
            "value": "1",
            "expires_at": 1_893_456_000
        }])
    );
    assert!(v["bot_keys"][0]["bot_id"].is_i64());
    assert_eq!(v["vars"]["message_count"], false);
}
