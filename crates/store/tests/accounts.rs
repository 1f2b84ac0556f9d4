//! Connected-account kinds (issue 12): each kind is added, listed (never with its secret) and
//! re-encrypted by `rekey_accounts`; secrets are encrypted at rest with the master key, bound to
//! their row; invalid placements and hosts are refused; only Twilio accounts are found by
//! Account SID.
//!
//! Needs PostgreSQL: `SWITCHBOARD_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), on which a fresh database is created.

use secrecy::{ExposeSecret as _, SecretString};
use switchboard_store::sqlx::{self, PgPool, Row as _};
use switchboard_store::{AccountKind, HttpAuth, Keyring, MasterKey, Store, StoreError};

const KEY_A: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const KEY_B: &str = "sbKysrKysrKysrKysrKysrKysrKysrKysrKysrKysrI=";
const SID: &str = "AC0123456789abcdef0123456789abcdef";

async fn fresh_database() -> PgPool {
    let admin = std::env::var("SWITCHBOARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("sb_test_accounts_{}_{nanos}", std::process::id());
    let pool = switchboard_store::connect(&admin, 1).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let pool = switchboard_store::connect(&url, 4).await.unwrap();
    switchboard_store::migrate(&pool).await.unwrap();
    pool
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn hosts(h: &[&str]) -> Vec<String> {
    h.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn every_kind_is_added_listed_encrypted_and_rekeyed() {
    let pool = fresh_database().await;
    let store = Store::new(pool.clone(), Some(MasterKey::parse(KEY_A).unwrap()));
    let twilio = store
        .add_account("twilio", SID, &secret("twilio-token"))
        .await
        .unwrap();
    let slack = store
        .add_http_account(
            "slack",
            Some("Slack"),
            &HttpAuth::Bearer,
            &hosts(&["Slack.com."]),
            &secret("xoxb-slack-token"),
        )
        .await
        .unwrap();
    let stripe = store
        .add_http_account(
            "stripe",
            Some("stripe"),
            &HttpAuth::Basic {
                username: "sk_test_user".into(),
            },
            &hosts(&["api.stripe.com"]),
            &secret("stripe-password"),
        )
        .await
        .unwrap();
    let header = store
        .add_http_account(
            "sendgrid",
            None,
            &HttpAuth::Header {
                header: "X-Api-Key".into(),
            },
            &hosts(&["api.example.com", "API.example.com", "files.example.com"]),
            &secret("header-key"),
        )
        .await
        .unwrap();
    let query = store
        .add_http_account(
            "maps",
            None,
            &HttpAuth::Query {
                param: "key".into(),
            },
            &hosts(&["maps.example.com"]),
            &secret("query-key"),
        )
        .await
        .unwrap();

    assert_eq!(slack.kind, AccountKind::Bearer);
    assert_eq!(slack.provider, "slack");
    assert_eq!(slack.allowed_hosts, ["slack.com"]);
    assert_eq!(slack.account_sid, None);
    assert_eq!(header.provider, "http");
    assert_eq!(
        header.allowed_hosts,
        ["api.example.com", "files.example.com"],
        "lower-cased, once each"
    );

    // Listed as added, with the placement and never the secret.
    let listed = store.list_accounts().await.unwrap();
    assert_eq!(
        listed,
        [
            twilio.clone(),
            slack.clone(),
            stripe.clone(),
            header.clone(),
            query.clone()
        ]
    );
    assert_eq!(listed[0].kind, AccountKind::Twilio);
    assert_eq!(listed[0].account_sid.as_deref(), Some(SID));
    let json = serde_json::to_string(&listed).unwrap();
    for s in [
        "twilio-token",
        "xoxb-slack-token",
        "stripe-password",
        "header-key",
        "query-key",
    ] {
        assert!(!json.contains(s), "{s} listed: {json}");
    }
    assert!(json.contains(r#""kind":"api-key""#), "{json}");
    assert!(
        json.contains(r#""auth":{"in":"header","header":"X-Api-Key"}"#),
        "{json}"
    );
    assert!(
        json.contains(r#""auth":{"in":"basic","username":"sk_test_user"}"#),
        "{json}"
    );

    // Encrypted at rest: no secret in the table's bytes.
    let rows = sqlx::query("SELECT id, kind, auth_token_enc FROM connected_accounts ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    for r in &rows {
        let blob: Vec<u8> = r.get("auth_token_enc");
        let text = String::from_utf8_lossy(&blob);
        for s in ["token", "password", "key"] {
            assert!(
                !text.contains(s),
                "row {} holds {s} in clear",
                r.get::<i64, _>("id")
            );
        }
    }
    let kinds: Vec<String> = rows.iter().map(|r| r.get("kind")).collect();
    assert_eq!(kinds, ["twilio", "bearer", "basic", "api-key", "api-key"]);

    // Decrypted with the key.
    for (account, expected) in [
        (&twilio, "twilio-token"),
        (&slack, "xoxb-slack-token"),
        (&stripe, "stripe-password"),
        (&header, "header-key"),
        (&query, "query-key"),
    ] {
        let found = store.credentials(account.id).await.unwrap().unwrap();
        assert_eq!(found.auth_token.expose_secret(), expected);
        assert_eq!(&found.account, account);
    }

    // A ciphertext moved to another row does not decrypt there.
    sqlx::query("UPDATE connected_accounts SET auth_token_enc = (SELECT auth_token_enc FROM connected_accounts WHERE id = $1) WHERE id = $2")
        .bind(slack.id)
        .bind(query.id)
        .execute(&pool)
        .await
        .unwrap();
    assert!(matches!(
        store.credentials(query.id).await,
        Err(StoreError::WrongMasterKey { account_id, .. }) if account_id == query.id
    ));
    sqlx::query("DELETE FROM connected_accounts WHERE id = $1")
        .bind(query.id)
        .execute(&pool)
        .await
        .unwrap();

    // Only Twilio accounts have an Account SID to be found by.
    let by_sid = store.credentials_by_sid(SID).await.unwrap();
    assert_eq!(by_sid.len(), 1);
    assert_eq!(by_sid[0].account.id, twilio.id);

    // Rotation: B current, A old; rekey re-encrypts every kind; then B alone reads them all.
    let rotating = Store::with_keys(
        pool.clone(),
        Some(Keyring::with_old(MasterKey::parse(KEY_B).unwrap(), Some(KEY_A)).unwrap()),
    );
    let report = rotating.rekey_accounts().await.unwrap();
    assert_eq!((report.accounts, report.reencrypted), (4, 4));
    let again = rotating.rekey_accounts().await.unwrap();
    assert_eq!(again.reencrypted, 0);
    let b_only = Store::new(pool.clone(), Some(MasterKey::parse(KEY_B).unwrap()));
    for (account, expected) in [
        (&twilio, "twilio-token"),
        (&slack, "xoxb-slack-token"),
        (&stripe, "stripe-password"),
        (&header, "header-key"),
    ] {
        let found = b_only.credentials(account.id).await.unwrap().unwrap();
        assert_eq!(found.auth_token.expose_secret(), expected);
    }
    let a_only = Store::new(pool.clone(), Some(MasterKey::parse(KEY_A).unwrap()));
    assert!(a_only.credentials(slack.id).await.is_err());
}

#[tokio::test]
async fn invalid_accounts_are_refused_with_one_line() {
    let pool = fresh_database().await;
    let store = Store::new(pool.clone(), Some(MasterKey::parse(KEY_A).unwrap()));
    let refused = |r: Result<switchboard_store::Account, StoreError>| match r {
        Err(StoreError::Invalid(m)) => {
            assert!(!m.contains('\n'), "{m}");
            m
        }
        other => panic!("{other:?}"),
    };
    let m = refused(
        store
            .add_http_account("x", None, &HttpAuth::Bearer, &[], &secret("t"))
            .await,
    );
    assert!(m.contains("--allowed-host"), "{m}");
    let m = refused(
        store
            .add_http_account(
                "x",
                None,
                &HttpAuth::Bearer,
                &hosts(&["https://slack.com/api"]),
                &secret("t"),
            )
            .await,
    );
    assert!(m.contains("not a host name"), "{m}");
    let m = refused(
        store
            .add_http_account(
                "x",
                None,
                &HttpAuth::Header {
                    header: "X Key".into(),
                },
                &hosts(&["a.example.com"]),
                &secret("t"),
            )
            .await,
    );
    assert!(m.contains("--header"), "{m}");
    let m = refused(
        store
            .add_http_account(
                "x",
                None,
                &HttpAuth::Bearer,
                &hosts(&["a.example.com"]),
                &secret("  "),
            )
            .await,
    );
    assert!(m.contains("empty"), "{m}");
    let m = refused(
        store
            .add_http_account(
                "x",
                Some("twilio"),
                &HttpAuth::Bearer,
                &hosts(&["api.twilio.com"]),
                &secret("t"),
            )
            .await,
    );
    assert!(m.contains("--kind twilio"), "{m}");
    store
        .add_http_account(
            "x",
            None,
            &HttpAuth::Bearer,
            &hosts(&["a.example.com"]),
            &secret("t"),
        )
        .await
        .unwrap();
    let m = refused(
        store
            .add_http_account(
                "x",
                None,
                &HttpAuth::Bearer,
                &hosts(&["a.example.com"]),
                &secret("t"),
            )
            .await,
    );
    assert!(m.contains("already exists"), "{m}");

    // The table itself keeps kinds consistent.
    let bad = sqlx::query(
        "INSERT INTO connected_accounts (name, provider, kind, auth_token_enc, allowed_hosts) VALUES ('y', 'http', 'api-key', '\\x00', '{a.example.com}')",
    )
    .execute(&pool)
    .await;
    assert!(
        bad.is_err(),
        "an api-key account without a header or query parameter"
    );
    let bad = sqlx::query(
        "INSERT INTO connected_accounts (name, provider, kind, auth_token_enc, allowed_hosts) VALUES ('y', 'http', 'bearer', '\\x00', '{}')",
    )
    .execute(&pool)
    .await;
    assert!(bad.is_err(), "a bearer account without hosts");
}
