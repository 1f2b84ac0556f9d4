//! A bot's lifecycle through a real worker (issue 12): `bots update` in place (same URL, new
//! answers at once), `--dry-run`, revisions and rollback, export into a fresh database, and
//! `bots delete` (its URL answers 404, its runs stay).

use std::time::Duration;

use switchboard_e2e::*;
use switchboard_store::{MasterKey, Store};
use switchboard_wire::Subjects;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The seed package with another `help` reply.
fn modified_seed() -> String {
    let seed = seed_package();
    assert_eq!(seed.matches("You can say:").count(), 1);
    seed.replace("You can say:", "Say one of:")
}

fn modified_help() -> String {
    golden("help.xml").replace("You can say:", "Say one of:")
}

async fn ask(http: &reqwest::Client, ingress: &Ingress, guid: &str, body: &str) -> (u16, String) {
    let form = inbound_sms(&message_sid(), "+15551234567", body);
    let resp = post_signed(http, ingress, guid, &form, AUTH_TOKEN).await;
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The prompt answers Stack::new imported the seed with.
async fn prompts(stack: &Stack) -> Vec<switchboard::args::KeyValue> {
    let account = stack.store.list_accounts().await.unwrap()[0].id;
    [
        format!("twilio_account_id={account}"),
        format!("account_sid={ACCOUNT_SID}"),
        "default_from=+15557654321".to_string(),
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect()
}

fn uids(list: &[switchboard_store::bots::Named]) -> Vec<&str> {
    list.iter().map(|n| n.uid.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_in_place_dry_run_revisions_rollback_and_delete() {
    let stack = Stack::new().await.unwrap();
    let worker = stack.worker().await.unwrap();
    let ingress = stack.ingress().await.unwrap();
    let http = http();
    let bot = stack.bot_id.to_string();
    let p = prompts(&stack).await;
    // The worker caches the listener and behavior from here on.
    assert_eq!(
        ask(&http, &ingress, &stack.guid, "help").await,
        (200, golden("help.xml"))
    );

    // --dry-run: the changed behavior by uid and name, nothing written.
    let dry = stack
        .env
        .update_bot(&bot, &modified_seed(), &p, true)
        .await
        .unwrap();
    assert_eq!(dry.revision, None);
    assert_eq!(uids(&dry.changes.behaviors_changed), ["behavior_43"]);
    assert_eq!(
        dry.changes.behaviors_changed[0].name,
        "Respond to Twilio SMS webhook"
    );
    assert!(dry.changes.behaviors_added.is_empty() && dry.changes.behaviors_removed.is_empty());
    assert!(dry.changes.webhooks_added.is_empty() && dry.changes.webhooks_changed.is_empty());
    assert!(!dry.changes.bot_changed);
    assert_eq!(
        ask(&http, &ingress, &stack.guid, "help").await,
        (200, golden("help.xml"))
    );

    // The update: same URL, the new reply at once (the workers are told), same behavior id.
    let report = stack
        .env
        .update_bot(&bot, &modified_seed(), &p, false)
        .await
        .unwrap();
    assert_eq!(report.revision, Some(2));
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    assert_eq!(uids(&report.changes.behaviors_changed), ["behavior_43"]);
    assert_eq!(
        ask(&http, &ingress, &stack.guid, "help").await,
        (200, modified_help())
    );
    assert_eq!(
        ask(&http, &ingress, &stack.guid, "logo").await,
        (200, golden("logo.xml"))
    );
    assert_eq!(
        stack.runs().await,
        4,
        "the runs stay with the same behavior"
    );
    let webhooks = stack.store.list_webhooks().await.unwrap();
    assert_eq!(webhooks.len(), 1);
    assert_eq!(webhooks[0].guid, stack.guid);
    assert_eq!(webhooks[0].behavior_id, Some(stack.webhook_behavior_id));

    // The same package again changes nothing (but is a revision).
    let again = stack
        .env
        .update_bot(&bot, &modified_seed(), &p, false)
        .await
        .unwrap();
    assert!(again.changes.is_empty(), "{:?}", again.changes);

    // Removed and added behaviors: behavior_41 goes, a copy of behavior_42 comes.
    let mut doc: serde_json::Value = serde_json::from_str(&modified_seed()).unwrap();
    let behaviors = doc["bots"][0]["behaviors"].as_array_mut().unwrap();
    behaviors.retain(|b| b["uid"] != "behavior_41");
    let mut copy = behaviors[0].clone();
    assert_eq!(copy["uid"], "behavior_42");
    copy["uid"] = "behavior_99".into();
    copy["title"] = "Look up a number again".into();
    behaviors.push(copy);
    let text = doc.to_string();
    let dry = stack.env.update_bot(&bot, &text, &p, true).await.unwrap();
    assert_eq!(uids(&dry.changes.behaviors_added), ["behavior_99"]);
    assert_eq!(uids(&dry.changes.behaviors_removed), ["behavior_41"]);
    assert!(dry.changes.behaviors_changed.is_empty());
    let report = stack.env.update_bot(&bot, &text, &p, false).await.unwrap();
    assert_eq!(report.revision, Some(4));
    let listed: Vec<String> = stack
        .store
        .list_behaviors(stack.bot_id)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.uid)
        .collect();
    assert_eq!(listed, ["behavior_42", "behavior_43", "behavior_99"]);

    // Revisions, and a rollback to the import as revision 5.
    let revisions = stack.store.list_revisions(stack.bot_id).await.unwrap();
    let kinds: Vec<(i32, &str)> = revisions
        .iter()
        .map(|r| (r.revision, r.kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [(1, "import"), (2, "update"), (3, "update"), (4, "update")]
    );
    let back = stack.env.rollback_bot(&bot, 1, false).await.unwrap();
    assert_eq!(back.revision, Some(5));
    assert_eq!(uids(&back.changes.behaviors_added), ["behavior_41"]);
    assert_eq!(uids(&back.changes.behaviors_removed), ["behavior_99"]);
    assert_eq!(uids(&back.changes.behaviors_changed), ["behavior_43"]);
    assert_eq!(
        ask(&http, &ingress, &stack.guid, "help").await,
        (200, golden("help.xml"))
    );
    let listed: Vec<String> = stack
        .store
        .list_behaviors(stack.bot_id)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.uid)
        .collect();
    // behavior_41 is back with its old id (the seed's last).
    assert_eq!(listed, ["behavior_42", "behavior_43", "behavior_41"]);
    assert_eq!(
        stack.store.list_revisions(stack.bot_id).await.unwrap()[4].kind,
        "rollback"
    );

    // Delete: the URL answers 404 at once; the runs stay.
    let (deleted, notes) = stack.env.delete_bot(&bot).await.unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(deleted.behaviors.len(), 3);
    assert_eq!(deleted.webhooks.len(), 1);
    assert_eq!(deleted.revisions, 5);
    assert_eq!(ask(&http, &ingress, &stack.guid, "help").await.0, 404);
    assert!(stack.store.list_bots().await.unwrap().is_empty());
    assert!(stack.store.list_webhooks().await.unwrap().is_empty());
    assert_eq!(stack.runs().await, 5, "history is kept");

    ingress.stop().await.unwrap();
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_imports_into_a_fresh_database_and_answers_the_same() {
    let stack = Stack::new().await.unwrap();
    let bot = stack.bot_id.to_string();
    let p = prompts(&stack).await;
    // Export after an update, so the export is the bot as it is, not its first package.
    stack
        .env
        .update_bot(&bot, &modified_seed(), &p, false)
        .await
        .unwrap();
    let exported = stack.env.export_bot(&bot).await.unwrap();
    let text = serde_json::to_string_pretty(&exported).unwrap();

    // A fresh database with its own subjects, on the same NATS server.
    let (_url, pool) = switchboard_test_support::fresh_database().await.unwrap();
    let store = Store::new(pool, Some(MasterKey::parse(MASTER_KEY).unwrap()));
    let subjects = Subjects::new(&unique("sbx"));
    let env = switchboard::ops::Env {
        store: store.clone(),
        nats: Some(stack.nats.client().await.unwrap()),
        subjects: subjects.clone(),
        public_base_url: PUBLIC_BASE_URL.into(),
    };
    // The same connected account id as in the first database (the export keeps ids).
    seed_prompts(&env).await.unwrap();
    let first = stack.store.list_accounts().await.unwrap()[0].id;
    assert_eq!(store.list_accounts().await.unwrap()[0].id, first);
    let (report, _) = env.import(&text, &[]).await.unwrap();
    let guid = report.webhooks[0].guid.clone();
    assert_ne!(guid, stack.guid, "an import makes a new URL");
    assert_eq!(guid.len(), 40);

    // The same behaviors, but for their ids.
    let a = stack.store.bot_state(stack.bot_id).await.unwrap();
    let b_id = report
        .records
        .iter()
        .find(|r| r.uid == "bot_twilio")
        .unwrap()
        .id;
    let b = store.bot_state(b_id).await.unwrap();
    let mut b_as_a = b.clone();
    b_as_a.bot.id = a.bot.id;
    let changes = switchboard_store::bots::diff(&a, &b_as_a);
    assert!(
        changes.behaviors_changed.is_empty()
            && changes.behaviors_added.is_empty()
            && changes.behaviors_removed.is_empty()
            && !changes.bot_changed,
        "{changes:?}"
    );

    // And the same answers through a worker on the fresh database.
    let worker = Worker::start(store.clone(), &stack.nats.url(), subjects.clone())
        .await
        .unwrap();
    let ingress = Ingress::start(
        &stack.nats.url(),
        ingress::IngressConfig {
            public_base_url: Some(PUBLIC_BASE_URL.into()),
            subjects,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let http = http();
    for (body, expected) in [
        ("help", modified_help()),
        ("logo", golden("logo.xml")),
        ("link", golden("link.xml")),
        ("hi", golden("hi.xml")),
    ] {
        assert_eq!(
            ask(&http, &ingress, &guid, body).await,
            (200, expected),
            "Body {body:?}"
        );
    }
    // The export of the import is the export (but for the placeholders' use, nothing differs).
    let again = env.export_bot(&b_id.to_string()).await.unwrap();
    assert_eq!(again, exported);
    ingress.stop().await.unwrap();
    worker.stop().await.unwrap();
}

/// Under steady webhook load on two worker replicas, an update and then a rollback: every
/// webhook is answered 200 by the old revision or the new one, wholly (never a mix, never an
/// error), and the workers switch at once (requests sent from half a second after each change
/// on all get the new answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_steady_load_every_webhook_gets_the_old_or_the_new_revision_whole() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    let stack = Stack::new().await.unwrap();
    let workers = [stack.worker().await.unwrap(), stack.worker().await.unwrap()];
    let ingress = stack.ingress().await.unwrap();
    let http = http();
    let bot = stack.bot_id.to_string();
    let p = prompts(&stack).await;
    let (old, new) = (golden("help.xml"), modified_help());
    assert_eq!(
        ask(&http, &ingress, &stack.guid, "help").await,
        (200, old.clone())
    );

    // Four clients, each sending signed `help` webhooks one after another.
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<(Instant, u16, String)>>> = Arc::default();
    let url = ingress.url("");
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, answers, http, url, guid) = (
            stop.clone(),
            answers.clone(),
            http.clone(),
            url.clone(),
            stack.guid.clone(),
        );
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let form = inbound_sms(&message_sid(), "+15551234567", "help");
                let sent = Instant::now();
                let resp = post_signed_at(&http, &url, &guid, &form, AUTH_TOKEN).await;
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                answers.lock().unwrap().push((sent, status, text));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let updating = Instant::now();
    let report = stack
        .env
        .update_bot(&bot, &modified_seed(), &p, false)
        .await
        .unwrap();
    assert_eq!(report.revision, Some(2));
    let updated = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rolling_back = Instant::now();
    let back = stack.env.rollback_bot(&bot, 1, false).await.unwrap();
    assert_eq!(back.revision, Some(3));
    let rolled_back = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    let answers = answers.lock().unwrap().clone();
    assert!(answers.len() >= 100, "only {} webhooks sent", answers.len());
    let settle = Duration::from_millis(500);
    let (mut saw_old, mut saw_new) = (0, 0);
    for (sent, status, text) in &answers {
        assert_eq!(*status, 200, "{text}");
        assert!(
            text == &old || text == &new,
            "neither the old nor the new revision's answer: {text}"
        );
        if text == &new {
            saw_new += 1;
        } else {
            saw_old += 1;
        }
        if *sent < updating {
            assert_eq!(text, &old, "the new answer before the update");
        } else if *sent >= updated + settle && *sent < rolling_back {
            assert_eq!(text, &new, "the old answer after the update");
        } else if *sent >= rolled_back + settle {
            assert_eq!(text, &old, "the new answer after the rollback");
        }
    }
    assert!(saw_old > 0 && saw_new > 0, "old {saw_old}, new {saw_new}");
    ingress.stop().await.unwrap();
    for w in workers {
        w.stop().await.unwrap();
    }
}
