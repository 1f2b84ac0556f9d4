//! What Switchboard's integration tests share, written once: the repository's fixtures (the seed
//! package, its golden replies), the test credentials and unique names, and, with the `harness`
//! feature, a disposable `nats-server` on a free port, a fresh PostgreSQL database
//! per test, the Twilio sandbox, signed webhooks and a recording stand-in for third-party HTTP
//! APIs. A helper only one crate's tests need stays in
//! that crate's `tests/`.

use std::sync::atomic::{AtomicU32, Ordering};

mod fixtures;
mod metrics;
pub mod secrets;
mod webhook;

#[cfg(feature = "harness")]
mod database;
#[cfg(feature = "harness")]
mod http_recorder;
#[cfg(feature = "harness")]
mod nats;
#[cfg(feature = "harness")]
mod pg_proxy;
#[cfg(feature = "harness")]
mod sandbox;

pub use fixtures::{golden, repo_root, seed_package, seed_package_path};
pub use metrics::metric;
pub use webhook::{inbound_sms, message_sid};

#[cfg(feature = "harness")]
pub use database::{admin_database_url, fresh_database};
#[cfg(feature = "harness")]
pub use http_recorder::{Answer, http_recorder};
#[cfg(feature = "harness")]
pub use nats::NatsServer;
#[cfg(feature = "harness")]
pub use pg_proxy::PgProxy;
#[cfg(feature = "harness")]
pub use sandbox::{sandbox, sandbox_account, sandbox_config, unchecked_sandbox_config};
#[cfg(feature = "harness")]
pub use webhook::post_signed_form;

/// A test master key (base64 of 32 bytes), for `Store::new` and `SWITCHBOARD_MASTER_KEY`.
/// Public, so the services and the CLI refuse it unless `SWITCHBOARD_ALLOW_TEST_KEY=1`
/// ([`ALLOW_TEST_KEY`]): set that wherever a test spawns a binary with this key.
pub const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
/// The variable and value that let a binary run with [`MASTER_KEY`] (tests only).
pub const ALLOW_TEST_KEY: (&str, &str) = ("SWITCHBOARD_ALLOW_TEST_KEY", "1");
/// The test Twilio account: connected in the store, known to the sandbox.
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
/// The test account's auth token (Basic auth at the sandbox, the key of webhook signatures).
pub const AUTH_TOKEN: &str = "test-auth-token-0123456789abcdef";
/// The public base URL webhooks are signed for (`PUBLIC_BASE_URL` of ingress and the CLI).
pub const PUBLIC_BASE_URL: &str = "https://bot.example.com";

/// Feeds [`unique`] and [`message_sid`].
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn next() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A name unique to this process and call: `{prefix}_{pid}_{n}` (database names, subject
/// prefixes, temporary directories).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), next())
}

/// A port on 127.0.0.1 nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Installs the rustls provider and the test tracing subscriber (idempotent).
#[cfg(feature = "harness")]
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    switchboard_telemetry::init_for_tests();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ() {
        let (a, b) = (unique("x"), unique("x"));
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("x_{}_", std::process::id())));
    }

    #[test]
    fn fixtures_are_in_the_repository() {
        assert!(seed_package_path().starts_with(repo_root()));
        assert!(seed_package().contains("\"name\": \"Twilio Bot\""));
        assert!(golden("help.xml").starts_with("<?xml"));
    }
}
