//! Switchboard's PostgreSQL store, through sqlx: connected accounts (credentials encrypted at
//! rest), imported bots, behaviors and webhook listeners (written all or nothing), the inbound
//! message log (one row per `MessageSid`) and behavior runs. Migrations run only when asked.
//! A bot's updates, revisions and deletion are in [`bots`].

pub mod account_kinds;
pub mod bots;
pub mod jsonb;
pub mod limits;
pub mod outbound;
pub mod retention;
pub mod secrets;
pub mod signers;
pub mod status;
pub mod views;
pub mod webhook_log;

use secrecy::SecretString;
use serde::Serialize;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};
use switchboard_package::{BehaviorDef, BotDef, ImportPlan, Owner, WebhookListenerDef};

pub use account_kinds::{AccountKind, HttpAuth};
pub use secrets::{KeyId, KeyUse, Keyring, MasterKey, SecretError};
pub use sqlx;

/// The migrations embedded in the binaries.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("SWITCHBOARD_MASTER_KEY is not set; it is needed to {0}")]
    NoMasterKey(&'static str),
    /// The master key does not decrypt an account's stored auth token: the process runs with
    /// another key than the one the account was saved with (or the row was altered).
    #[error(
        "SWITCHBOARD_MASTER_KEY does not decrypt the stored credentials of account {account_id} ('{account_name}'): it differs from the key they were saved with (start every service and the CLI with that key, or add the account again with the new one)"
    )]
    WrongMasterKey {
        account_id: i64,
        account_name: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether this is [`StoreError::WrongMasterKey`]: retrying cannot help until the process
    /// is started with the right key.
    pub fn is_wrong_master_key(&self) -> bool {
        matches!(self, StoreError::WrongMasterKey { .. })
    }

    /// Whether retrying later may help (connection trouble), as opposed to a bad request.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Database(
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
            )
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Connects a pool.
pub async fn connect(database_url: &str, max_connections: u32) -> Result<PgPool> {
    connect_with(database_url, max_connections, true).await
}

/// Connects a pool; with `synchronous_commit` off, a commit returns before its WAL reaches the
/// disk (PostgreSQL stays consistent; a crash of the database server can lose the last few
/// hundred milliseconds of commits). The behavior worker uses this for its message log and
/// run records, where it turns two disk flushes per webhook into none.
pub async fn connect_with(
    database_url: &str,
    max_connections: u32,
    synchronous_commit: bool,
) -> Result<PgPool> {
    use std::str::FromStr as _;
    let mut options = sqlx::postgres::PgConnectOptions::from_str(database_url)?;
    if !synchronous_commit {
        options = options.options([("synchronous_commit", "off")]);
    }
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_with(options)
        .await?)
}

/// Like [`connect_with`], without connecting: the pool opens connections when first used, so a
/// service starts (and says it is not ready) while PostgreSQL is unreachable. Fails only on a
/// malformed URL.
pub fn connect_lazy(
    database_url: &str,
    max_connections: u32,
    synchronous_commit: bool,
) -> Result<PgPool> {
    use std::str::FromStr as _;
    let mut options = sqlx::postgres::PgConnectOptions::from_str(database_url)?;
    if !synchronous_commit {
        options = options.options([("synchronous_commit", "off")]);
    }
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_lazy_with(options))
}

/// `SELECT 1` on `pool`: whether PostgreSQL answers (readiness checks; bound it with a timeout).
pub async fn ping(pool: &PgPool) -> Result<()> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

/// Connects to `url` with one connection and pings it: the services' `healthcheck` without a
/// health server (bound it with a timeout).
pub async fn probe(url: &str) -> Result<()> {
    let pool = connect(url, 1).await?;
    ping(&pool).await
}

/// Runs pending migrations (the `migrate` subcommands; never implicitly).
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Hosts a Twilio account's credentials may be sent to (docs/semantics.md, Decision 11).
pub const TWILIO_HOSTS: &[&str] = &["api.twilio.com", "lookups.twilio.com"];

/// What [`Store::key_check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyCheck {
    /// The first account (by id), if any.
    pub first_account: Option<i64>,
    /// How many accounts were checked.
    pub accounts: usize,
    /// Accounts whose token only an old key decrypts, with that key's id.
    pub on_old_keys: Vec<(i64, KeyId)>,
    /// Accounts whose token the current key decrypts, stored without a key id.
    pub without_key_id: usize,
    /// Accounts after the first whose token no configured key decrypts.
    pub unreadable: Vec<i64>,
}

/// What [`Store::rekey_accounts`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RekeyReport {
    /// The id of the current key, which now encrypts every token.
    pub current_key_id: String,
    /// Accounts read.
    pub accounts: usize,
    /// Accounts whose token was re-encrypted (0 when run again).
    pub reencrypted: usize,
    /// The keys found before, by [`KeyUse::label`], with how many tokens each decrypted.
    pub found: std::collections::BTreeMap<String, usize>,
}

/// A connected account without its secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Account {
    pub id: i64,
    pub name: String,
    /// The service the account is for: `twilio`, or what `accounts add --service` named
    /// (`http` when it did not).
    pub provider: String,
    /// How the secret is attached ([`AccountKind`]).
    pub kind: AccountKind,
    /// Twilio's Account SID; `None` for the other kinds.
    pub account_sid: Option<String>,
    /// Where a non-Twilio account's secret goes (never the secret itself); `None` for Twilio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<HttpAuth>,
    pub allowed_hosts: Vec<String>,
}

impl Account {
    /// Whether this is a Twilio account (the only kind SMS, lookups and webhook signatures use).
    pub fn is_twilio(&self) -> bool {
        self.kind == AccountKind::Twilio
    }

    /// The associated data its secret is encrypted with: the Account SID for Twilio accounts
    /// (as always), the row id, kind and placement for the others.
    fn secret_context(&self) -> String {
        match (&self.auth, &self.account_sid) {
            (Some(auth), _) => auth.context(self.id),
            (None, Some(sid)) => sid.clone(),
            (None, None) => format!("switchboard connected account {}", self.id),
        }
    }
}

/// A connected account with its decrypted secret (a Twilio auth token, or the token, password
/// or key of another kind).
#[derive(Debug)]
pub struct AccountCredentials {
    pub account: Account,
    pub auth_token: SecretString,
}

/// The columns [`account_from_row`] reads.
const ACCOUNT_COLUMNS: &str = "id, name, provider, kind, account_sid, allowed_hosts, auth_username, auth_header, auth_query_param";

/// A webhook listener as listed for operators.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookRow {
    pub id: i64,
    pub name: String,
    pub guid: String,
    pub bot_id: Option<i64>,
    pub bot_name: Option<String>,
    pub behavior_id: Option<i64>,
    pub behavior_title: Option<String>,
    pub verify_signature: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BotRow {
    pub id: i64,
    pub uid: String,
    pub name: String,
    pub is_disabled: bool,
    pub behaviors: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BehaviorRow {
    pub id: i64,
    pub bot_id: i64,
    pub uid: String,
    pub title: String,
    pub event: String,
    pub is_disabled: bool,
    pub is_private: bool,
}

/// Everything a worker needs to run a listener's behavior.
#[derive(Debug, Clone)]
pub struct ListenerTarget {
    pub listener: WebhookListenerDef,
    /// The behavior and its bot, when the listener points at an existing one.
    pub behavior: Option<(BehaviorDef, BotDef)>,
}

/// Outcome of claiming a `MessageSid` before running a behavior.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// First time: run the behavior, then [`Store::complete_message`].
    New,
    /// Seen before and answered: reply with this stored response.
    Answered(serde_json::Value),
    /// Seen before, still being answered by another worker.
    InProgress,
}

/// A run to record.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub behavior_id: i64,
    pub listener_id: Option<i64>,
    pub message_sid: Option<String>,
    pub request_id: Option<String>,
    pub trace_id: String,
    pub mode: String,
    pub exit_state: String,
    pub status: Option<i32>,
    pub trace: serde_json::Value,
    pub errors: serde_json::Value,
    pub duration_us: i64,
}

/// The store: a pool and, when credentials are needed, the master key.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    /// Connections with `synchronous_commit` off, for writes whose loss in a crash of the
    /// database server is recovered by design (see [`Store::with_relaxed_pool`]); the main pool
    /// when none was given.
    relaxed: PgPool,
    key: Option<std::sync::Arc<Keyring>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("has_master_key", &self.key.is_some())
            .finish()
    }
}

fn count_objects(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Object(o) => 1 + o.values().map(count_objects).sum::<usize>(),
        serde_json::Value::Array(a) => a.iter().map(count_objects).sum(),
        _ => 0,
    }
}

impl Store {
    pub fn new(pool: PgPool, key: Option<MasterKey>) -> Store {
        Store::with_keys(pool, key.map(Keyring::from))
    }

    /// Like [`Store::new`], with old keys that still decrypt (a key rotation).
    pub fn with_keys(pool: PgPool, keys: Option<Keyring>) -> Store {
        Store {
            relaxed: pool.clone(),
            pool,
            key: keys.map(std::sync::Arc::new),
        }
    }

    /// Uses `relaxed` (a pool from [`connect_with`] with `synchronous_commit` off) for the
    /// outbound job writes that need not reach the disk before the call returns: each of them is
    /// either redone after a database crash (a job row re-created, an event re-published and
    /// de-duplicated) or falls back to a state the service resolves safely (a `sent` lost in a
    /// crash leaves the row `sending`, whose next delivery lists at Twilio before any send). The
    /// writes that guard against a double send or a lost outcome are durable whatever the pools
    /// say ([`Store::durable`]): the claims of attempts (before the create), the batch record
    /// of created messages and the final `published` mark (before the JetStream ack, which also
    /// flushes every earlier write of the job).
    pub fn with_relaxed_pool(mut self, relaxed: PgPool) -> Store {
        self.relaxed = relaxed;
        self
    }

    /// A transaction on the main pool whose commit waits until its WAL is on disk, whatever the
    /// pool's (or the server's, or the role's) `synchronous_commit`: `SET LOCAL
    /// synchronous_commit = on`, sent with the `BEGIN` in one round trip. For the writes whose
    /// loss in a crash of the database server would break a promise:
    ///
    /// - opt-outs and opt-ins (`suppress`, `unsuppress`, the operator's `operator_suppress` and
    ///   `operator_unsuppress`): a forgotten STOP would let the next job text someone who
    ///   unsubscribed, and Twilio does not send the STOP again;
    /// - delivery statuses (`outbound_record_status`): Twilio calls back once per status, and
    ///   the `status` event published from it must not be contradicted by the row;
    /// - the outbound claims and outcomes that stand between a create and a double send or a
    ///   lost result (`outbound_claim_new`, `outbound_claim_attempt`,
    ///   `outbound_record_sent_batch`, the final mark of `outbound_mark_published`).
    ///
    /// Everything else may run with `synchronous_commit` off (the behavior worker's default,
    /// `WORKER_SYNCHRONOUS_COMMIT`; the outbound service's relaxed pool): the message log and
    /// run records (a lost `MessageSid` claim makes a Twilio retry run the behavior again), and
    /// the outbound writes [`Store::with_relaxed_pool`] lists, each redone or resolved safely
    /// after a crash.
    pub(crate) async fn durable(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self
            .pool
            .begin_with("BEGIN; SET LOCAL synchronous_commit = on")
            .await?)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn key(&self, purpose: &'static str) -> Result<&Keyring> {
        self.key.as_deref().ok_or(StoreError::NoMasterKey(purpose))
    }

    // ---- connected accounts -------------------------------------------------------------

    /// Adds a Twilio account; the auth token is encrypted before it reaches the database.
    pub async fn add_account(
        &self,
        name: &str,
        account_sid: &str,
        auth_token: &SecretString,
    ) -> Result<Account> {
        use secrecy::ExposeSecret;
        if name.trim().is_empty() {
            return Err(StoreError::Invalid("account name is empty".into()));
        }
        let blob = self
            .key("encrypt the auth token")?
            .encrypt(auth_token.expose_secret(), account_sid);
        let hosts: Vec<String> = TWILIO_HOSTS.iter().map(|h| h.to_string()).collect();
        let row = sqlx::query(
            "INSERT INTO connected_accounts (name, account_sid, auth_token_enc, allowed_hosts) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(name)
        .bind(account_sid)
        .bind(&blob)
        .bind(&hosts)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                StoreError::Invalid(format!("an account named '{name}' already exists"))
            }
            _ => StoreError::Database(e),
        })?;
        Ok(Account {
            id: row.get("id"),
            name: name.into(),
            provider: "twilio".into(),
            kind: AccountKind::Twilio,
            account_sid: Some(account_sid.into()),
            auth: None,
            allowed_hosts: hosts,
        })
    }

    /// Adds an account for another HTTP service (`auth` says how its secret is attached), for
    /// `allowed_hosts` only (checked and lower-cased; at least one). `service` is the stored
    /// `provider` (`http` when `None`). The secret is encrypted as Twilio tokens are, bound to
    /// the new row's id, kind and placement.
    pub async fn add_http_account(
        &self,
        name: &str,
        service: Option<&str>,
        auth: &HttpAuth,
        allowed_hosts: &[String],
        secret: &SecretString,
    ) -> Result<Account> {
        use secrecy::ExposeSecret;
        if name.trim().is_empty() {
            return Err(StoreError::Invalid("account name is empty".into()));
        }
        auth.validate().map_err(StoreError::Invalid)?;
        let what = match auth {
            HttpAuth::Basic { .. } => "the password",
            _ => "the token",
        };
        account_kinds::check_secret(secret.expose_secret(), what).map_err(StoreError::Invalid)?;
        let provider = match service {
            Some(s) => account_kinds::service_name(s).map_err(StoreError::Invalid)?,
            None => "http".to_owned(),
        };
        if allowed_hosts.is_empty() {
            return Err(StoreError::Invalid(format!(
                "--kind {} needs --allowed-host <host> (at least one): its credentials go only to those hosts",
                auth.kind()
            )));
        }
        let mut hosts: Vec<String> = Vec::new();
        for h in allowed_hosts {
            let h = account_kinds::allowed_host(h).map_err(StoreError::Invalid)?;
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
        let keys = self.key("encrypt the account's secret")?;
        let id: i64 = sqlx::query_scalar(
            "SELECT nextval(pg_get_serial_sequence('connected_accounts', 'id'))",
        )
        .fetch_one(&self.pool)
        .await?;
        let blob = keys.encrypt(secret.expose_secret(), &auth.context(id));
        let (username, header, param) = match auth {
            HttpAuth::Bearer => (None, None, None),
            HttpAuth::Basic { username } => (Some(username.as_str()), None, None),
            HttpAuth::Header { header } => (None, Some(header.as_str()), None),
            HttpAuth::Query { param } => (None, None, Some(param.as_str())),
        };
        sqlx::query(
            "INSERT INTO connected_accounts (id, name, provider, kind, account_sid, auth_token_enc, allowed_hosts, auth_username, auth_header, auth_query_param) \
             VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(name)
        .bind(&provider)
        .bind(auth.kind().as_str())
        .bind(&blob)
        .bind(&hosts)
        .bind(username)
        .bind(header)
        .bind(param)
        .execute(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                StoreError::Invalid(format!("an account named '{name}' already exists"))
            }
            _ => StoreError::Database(e),
        })?;
        Ok(Account {
            id,
            name: name.into(),
            provider,
            kind: auth.kind(),
            account_sid: None,
            auth: Some(auth.clone()),
            allowed_hosts: hosts,
        })
    }

    pub async fn list_accounts(&self) -> Result<Vec<Account>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM connected_accounts ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(account_from_row).collect())
    }

    pub async fn account(&self, id: i64) -> Result<Option<Account>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM connected_accounts WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(account_from_row))
    }

    /// Checks the master key against the stored credentials: decrypts the auth token of the
    /// first connected account. `Ok(None)`: no account, nothing to check; `Ok(Some(id))`: that
    /// account's token decrypts; [`StoreError::WrongMasterKey`] when it does not (the services
    /// and the CLI refuse to start with a key that would fail at first use), or
    /// [`StoreError::NoMasterKey`] when there are accounts and no key.
    ///
    /// Every account is checked, with any configured key (current or old).
    pub async fn check_master_key(&self) -> Result<Option<i64>> {
        Ok(self.key_check().await?.first_account)
    }

    /// Decrypts every stored auth token with the configured keys and says which key each
    /// needed: [`StoreError::WrongMasterKey`] when no configured key decrypts the first
    /// account's (the others' failures are listed in [`KeyCheck::unreadable`]).
    pub async fn key_check(&self) -> Result<KeyCheck> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS}, auth_token_enc FROM connected_accounts ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?;
        let mut check = KeyCheck::default();
        for r in &rows {
            let account = account_from_row(r);
            let blob: Vec<u8> = r.get("auth_token_enc");
            let first = check.first_account.is_none();
            check.first_account.get_or_insert(account.id);
            check.accounts += 1;
            let used = match self.decrypt_token_with(&account, &blob) {
                Ok((_, used)) => used,
                // As before key rotation: the first account decides; another one saved with a
                // key no longer configured fails its own jobs (and is warned about at start).
                Err(StoreError::WrongMasterKey { account_id, .. }) if !first => {
                    check.unreadable.push(account_id);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !used.current {
                check.on_old_keys.push((account.id, used.key_id));
            } else if !used.has_key_id {
                check.without_key_id += 1;
            }
        }
        Ok(check)
    }

    /// Re-encrypts every stored auth token with the current key, in the format that names it,
    /// in one transaction (rows locked): tokens already so encrypted are left as they are, so
    /// running it again changes nothing. Fails, changing nothing, when a token decrypts with
    /// no configured key.
    pub async fn rekey_accounts(&self) -> Result<RekeyReport> {
        let keys = self.key("re-encrypt auth tokens")?;
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            sqlx::AssertSqlSafe(format!("SELECT {ACCOUNT_COLUMNS}, auth_token_enc FROM connected_accounts ORDER BY id FOR UPDATE")),
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut report = RekeyReport {
            current_key_id: keys.current().id().to_string(),
            ..RekeyReport::default()
        };
        for r in &rows {
            let account = account_from_row(r);
            let blob: Vec<u8> = r.get("auth_token_enc");
            let (token, used) = self.decrypt_token_with(&account, &blob)?;
            report.accounts += 1;
            *report.found.entry(used.label()).or_default() += 1;
            if used.needs_rekey() {
                use secrecy::ExposeSecret;
                let fresh = keys.encrypt(token.expose_secret(), &account.secret_context());
                sqlx::query("UPDATE connected_accounts SET auth_token_enc = $2 WHERE id = $1")
                    .bind(account.id)
                    .bind(&fresh)
                    .execute(&mut *tx)
                    .await?;
                report.reencrypted += 1;
            }
        }
        tx.commit().await?;
        Ok(report)
    }

    /// [`Store::check_master_key`] as a service or the CLI starts, bounded by `timeout`: a key
    /// that does not decrypt the stored credentials is an error (the caller exits with it); a
    /// database that does not answer is logged and the check is left to the first use.
    pub async fn check_master_key_at_start(&self, timeout: std::time::Duration) -> Result<()> {
        match tokio::time::timeout(timeout, self.key_check()).await {
            Ok(Ok(KeyCheck {
                first_account: Some(account_id),
                accounts,
                on_old_keys,
                without_key_id,
                unreadable,
            })) => {
                if !unreadable.is_empty() {
                    tracing::warn!(
                        accounts = ?unreadable,
                        "no configured key (SWITCHBOARD_MASTER_KEY, SWITCHBOARD_OLD_MASTER_KEYS) decrypts these accounts' stored credentials: their jobs fail with credentials_unreadable"
                    );
                }
                if on_old_keys.is_empty() {
                    tracing::info!(
                        account_id,
                        accounts,
                        without_key_id,
                        "SWITCHBOARD_MASTER_KEY decrypts the stored credentials"
                    );
                } else {
                    let ids: Vec<String> = on_old_keys
                        .iter()
                        .map(|(id, key)| format!("account {id}: key {key}"))
                        .collect();
                    tracing::warn!(
                        accounts,
                        on_old_keys = %ids.join(", "),
                        "stored credentials still use an old key (SWITCHBOARD_OLD_MASTER_KEYS): run `switchboard accounts rekey` before removing it"
                    );
                }
                Ok(())
            }
            Ok(Ok(KeyCheck { .. })) => {
                tracing::info!("no connected account yet: SWITCHBOARD_MASTER_KEY not checked");
                Ok(())
            }
            Ok(Err(e @ (StoreError::WrongMasterKey { .. } | StoreError::NoMasterKey(_)))) => Err(e),
            Ok(Err(e)) => {
                tracing::warn!(
                    error = %e,
                    "SWITCHBOARD_MASTER_KEY not checked against the stored credentials (reading them failed); going on (a wrong key shows at first use)"
                );
                Ok(())
            }
            Err(_) => {
                tracing::warn!(
                    timeout_s = timeout.as_secs_f64(),
                    "SWITCHBOARD_MASTER_KEY not checked against the stored credentials (PostgreSQL did not answer); going on (a wrong key shows at first use)"
                );
                Ok(())
            }
        }
    }

    /// The auth token of `account` from its stored ciphertext.
    fn decrypt_token(&self, account: &Account, blob: &[u8]) -> Result<SecretString> {
        Ok(self.decrypt_token_with(account, blob)?.0)
    }

    /// [`Store::decrypt_token`], saying which key decrypted it.
    fn decrypt_token_with(&self, account: &Account, blob: &[u8]) -> Result<(SecretString, KeyUse)> {
        self.key("decrypt auth tokens")?
            .decrypt(blob, &account.secret_context())
            .map_err(|e| match e {
                SecretError::Decrypt => StoreError::WrongMasterKey {
                    account_id: account.id,
                    account_name: account.name.clone(),
                },
                other => StoreError::Secret(other),
            })
    }

    /// The Twilio accounts with this Account SID, with decrypted tokens (signature verification;
    /// accounts of other kinds have no Account SID and are never considered).
    pub async fn credentials_by_sid(&self, account_sid: &str) -> Result<Vec<AccountCredentials>> {
        let rows = sqlx::query(
            sqlx::AssertSqlSafe(format!("SELECT {ACCOUNT_COLUMNS}, auth_token_enc FROM connected_accounts WHERE account_sid = $1 AND kind = 'twilio' ORDER BY id")),
        )
        .bind(account_sid)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let account = account_from_row(r);
                let blob: Vec<u8> = r.get("auth_token_enc");
                Ok(AccountCredentials {
                    auth_token: self.decrypt_token(&account, &blob)?,
                    account,
                })
            })
            .collect()
    }

    /// An account with its decrypted token, by id.
    pub async fn credentials(&self, id: i64) -> Result<Option<AccountCredentials>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS}, auth_token_enc FROM connected_accounts WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let account = account_from_row(&r);
        let blob: Vec<u8> = r.get("auth_token_enc");
        let auth_token = self.decrypt_token(&account, &blob)?;
        Ok(Some(AccountCredentials {
            account,
            auth_token,
        }))
    }

    // ---- import ------------------------------------------------------------------------------

    /// Reserves enough record ids for planning `raw_package` (an upper bound: one per JSON
    /// object in the document). Unused ids are simply skipped in the sequence.
    pub async fn reserve_ids(&self, raw_package: &serde_json::Value) -> Result<Vec<i64>> {
        let n = count_objects(raw_package).max(1) as i64;
        let rows = sqlx::query("SELECT nextval('record_ids') AS id FROM generate_series(1, $1)")
            .bind(n)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get::<i64, _>("id")).collect())
    }

    /// Writes an import plan in one transaction (docs/semantics.md, Decision 2): all of it
    /// or nothing.
    pub async fn write_plan(&self, plan: &ImportPlan) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let import_id: i64 =
            sqlx::query("INSERT INTO imports (package_name, records) VALUES ($1, $2) RETURNING id")
                .bind(&plan.package_name)
                .bind(serde_json::to_value(&plan.records).expect("records serialize"))
                .fetch_one(&mut *tx)
                .await?
                .get("id");
        for bot in &plan.bots {
            insert_bot(&mut tx, import_id, bot).await?;
        }
        for l in &plan.webhooks {
            sqlx::query(
                "INSERT INTO webhook_listeners (id, import_id, uid, name, guid, extension_id, extension_params, behavior_id, verify_signature) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(l.id)
            .bind(import_id)
            .bind(&l.uid)
            .bind(&l.name)
            .bind(&l.guid)
            .bind(&l.extension_id)
            .bind(&l.extension_params)
            .bind(l.behavior_id)
            .bind(l.verify_signature)
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Invalid(format!(
                    "records ({}) guid: a webhook listener with this guid already exists",
                    l.uid
                )),
                _ => StoreError::Database(e),
            })?;
        }
        // Each bot's first revision (`bots revisions`).
        for bot in &plan.bots {
            let state = bots::state_of_plan_bot(bot, &plan.webhooks);
            bots::insert_revision(&mut tx, &state, "import", &plan.package_name, "imported")
                .await?;
        }
        tx.commit().await?;
        Ok(import_id)
    }

    // ---- configuration -----------------------------------------------------------------------

    pub async fn list_webhooks(&self) -> Result<Vec<WebhookRow>> {
        let rows = sqlx::query(
            "SELECT l.id, l.name, l.guid, l.behavior_id, l.verify_signature, b.title AS behavior_title, \
                    bot.id AS bot_id, bot.name AS bot_name \
             FROM webhook_listeners l \
             LEFT JOIN behaviors b ON b.id = l.behavior_id \
             LEFT JOIN bots bot ON bot.id = b.bot_id \
             ORDER BY l.id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| WebhookRow {
                id: r.get("id"),
                name: r.get("name"),
                guid: r.get("guid"),
                bot_id: r.get("bot_id"),
                bot_name: r.get("bot_name"),
                behavior_id: r.get("behavior_id"),
                behavior_title: r.get("behavior_title"),
                verify_signature: r.get("verify_signature"),
            })
            .collect())
    }

    pub async fn list_bots(&self) -> Result<Vec<BotRow>> {
        let rows = sqlx::query(
            "SELECT b.id, b.uid, b.name, b.is_disabled, (SELECT count(*) FROM behaviors x WHERE x.bot_id = b.id) AS n \
             FROM bots b ORDER BY b.id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| BotRow {
                id: r.get("id"),
                uid: r.get("uid"),
                name: r.get("name"),
                is_disabled: r.get("is_disabled"),
                behaviors: r.get("n"),
            })
            .collect())
    }

    /// Resolves a bot given by id or by package uid (which must then be unique).
    pub async fn resolve_bot(&self, id_or_uid: &str) -> Result<i64> {
        resolve(&self.pool, BOT_QUERIES, "bot", id_or_uid).await
    }

    /// Resolves a behavior given by id or by package uid (which must then be unique).
    pub async fn resolve_behavior(&self, id_or_uid: &str) -> Result<i64> {
        resolve(&self.pool, BEHAVIOR_QUERIES, "behavior", id_or_uid).await
    }

    pub async fn list_behaviors(&self, bot_id: i64) -> Result<Vec<BehaviorRow>> {
        let rows = sqlx::query(
            "SELECT id, bot_id, uid, title, event, is_disabled, is_private FROM behaviors WHERE bot_id = $1 ORDER BY id",
        )
        .bind(bot_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| BehaviorRow {
                id: r.get("id"),
                bot_id: r.get("bot_id"),
                uid: r.get("uid"),
                title: r.get("title"),
                event: r.get("event"),
                is_disabled: r.get("is_disabled"),
                is_private: r.get("is_private"),
            })
            .collect())
    }

    pub async fn set_bot_disabled(&self, id: i64, disabled: bool) -> Result<()> {
        self.set_disabled(
            "UPDATE bots SET is_disabled = $2, updated_at = now() WHERE id = $1",
            "bot",
            id,
            disabled,
        )
        .await
    }

    pub async fn set_behavior_disabled(&self, id: i64, disabled: bool) -> Result<()> {
        self.set_disabled(
            "UPDATE behaviors SET is_disabled = $2, updated_at = now() WHERE id = $1",
            "behavior",
            id,
            disabled,
        )
        .await
    }

    async fn set_disabled(
        &self,
        update: &'static str,
        what: &str,
        id: i64,
        disabled: bool,
    ) -> Result<()> {
        let done = sqlx::query(update)
            .bind(id)
            .bind(disabled)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("{what} {id}")));
        }
        Ok(())
    }

    // ---- runtime -----------------------------------------------------------------------------

    /// The listener for a guid (case-insensitive) and the behavior it points at.
    pub async fn listener_target(&self, guid: &str) -> Result<Option<ListenerTarget>> {
        let row = sqlx::query(
            "SELECT id, uid, name, guid, extension_id, extension_params, behavior_id, verify_signature \
             FROM webhook_listeners WHERE lower(guid) = lower($1)",
        )
        .bind(guid)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let listener = WebhookListenerDef {
            uid: r.get("uid"),
            id: r.get("id"),
            name: r.get("name"),
            guid: r.get("guid"),
            extension_id: r.get("extension_id"),
            extension_params: r.get("extension_params"),
            behavior_id: r.get("behavior_id"),
            verify_signature: r.get("verify_signature"),
        };
        let behavior = match listener.behavior_id {
            Some(id) => self.behavior_with_bot(id).await?,
            None => None,
        };
        Ok(Some(ListenerTarget { listener, behavior }))
    }

    /// A behavior (with its current enabled state) and its bot (without the bot's behaviors).
    pub async fn behavior_with_bot(
        &self,
        behavior_id: i64,
    ) -> Result<Option<(BehaviorDef, BotDef)>> {
        let row = sqlx::query(
            "SELECT b.definition, b.is_disabled AS behavior_disabled, bot.id AS bot_id, bot.uid AS bot_uid, \
                    bot.name AS bot_name, bot.is_disabled AS bot_disabled, bot.owner, bot.params \
             FROM behaviors b JOIN bots bot ON bot.id = b.bot_id WHERE b.id = $1",
        )
        .bind(behavior_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let mut def: BehaviorDef = serde_json::from_value(r.get("definition"))
            .map_err(|e| StoreError::Corrupt(format!("behavior {behavior_id} definition: {e}")))?;
        def.is_disabled = r.get("behavior_disabled");
        let owner: Owner = serde_json::from_value(r.get("owner")).map_err(|e| {
            StoreError::Corrupt(format!("bot owner of behavior {behavior_id}: {e}"))
        })?;
        let bot = BotDef {
            uid: r.get("bot_uid"),
            id: r.get("bot_id"),
            name: r.get("bot_name"),
            is_disabled: r.get("bot_disabled"),
            owner,
            params: r.get("params"),
            image: None,
            behaviors: Vec::new(),
        };
        Ok(Some((def, bot)))
    }

    /// Claims a `MessageSid` atomically (insert-if-absent), or returns what it was answered with.
    /// A claim still unanswered after `stale_after` (its worker died between the claim and the
    /// answer) is taken over: this delivery gets [`Claim::New`] and runs the behavior.
    pub async fn claim_message(
        &self,
        message_sid: &str,
        listener_id: i64,
        account_sid: Option<&str>,
        request_id: &str,
        request: &serde_json::Value,
        stale_after: std::time::Duration,
    ) -> Result<Claim> {
        let inserted = sqlx::query(
            "INSERT INTO inbound_messages (message_sid, listener_id, account_sid, request_id, request) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (message_sid) DO NOTHING",
        )
        .bind(message_sid)
        .bind(listener_id)
        .bind(account_sid)
        .bind(request_id)
        .bind(jsonb::value(request).as_ref())
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Claim::New);
        }
        let taken_over = sqlx::query(
            "UPDATE inbound_messages SET claimed_at = now(), request_id = $2 \
             WHERE message_sid = $1 AND response IS NULL \
               AND coalesce(claimed_at, received_at) < now() - make_interval(secs => $3) \
             RETURNING message_sid",
        )
        .bind(message_sid)
        .bind(request_id)
        .bind(stale_after.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        if taken_over.is_some() {
            tracing::warn!(
                stale_after_secs = stale_after.as_secs(),
                "took over a MessageSid claim left unanswered (its worker stopped before answering)"
            );
            return Ok(Claim::New);
        }
        let row = sqlx::query("SELECT response FROM inbound_messages WHERE message_sid = $1")
            .bind(message_sid)
            .fetch_one(&self.pool)
            .await?;
        Ok(match row.get::<Option<serde_json::Value>, _>("response") {
            Some(resp) => Claim::Answered(resp),
            None => Claim::InProgress,
        })
    }

    /// The stored response of a logged `MessageSid`: `None` when it is not in the log,
    /// `Some(None)` while its first delivery is still being answered.
    pub async fn stored_response(
        &self,
        message_sid: &str,
    ) -> Result<Option<Option<serde_json::Value>>> {
        let row = sqlx::query("SELECT response FROM inbound_messages WHERE message_sid = $1")
            .bind(message_sid)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get("response")))
    }

    /// Starts the batched writer of answered webhooks on this store's pool (see
    /// [`webhook_log`]).
    pub fn webhook_log(&self, max_batch: usize, concurrency: usize) -> webhook_log::WebhookLog {
        webhook_log::WebhookLog::start(self.pool.clone(), max_batch, concurrency)
    }

    /// Gives up a claim whose run could not complete, so Twilio's retry runs it again.
    pub async fn release_message(&self, message_sid: &str) -> Result<()> {
        sqlx::query("DELETE FROM inbound_messages WHERE message_sid = $1 AND response IS NULL")
            .bind(message_sid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a run; returns its id.
    pub async fn record_run(&self, run: &RunRecord) -> Result<i64> {
        insert_run(&self.pool, run).await
    }

    /// Records a run and, for a claimed message, its response: one statement, so one round
    /// trip and atomic without an explicit transaction.
    pub async fn complete_run(
        &self,
        run: &RunRecord,
        response: Option<&serde_json::Value>,
    ) -> Result<i64> {
        let (Some(sid), Some(resp)) = (&run.message_sid, response) else {
            return insert_run(&self.pool, run).await;
        };
        Ok(sqlx::query(
            "WITH run AS ( \
                INSERT INTO behavior_runs (behavior_id, listener_id, message_sid, request_id, trace_id, mode, exit_state, status, trace, errors, duration_us) \
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id \
             ), done AS ( \
                UPDATE inbound_messages SET response = $12, run_id = (SELECT id FROM run), completed_at = now() \
                WHERE message_sid = $3 \
             ) SELECT id FROM run",
        )
        .bind(run.behavior_id)
        .bind(run.listener_id)
        .bind(sid)
        .bind(&run.request_id)
        .bind(&run.trace_id)
        .bind(&run.mode)
        .bind(&run.exit_state)
        .bind(run.status)
        .bind(jsonb::value(&run.trace).as_ref())
        .bind(jsonb::value(&run.errors).as_ref())
        .bind(run.duration_us)
        .bind(jsonb::value(resp).as_ref())
        .fetch_one(&self.pool)
        .await?
        .get("id"))
    }

    /// The trace ids of a behavior's runs, oldest first (tests and operators).
    pub async fn run_trace_ids(&self, behavior_id: i64) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT trace_id FROM behavior_runs WHERE behavior_id = $1 ORDER BY id")
                .bind(behavior_id)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(|r| r.get("trace_id")).collect())
    }

    /// Number of runs recorded for a behavior (tests and operators).
    pub async fn count_runs(&self, behavior_id: i64) -> Result<i64> {
        Ok(
            sqlx::query("SELECT count(*) AS n FROM behavior_runs WHERE behavior_id = $1")
                .bind(behavior_id)
                .fetch_one(&self.pool)
                .await?
                .get("n"),
        )
    }
}

async fn insert_run<'e, E: sqlx::PgExecutor<'e>>(executor: E, run: &RunRecord) -> Result<i64> {
    Ok(sqlx::query(
        "INSERT INTO behavior_runs (behavior_id, listener_id, message_sid, request_id, trace_id, mode, exit_state, status, trace, errors, duration_us) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
    )
    .bind(run.behavior_id)
    .bind(run.listener_id)
    .bind(&run.message_sid)
    .bind(&run.request_id)
    .bind(&run.trace_id)
    .bind(&run.mode)
    .bind(&run.exit_state)
    .bind(run.status)
    .bind(jsonb::value(&run.trace).as_ref())
    .bind(jsonb::value(&run.errors).as_ref())
    .bind(run.duration_us)
    .fetch_one(executor)
    .await?
    .get("id"))
}

fn account_from_row(r: &sqlx::postgres::PgRow) -> Account {
    let kind_text: String = r.get("kind");
    // The table's CHECK constraint keeps the kind and its columns consistent.
    let kind = kind_text.parse().unwrap_or(AccountKind::Twilio);
    let text = |c: &str| r.get::<Option<String>, _>(c).unwrap_or_default();
    let auth = match kind {
        AccountKind::Twilio => None,
        AccountKind::Bearer => Some(HttpAuth::Bearer),
        AccountKind::Basic => Some(HttpAuth::Basic {
            username: text("auth_username"),
        }),
        AccountKind::ApiKey => Some(match r.get::<Option<String>, _>("auth_header") {
            Some(header) => HttpAuth::Header { header },
            None => HttpAuth::Query {
                param: text("auth_query_param"),
            },
        }),
    };
    Account {
        id: r.get("id"),
        name: r.get("name"),
        provider: r.get("provider"),
        kind,
        account_sid: r.get("account_sid"),
        auth,
        allowed_hosts: r.get("allowed_hosts"),
    }
}

async fn insert_bot(
    tx: &mut Transaction<'_, Postgres>,
    import_id: i64,
    bot: &BotDef,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO bots (id, import_id, uid, name, is_disabled, owner, params, image) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(bot.id)
    .bind(import_id)
    .bind(&bot.uid)
    .bind(&bot.name)
    .bind(bot.is_disabled)
    .bind(serde_json::to_value(&bot.owner).expect("owner serializes"))
    .bind(&bot.params)
    .bind(&bot.image)
    .execute(&mut **tx)
    .await?;
    for b in &bot.behaviors {
        sqlx::query(
            "INSERT INTO behaviors (id, bot_id, uid, title, event, is_disabled, is_private, priority, definition) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(b.id)
        .bind(bot.id)
        .bind(&b.uid)
        .bind(&b.title)
        .bind(&b.event)
        .bind(b.is_disabled)
        .bind(b.is_private)
        .bind(b.priority)
        .bind(serde_json::to_value(b).expect("behavior serializes"))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// (query by id, query by uid) for [`resolve`].
type ResolveQueries = (&'static str, &'static str);
const BOT_QUERIES: ResolveQueries = (
    "SELECT 1 FROM bots WHERE id = $1",
    "SELECT id FROM bots WHERE uid = $1 ORDER BY id",
);
const BEHAVIOR_QUERIES: ResolveQueries = (
    "SELECT 1 FROM behaviors WHERE id = $1",
    "SELECT id FROM behaviors WHERE uid = $1 ORDER BY id",
);

async fn resolve(
    pool: &PgPool,
    queries: ResolveQueries,
    what: &str,
    id_or_uid: &str,
) -> Result<i64> {
    if let Ok(id) = id_or_uid.parse::<i64>() {
        let exists = sqlx::query(queries.0).bind(id).fetch_optional(pool).await?;
        return exists
            .map(|_| id)
            .ok_or_else(|| StoreError::NotFound(format!("{what} {id}")));
    }
    let rows = sqlx::query(queries.1)
        .bind(id_or_uid)
        .fetch_all(pool)
        .await?;
    match rows.len() {
        0 => Err(StoreError::NotFound(format!("{what} '{id_or_uid}'"))),
        1 => Ok(rows[0].get("id")),
        _ => Err(StoreError::Invalid(format!(
            "{} {what}s have uid '{id_or_uid}' (the package was imported more than once); give the id instead: {}",
            rows.len(),
            rows.iter()
                .map(|r| r.get::<i64, _>("id").to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
