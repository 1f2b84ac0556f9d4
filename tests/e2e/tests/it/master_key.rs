//! One master key for every account: `switchboard accounts add` refuses a key that does not
//! decrypt the accounts already stored, and the start-up check the services run tells a wrong
//! key from a database that cannot be reached.

use std::time::Duration;

use secrecy::SecretString;
use switchboard_e2e::{ACCOUNT_SID, AUTH_TOKEN, MASTER_KEY, fresh_database, init, unique};
use switchboard_store::{MasterKey, Store, StoreError};
use switchboard_wire::Subjects;

/// Another valid key than [`MASTER_KEY`].
const OTHER_KEY: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

fn env(store: Store) -> switchboard::ops::Env {
    switchboard::ops::Env {
        store,
        nats: None,
        subjects: Subjects::new(&unique("sbk")),
        public_base_url: "https://bot.example.com".into(),
    }
}

fn with_key(pool: &switchboard_store::sqlx::PgPool, key: &str) -> Store {
    Store::new(pool.clone(), Some(MasterKey::parse(key).unwrap()))
}

#[tokio::test]
async fn accounts_add_refuses_a_key_that_does_not_decrypt_the_stored_accounts() {
    init();
    let (_, pool) = fresh_database().await.unwrap();
    let token = SecretString::from(AUTH_TOKEN);
    // Nothing stored yet: any key is the first.
    let first = env(with_key(&pool, MASTER_KEY))
        .add_account("first", ACCOUNT_SID, &token)
        .await
        .unwrap();

    let err = env(with_key(&pool, OTHER_KEY))
        .add_account("second", ACCOUNT_SID, &token)
        .await
        .unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        format!(
            "SWITCHBOARD_MASTER_KEY does not decrypt the stored credentials of account {} ('first'): it differs from the key they were saved with (start every service and the CLI with that key, or add the account again with the new one)",
            first.id
        )
    );
    let accounts = with_key(&pool, MASTER_KEY).list_accounts().await.unwrap();
    assert_eq!(accounts.len(), 1, "nothing written with the wrong key");

    env(with_key(&pool, MASTER_KEY))
        .add_account("second", ACCOUNT_SID, &token)
        .await
        .expect("the right key adds more");
}

#[tokio::test]
async fn the_start_up_check_tells_a_wrong_key_from_an_unreachable_database() {
    init();
    let (url, pool) = fresh_database().await.unwrap();
    let within = Duration::from_secs(5);
    let store = with_key(&pool, MASTER_KEY);
    assert_eq!(store.check_master_key().await.unwrap(), None, "no account");
    store.check_master_key_at_start(within).await.unwrap();
    let account = store
        .add_account("twilio", ACCOUNT_SID, &SecretString::from(AUTH_TOKEN))
        .await
        .unwrap();
    assert_eq!(store.check_master_key().await.unwrap(), Some(account.id));
    store.check_master_key_at_start(within).await.unwrap();

    let wrong = with_key(&pool, OTHER_KEY);
    let err = wrong.check_master_key_at_start(within).await.unwrap_err();
    assert!(err.is_wrong_master_key(), "{err}");
    // The same error on use, naming the account.
    let err = wrong.credentials(account.id).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::WrongMasterKey { account_id, account_name }
            if *account_id == account.id && account_name == "twilio"),
        "{err}"
    );
    let err = Store::new(pool.clone(), None)
        .check_master_key()
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoMasterKey(_)), "{err}");

    // Unreachable: going on, the check is left to the first use.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let (_, db) = url.rsplit_once('/').unwrap();
    let nowhere = format!("postgres://postgres@{closed_addr}/{db}");
    let lazy = switchboard_store::connect_lazy(&nowhere, 1, true).unwrap();
    let unreachable = Store::new(lazy, Some(MasterKey::parse(OTHER_KEY).unwrap()));
    unreachable
        .check_master_key_at_start(Duration::from_secs(1))
        .await
        .expect("an unreachable database does not stop the start");
}
