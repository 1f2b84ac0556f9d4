//! The `bots update|revisions|rollback|export|delete` commands through the binary, on a fresh
//! database with the seed package imported (tests/e2e/tests/it/lifecycle.rs has them against a
//! running worker).

use std::process::Command;

use serde_json::Value;
use switchboard_store::{MasterKey, Store};
use switchboard_test_support::{ACCOUNT_SID, AUTH_TOKEN, MASTER_KEY, fresh_database, unique};
use switchboard_wire::Subjects;

use crate::{Out, output, seed_package};

async fn cli(args: &[&str], database_url: &str) -> Out {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .args(args)
        .env_remove("SWITCHBOARD_OLD_MASTER_KEYS")
        .env("DATABASE_URL", database_url)
        .env("SWITCHBOARD_MASTER_KEY", MASTER_KEY)
        .env("SWITCHBOARD_ALLOW_TEST_KEY", "1")
        .env("NATS_URL", "nats://127.0.0.1:4222")
        .env("SWITCHBOARD_SUBJECT_PREFIX", unique("sbl"))
        .stdin(std::process::Stdio::null());
    output(command).await
}

#[tokio::test]
async fn update_dry_run_revisions_rollback_export_and_delete_from_the_command_line() {
    let (database_url, pool) = fresh_database().await.unwrap();
    let store = Store::new(pool, Some(MasterKey::parse(MASTER_KEY).unwrap()));
    let env = switchboard::ops::Env {
        store: store.clone(),
        nats: None,
        subjects: Subjects::new(&unique("sbl")),
        public_base_url: "http://localhost:8080".into(),
    };
    let account = env
        .add_account(
            "twilio",
            ACCOUNT_SID,
            &secrecy::SecretString::from(AUTH_TOKEN),
        )
        .await
        .unwrap();
    let prompts = [
        format!("twilio_account_id={}", account.id),
        format!("account_sid={ACCOUNT_SID}"),
        "default_from=+15557654321".to_string(),
    ];
    let answers: Vec<switchboard::args::KeyValue> =
        prompts.iter().map(|s| s.parse().unwrap()).collect();
    let (report, _) = env.import(&seed_package(), &answers).await.unwrap();
    let guid = report.webhooks[0].guid.clone();
    let bot = report
        .records
        .iter()
        .find(|r| r.uid == "bot_twilio")
        .unwrap()
        .id;
    let bot = bot.to_string();
    let dir = std::env::temp_dir().join(unique("sb-lifecycle"));
    std::fs::create_dir_all(&dir).unwrap();
    let modified = dir.join("modified.json");
    std::fs::write(
        &modified,
        seed_package().replace("You can say:", "Say one of:"),
    )
    .unwrap();
    let modified = modified.to_str().unwrap();
    let mut update = vec!["bots", "update", bot.as_str(), modified];
    for p in &prompts {
        update.extend(["--prompt", p.as_str()]);
    }

    // --dry-run names the changed behavior by uid and name and changes nothing.
    let mut dry = update.clone();
    dry.push("--dry-run");
    let out = cli(&dry, &database_url).await.ok();
    let behavior_43 = report
        .records
        .iter()
        .find(|r| r.uid == "behavior_43")
        .unwrap()
        .id;
    assert_eq!(
        out.stdout,
        format!(
            "Bot {bot} (dry run, nothing changed):\n  ~ behavior behavior_43 'Respond to Twilio SMS webhook' (id {behavior_43})\n"
        )
    );
    assert_eq!(
        store
            .list_revisions(bot.parse().unwrap())
            .await
            .unwrap()
            .len(),
        1
    );

    let mut json = update.clone();
    json.push("--json");
    let out: Value = serde_json::from_str(&cli(&json, &database_url).await.ok().stdout).unwrap();
    assert_eq!(out["revision"], 2);
    assert_eq!(out["changes"]["behaviors_changed"][0]["uid"], "behavior_43");
    assert_eq!(store.list_webhooks().await.unwrap()[0].guid, guid);

    let out = cli(&["bots", "revisions", &bot], &database_url).await.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert!(lines[0].starts_with("REVISION"));
    assert!(lines[1].starts_with("1        import"), "{}", lines[1]);
    assert!(lines[2].starts_with("2        update"), "{}", lines[2]);
    assert!(
        lines[2].ends_with("behaviors +0 ~1 -0, webhooks +0 ~0 -0"),
        "{}",
        lines[2]
    );

    let out = cli(&["bots", "rollback", &bot, "1"], &database_url)
        .await
        .ok();
    assert!(
        out.stdout
            .starts_with(&format!("Bot {bot} is at revision 3:\n")),
        "{}",
        out.stdout
    );
    let out = cli(&["bots", "rollback", &bot, "9"], &database_url).await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("revision 9 of bot"), "{}", out.stderr);

    let exported = dir.join("export.json");
    cli(
        &[
            "bots",
            "export",
            &bot,
            "--output",
            exported.to_str().unwrap(),
        ],
        &database_url,
    )
    .await
    .ok();
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&exported).unwrap()).unwrap();
    assert_eq!(doc["bots"][0]["uid"], "bot_twilio");
    assert_eq!(doc["records"][0]["guid"], "{{{webhook_guid_1|lower}}}");
    assert_eq!(
        doc["records"][0]["extension_params"]["behavior_id"],
        "{{{uid.behavior_43}}}"
    );
    let stdout = cli(&["bots", "export", &bot], &database_url)
        .await
        .ok()
        .stdout;
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap(), doc);

    // The simulator answers the export (of revision 3, the import's behaviors) as the seed.
    for (body, golden_file) in [
        ("help", "help.xml"),
        ("logo", "logo.xml"),
        ("link", "link.xml"),
        ("hi", "hi.xml"),
    ] {
        let param = format!("Body={body}");
        let out = cli(
            &[
                "simulate",
                exported.to_str().unwrap(),
                "--behavior",
                "behavior_43",
                "--param",
                &param,
                "--param",
                "From=+15551234567",
            ],
            &database_url,
        )
        .await
        .ok();
        assert!(
            out.stdout
                .ends_with(&format!("{}\n", crate::golden(golden_file))),
            "Body {body:?}: {}",
            out.stdout
        );
    }

    // Without --yes and without a terminal, nothing is deleted.
    let out = cli(&["bots", "delete", &bot], &database_url).await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);
    assert_eq!(store.list_bots().await.unwrap().len(), 1);
    let out = cli(&["bots", "delete", &bot, "--yes"], &database_url)
        .await
        .ok();
    assert_eq!(
        out.stdout,
        format!(
            "bot {bot} deleted: 3 behaviors, 1 webhook listeners, 3 revisions (runs and messages kept)\n"
        )
    );
    assert!(store.list_bots().await.unwrap().is_empty());
    assert!(store.list_webhooks().await.unwrap().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_bot_imported_before_revisions_gets_its_state_recorded_at_its_first_update() {
    let (_url, pool) = fresh_database().await.unwrap();
    let store = Store::new(pool.clone(), Some(MasterKey::parse(MASTER_KEY).unwrap()));
    let env = switchboard::ops::Env {
        store: store.clone(),
        nats: None,
        subjects: Subjects::new(&unique("sbl")),
        public_base_url: "http://localhost:8080".into(),
    };
    let account = env
        .add_account(
            "twilio",
            ACCOUNT_SID,
            &secrecy::SecretString::from(AUTH_TOKEN),
        )
        .await
        .unwrap();
    let answers: Vec<switchboard::args::KeyValue> = [
        format!("twilio_account_id={}", account.id),
        format!("account_sid={ACCOUNT_SID}"),
        "default_from=+15557654321".to_string(),
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let (report, _) = env.import(&seed_package(), &answers).await.unwrap();
    let bot = report
        .records
        .iter()
        .find(|r| r.uid == "bot_twilio")
        .unwrap()
        .id;
    switchboard_store::sqlx::query("DELETE FROM bot_revisions")
        .execute(&pool)
        .await
        .unwrap();
    let modified = seed_package().replace("You can say:", "Say one of:");
    let out = env
        .update_bot(&bot.to_string(), &modified, &answers, false)
        .await
        .unwrap();
    assert_eq!(out.revision, Some(2));
    assert_eq!(
        out.notes,
        ["NATS is not reachable: running workers pick up this change within 30 s"]
    );
    let revisions = store.list_revisions(bot).await.unwrap();
    let kinds: Vec<(i32, &str, &str)> = revisions
        .iter()
        .map(|r| (r.revision, r.kind.as_str(), r.summary.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (1, "found", "as found"),
            (2, "update", "behaviors +0 ~1 -0, webhooks +0 ~0 -0")
        ]
    );
    // Rolling back to what was found restores the import's help reply.
    let back = env.rollback_bot(&bot.to_string(), 1, false).await.unwrap();
    assert_eq!(back.revision, Some(3));
    let (state, _) = store.revision(bot, 1).await.unwrap();
    assert_eq!(store.bot_state(bot).await.unwrap(), state);
}
