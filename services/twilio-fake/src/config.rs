//! Command-line and environment configuration of the fake (clap, one env var per option).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use switchboard_twilio::AccountSid;

/// How the fake is run. Every option can also be given by its environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on; the Messages API, the Lookup API and the admin API share it.
    #[arg(long = "listen", env = "LISTEN_ADDR", default_value = "0.0.0.0:8090")]
    pub listen: SocketAddr,

    /// An account the fake accepts, as `AC…:auth-token` (repeat the option, or separate with
    /// commas in the environment variable). Requests are checked with HTTP Basic auth against
    /// these, and status callbacks are signed with the account's token.
    #[arg(
        long = "account",
        env = "TWILIO_FAKE_ACCOUNTS",
        value_delimiter = ',',
        value_name = "AC…:TOKEN"
    )]
    pub accounts: Vec<Account>,

    /// An API key acting for an account, as `AC…:SK…:secret` (repeat the option, or separate
    /// with commas in the environment variable). Basic auth as `SK…:secret` then opens that
    /// account's paths; callbacks are still signed with the account's auth token.
    #[arg(
        long = "api-key",
        env = "TWILIO_FAKE_API_KEYS",
        value_delimiter = ',',
        value_name = "AC…:SK…:SECRET"
    )]
    pub api_keys: Vec<ApiKey>,

    /// Delay before each status callback (queued, sent, delivered…), in milliseconds.
    #[arg(long, env = "TWILIO_FAKE_CALLBACK_DELAY_MS", default_value_t = 200)]
    pub callback_delay_ms: u64,

    /// Base URL the fake is reached at (e.g. `http://twilio-fake:8090`), used in the absolute
    /// URLs it hands out (the `url` of lookups). Unset: Twilio's own hosts, as the real API.
    #[arg(long, env = "TWILIO_FAKE_PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,

    /// Every API request is checked against Twilio's official OpenAPI descriptions and the
    /// violations are recorded in `/_fake/requests`. Unset: the descriptions built into the
    /// binary (`services/twilio-fake/openapi/`). Set: a directory to read
    /// `twilio_api_v2010.json`, `twilio_lookups_v1.json` and `twilio_lookups_v2.json` from
    /// instead (e.g. newer ones); one holding none of them means a warning and no check.
    #[arg(long, env = "TWILIO_FAKE_OPENAPI_DIR")]
    pub openapi_dir: Option<PathBuf>,

    /// Seed of the random fault injection (global 429 and 5xx rates), for reproducible runs.
    /// The admin API can change it (`PUT /_fake/faults`).
    #[arg(long, env = "TWILIO_FAKE_SEED", default_value_t = 0)]
    pub seed: u64,

    /// How many received requests `/_fake/requests` keeps (the oldest are dropped first).
    #[arg(
        long,
        env = "TWILIO_FAKE_REQUEST_LOG_CAPACITY",
        default_value_t = 10_000
    )]
    pub request_log_capacity: usize,
}

impl Config {
    /// A configuration for tests: port 0 on 127.0.0.1, the given accounts, no callback delay
    /// to speak of, and the OpenAPI check with the built-in descriptions (set `openapi_dir` to
    /// read others, or a directory without any to turn the check off).
    pub fn for_tests(accounts: Vec<Account>) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            accounts,
            api_keys: Vec::new(),
            callback_delay_ms: 20,
            public_base_url: None,
            openapi_dir: None,
            seed: 0,
            request_log_capacity: 10_000,
        }
    }
}

/// An account's auth token; `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken(String);

impl AuthToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> AuthToken {
        AuthToken(token.into())
    }

    /// The secret itself, for checking credentials and signing callbacks.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken([redacted])")
    }
}

/// An account the fake accepts: its SID and auth token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// `AC` followed by 32 hex digits.
    pub sid: AccountSid,
    /// The auth token (Basic auth password, and the key of callback signatures).
    pub token: AuthToken,
}

impl Account {
    /// An account from its parts.
    pub fn new(sid: AccountSid, token: impl Into<String>) -> Account {
        Account {
            sid,
            token: AuthToken::new(token),
        }
    }
}

impl FromStr for Account {
    type Err = String;

    fn from_str(s: &str) -> Result<Account, String> {
        let (sid, token) = s
            .trim()
            .split_once(':')
            .ok_or_else(|| "expected AC…:token".to_owned())?;
        let sid = AccountSid::parse(sid).map_err(|e| e.to_string())?;
        if token.is_empty() {
            return Err("the auth token is empty".to_owned());
        }
        Ok(Account::new(sid, token))
    }
}

/// An API key (`SK…` and its secret) that authenticates for an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The account it acts for.
    pub account: AccountSid,
    /// `SK` followed by 32 hex digits.
    pub sid: String,
    /// The key's secret (the Basic auth password).
    pub secret: AuthToken,
}

impl FromStr for ApiKey {
    type Err = String;

    fn from_str(s: &str) -> Result<ApiKey, String> {
        let mut parts = s.trim().splitn(3, ':');
        let (Some(account), Some(sid), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("expected AC…:SK…:secret".to_owned());
        };
        let account = AccountSid::parse(account).map_err(|e| e.to_string())?;
        let hex = sid.strip_prefix("SK").unwrap_or("");
        if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err("the API key SID must be SK followed by 32 hex digits".to_owned());
        }
        if secret.is_empty() {
            return Err("the API key secret is empty".to_owned());
        }
        Ok(ApiKey {
            account,
            sid: sid.to_owned(),
            secret: AuthToken::new(secret),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_accounts_and_hides_tokens() {
        let a: Account = "AC0123456789abcdef0123456789abcdef:s3cret".parse().unwrap();
        assert_eq!(a.sid.as_str(), "AC0123456789abcdef0123456789abcdef");
        assert_eq!(a.token.expose(), "s3cret");
        assert!(!format!("{a:?}").contains("s3cret"));
        assert!("AC0123:tok".parse::<Account>().is_err());
        let key: ApiKey =
            "AC0123456789abcdef0123456789abcdef:SK0123456789abcdef0123456789abcdef:se:cret"
                .parse()
                .unwrap();
        assert_eq!(key.sid, "SK0123456789abcdef0123456789abcdef");
        assert_eq!(key.secret.expose(), "se:cret");
        assert!(!format!("{key:?}").contains("se:cret"));
        assert!(
            "AC0123456789abcdef0123456789abcdef:SK01:x"
                .parse::<ApiKey>()
                .is_err()
        );
        assert!(
            "AC0123456789abcdef0123456789abcdef"
                .parse::<Account>()
                .is_err()
        );
        assert!(
            "AC0123456789abcdef0123456789abcdef:"
                .parse::<Account>()
                .is_err()
        );
    }
}
