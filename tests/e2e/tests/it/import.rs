//! `switchboard import` against a real database: a refused package creates nothing
//! (docs/semantics.md, Decision 2), whether it is refused before the transaction (validation,
//! Decisions 3, 4 and 8) or inside it (a webhook guid that already exists); importing again creates
//! a second, independent set.

use serde_json::{Value, json};
use switchboard::args::KeyValue;
use switchboard_e2e::{
    MASTER_KEY, PUBLIC_BASE_URL, fresh_database, init, seed_package, seed_prompts, unique,
};
use switchboard_store::{MasterKey, Store};
use switchboard_wire::Subjects;

/// An operator environment on a fresh database with one connected account, and the prompts that
/// import the seed package with it.
async fn env() -> anyhow::Result<(switchboard::ops::Env, Vec<KeyValue>)> {
    init();
    let (_, pool) = fresh_database().await?;
    let env = switchboard::ops::Env {
        store: Store::new(pool, Some(MasterKey::parse(MASTER_KEY)?)),
        nats: None,
        subjects: Subjects::new(&unique("sbt")),
        public_base_url: PUBLIC_BASE_URL.into(),
    };
    let prompts = seed_prompts(&env).await?;
    Ok((env, prompts))
}

/// Rows of every table an import writes.
async fn counts(env: &switchboard::ops::Env) -> [i64; 4] {
    let mut out = [0; 4];
    for (i, table) in ["imports", "bots", "behaviors", "webhook_listeners"]
        .iter()
        .enumerate()
    {
        out[i] = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(env.store.pool())
            .await
            .unwrap();
    }
    out
}

/// The seed package with `edit` applied to its JSON.
fn seed_with(edit: impl FnOnce(&mut Value)) -> String {
    let mut doc: Value = serde_json::from_str(&seed_package()).unwrap();
    edit(&mut doc);
    doc.to_string()
}

/// The seed's webhook behavior ("Respond to Twilio SMS webhook").
fn webhook_behavior(doc: &mut Value) -> &mut Value {
    doc["bots"][0]["behaviors"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|b| b["uid"] == "behavior_43")
        .unwrap()
}

#[tokio::test]
async fn refused_packages_create_nothing() -> anyhow::Result<()> {
    let (env, prompts) = env().await?;
    let cases: Vec<(&str, String, Vec<KeyValue>, Vec<&str>)> = vec![
        (
            // Semantics Decision 8: a pattern that cannot be compiled names the behavior, node and
            // pattern.
            "invalid regexp",
            seed_with(|doc| {
                let help = &mut webhook_behavior(doc)["nodes"][0]["nodes"][0];
                help["params"]["groups"][0]["conditions"][0] = json!({"condition": "http_param", "name": "body", "oper": "regexp", "value": "/help(/i"});
            }),
            prompts.clone(),
            vec!["behavior_43", "node 'HELP'", "invalid regexp `/help(/i`"],
        ),
        (
            // Semantics Decision 3: every unsupported item, each with where it is.
            "unsupported features",
            seed_with(|doc| {
                let help = &mut webhook_behavior(doc)["nodes"][0]["nodes"][0];
                help["nodes"][0]["params"]["actions"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"action": "core.va.action.create_ticket"}));
                doc["workspaces"] = json!([{"uid": "workspace_1"}]);
            }),
            prompts.clone(),
            vec![
                "behavior_43",
                "Unsupported action 'core.va.action.create_ticket'",
                "Unsupported section 'workspaces'",
            ],
        ),
        (
            // Semantics Decision 4: a required prompt that is missing names its label and key.
            "missing prompt",
            seed_package(),
            prompts
                .iter()
                .filter(|kv| kv.key != "default_from")
                .cloned()
                .collect(),
            vec!["default_from", "Default responder phone number"],
        ),
        (
            // Semantics Decision 4: an import-time template naming something undefined.
            "undefined placeholder",
            seed_with(|doc| {
                doc["records"][0]["name"] = json!("{{{no_such_prompt}}}");
            }),
            prompts.clone(),
            vec!["webhook_twilio_bot", "no_such_prompt"],
        ),
    ];
    for (name, package, prompts, needles) in cases {
        let err = env
            .import(&package, &prompts)
            .await
            .err()
            .unwrap_or_else(|| panic!("{name}: the import should be refused"));
        let text = format!("{err:#}");
        for needle in needles {
            assert!(
                text.contains(needle),
                "{name}: {text:?} should name {needle:?}"
            );
        }
        assert_eq!(counts(&env).await, [0; 4], "{name}: nothing is created");
    }
    Ok(())
}

#[tokio::test]
async fn a_failure_inside_the_transaction_rolls_everything_back() -> anyhow::Result<()> {
    let (env, prompts) = env().await?;
    // A fixed guid: the second import passes validation and fails at the listener insert, after
    // its bot and behaviors were written in the same transaction.
    let package = seed_with(|doc| {
        doc["records"][0]["guid"] = json!("0123456789abcdef0123456789abcdef01234567");
    });
    env.import(&package, &prompts).await?;
    let after_first = counts(&env).await;
    assert_eq!(after_first, [1, 1, 3, 1]);
    let err = env.import(&package, &prompts).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("a webhook listener with this guid already exists"),
        "{err:#}"
    );
    assert_eq!(
        counts(&env).await,
        after_first,
        "the failed import left nothing"
    );
    Ok(())
}

#[tokio::test]
async fn importing_again_creates_an_independent_set() -> anyhow::Result<()> {
    let (env, prompts) = env().await?;
    let (first, _) = env.import(&seed_package(), &prompts).await?;
    let (second, _) = env.import(&seed_package(), &prompts).await?;
    assert_eq!(counts(&env).await, [2, 2, 6, 2]);
    let ids = |r: &switchboard::ops::ImportReport| -> Vec<i64> {
        r.records.iter().map(|x| x.id).collect()
    };
    assert!(
        ids(&first).iter().all(|id| !ids(&second).contains(id)),
        "new ids: {:?} then {:?}",
        ids(&first),
        ids(&second)
    );
    // New random placeholders: the webhook guid (40 characters, lower case) differs.
    let (a, b) = (&first.webhooks[0].guid, &second.webhooks[0].guid);
    assert_ne!(a, b);
    for guid in [a, b] {
        assert_eq!(guid.len(), 40, "{guid}");
        assert_eq!(guid, &guid.to_lowercase());
    }
    Ok(())
}
