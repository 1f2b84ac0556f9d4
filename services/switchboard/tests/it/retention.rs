//! `switchboard accounts set-retention ACCOUNT --days N|default`: sets and clears an account's
//! retention override (by id or name), refuses 0 and unknown accounts with one line.

use std::process::{Command, Output};

use switchboard_store::sqlx;
use switchboard_test_support::fresh_database;

fn set_retention(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["accounts", "set-retention"])
        .args(args)
        .env("DATABASE_URL", url)
        .env_remove("SWITCHBOARD_MASTER_KEY")
        .output()
        .expect("runs")
}

async fn days(pool: &sqlx::PgPool) -> Option<i32> {
    sqlx::query_scalar("SELECT retention_days FROM connected_accounts WHERE name = 'acme'")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn set_retention_sets_and_clears_an_accounts_override() {
    let (url, pool) = fresh_database().await.expect("a test database");
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO connected_accounts (name, account_sid, auth_token_enc, allowed_hosts) \
         VALUES ('acme', 'ACacme', '\\x00', '{}') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();

    let out = set_retention(&url, &["acme", "--days", "7"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("account {id} (acme): messages, runs and finished jobs kept 7 day(s)\n")
    );
    assert_eq!(days(&pool).await, Some(7));

    let out = set_retention(&url, &[&id.to_string(), "--days", "default", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["retention_days"], serde_json::Value::Null);
    assert_eq!(days(&pool).await, None);

    for (args, says) in [
        (vec!["acme", "--days", "0"], "--days: '0'"),
        (vec!["acme", "--days", "week"], "--days: 'week'"),
        (
            vec!["nobody", "--days", "3"],
            "no account with id or name 'nobody'",
        ),
    ] {
        let out = set_retention(&url, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    assert_eq!(days(&pool).await, None);
}
