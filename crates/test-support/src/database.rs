//! A fresh, migrated PostgreSQL database per test on the test server.

use anyhow::Context as _;
use switchboard_store::sqlx;

/// Admin URL of the PostgreSQL server tests create databases on
/// (`SWITCHBOARD_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`).
pub fn admin_database_url() -> String {
    std::env::var("SWITCHBOARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, migrated database: its URL and a pool on it. It is not dropped afterwards: a
/// failing test's data is worth keeping.
pub async fn fresh_database() -> anyhow::Result<(String, sqlx::PgPool)> {
    let admin = admin_database_url();
    let name = crate::unique("sb_test");
    let admin_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin)
        .await
        .with_context(|| {
            format!("connecting to PostgreSQL at {admin} (set SWITCHBOARD_TEST_DATABASE_URL)")
        })?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin_pool)
        .await?;
    admin_pool.close().await;
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => anyhow::bail!("bad admin URL {admin}"),
    };
    let pool = switchboard_store::connect(&url, 16).await?;
    switchboard_store::migrate(&pool).await?;
    Ok((url, pool))
}
