//! The worker's retention task: with an interval, a pass runs on its own (the system clock)
//! and deletes what is older than the limits; it ends when the stop is requested; with the
//! interval off it does nothing.

use std::time::Duration;

use behavior_worker::retention::{PrunerOptions, run_pruner};
use switchboard_store::Store;
use switchboard_store::retention::RetentionPolicy;
use switchboard_test_support::fresh_database;

async fn seed(pool: &switchboard_store::sqlx::PgPool) {
    switchboard_store::sqlx::raw_sql(
        "INSERT INTO inbound_messages (message_sid, listener_id, request, received_at)
         VALUES ('SMold', 1, '{}', now() - interval '40 days'), ('SMnew', 1, '{}', now());",
    )
    .execute(pool)
    .await
    .unwrap();
}

async fn sids(pool: &switchboard_store::sqlx::PgPool) -> Vec<String> {
    switchboard_store::sqlx::query_scalar("SELECT message_sid FROM inbound_messages ORDER BY 1")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pruner_runs_on_its_interval_and_stops_when_told() {
    let (_url, pool) = fresh_database().await.expect("a test database");
    seed(&pool).await;
    let store = Store::new(pool.clone(), None);

    // Off: returns at once, deletes nothing.
    let off = PrunerOptions {
        policy: RetentionPolicy::default(),
        interval: None,
    };
    tokio::time::timeout(
        Duration::from_secs(1),
        run_pruner(store.clone(), off, std::future::pending()),
    )
    .await
    .expect("returns at once when off");
    assert_eq!(sids(&pool).await, ["SMnew", "SMold"]);

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let on = PrunerOptions {
        policy: RetentionPolicy::default(),
        interval: Some(Duration::from_secs(1)),
    };
    let task = tokio::spawn(run_pruner(store, on, async {
        let _ = rx.await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sids(&pool).await != ["SMnew"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no pass within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("ends when the stop is requested")
        .unwrap();
}
