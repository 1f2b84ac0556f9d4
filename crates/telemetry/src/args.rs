//! Options every NATS service shares, as clap structs each binary flattens into its own
//! command line (`#[command(flatten)]`), so the names, env vars and documentation are the same
//! everywhere.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use secrecy::{ExposeSecret, SecretString};

/// The health (and, later, metrics) HTTP server.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MetricsArgs {
    /// Address of the HTTP server for probes, e.g. 0.0.0.0:9090. GET /healthz answers 200 while
    /// the process runs; GET /readyz answers 200 only when NATS is connected, PostgreSQL answers
    /// within 1 s and the service's subscriptions or consumers are bound, else 503 with a line
    /// naming what is not ready. With it set, `healthcheck` asks /readyz on this port (0.0.0.0
    /// and :: mean loopback) instead of connecting to NATS and PostgreSQL itself. Unset: no
    /// HTTP server.
    #[arg(long, env = "METRICS_ADDR", value_name = "ADDR:PORT", global = true)]
    pub metrics_addr: Option<SocketAddr>,
}

/// How long a stop may take.
#[derive(Debug, Clone, clap::Args)]
pub struct ShutdownArgs {
    /// Seconds from SIGTERM (or Ctrl-C) to exit. The service stops taking work at once and
    /// drains what is in flight; whatever still runs when this time is up is abandoned, a log
    /// line names it and the process exits with status 1, even when NATS or PostgreSQL is
    /// unreachable (behavior-worker and outbound drain for all but a fifth of it, at most 2 s,
    /// kept for flushing their last replies and acknowledgements to NATS). Keep it below the
    /// orchestrator's grace period (Kubernetes: terminationGracePeriodSeconds, 30 s by default;
    /// Docker: stop_grace_period, 10 s by default), which ends in SIGKILL.
    #[arg(
        long,
        env = "SHUTDOWN_TIMEOUT_SECS",
        default_value_t = 10,
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..=3600),
        global = true
    )]
    pub shutdown_timeout_secs: u64,
}

impl Default for ShutdownArgs {
    fn default() -> Self {
        ShutdownArgs {
            shutdown_timeout_secs: 10,
        }
    }
}

impl ShutdownArgs {
    /// The whole shutdown's bound.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    /// The part of it spent draining work in flight ([`crate::lifecycle::drain_budget`]).
    pub fn drain_budget(&self) -> Duration {
        crate::lifecycle::drain_budget(self.timeout())
    }
}

/// The NATS server address when NATS_URL is not set.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// How a process reaches NATS and who it is there: the server URL(s), one way to authenticate
/// (a credentials file, an nkey seed, a user and password, or a token), TLS, and the prefix of
/// its reply subjects. Every binary flattens it, so the names are the ones NATS users know
/// (`NATS_URL`, `NATS_CREDS`, `NATS_NKEY`, `NATS_USER`/`NATS_PASSWORD`, `NATS_TOKEN`, `NATS_CA`,
/// `NATS_CERT`/`NATS_KEY`); docs/nats-security.md says which user each service needs.
#[derive(Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL, or several separated by commas (nats://host:4222; tls://host:4222
    /// requires TLS). Credentials in it (nats://user:password@host) are never shown in --help,
    /// logs or errors, but NATS_USER/NATS_PASSWORD keep them out of the URL.
    #[arg(
        long,
        env = "NATS_URL",
        hide_env_values = true,
        default_value = DEFAULT_NATS_URL,
        value_name = "URL",
        global = true
    )]
    pub nats_url: String,
    /// Credentials file (a user JWT and its nkey seed, as `nsc` writes it) for NATS
    /// decentralized (operator/account JWT) authentication.
    #[arg(long, env = "NATS_CREDS", value_name = "FILE", global = true)]
    pub nats_creds: Option<PathBuf>,
    /// File holding the nkey seed (a line `SU…`) of the NATS user to authenticate as; the
    /// server's configuration names its public key (`nk` prints both).
    #[arg(long, env = "NATS_NKEY", value_name = "FILE", global = true)]
    pub nats_nkey: Option<PathBuf>,
    /// NATS user name, with NATS_PASSWORD (deploy/nats/nats-server.conf has one user per
    /// service).
    #[arg(long, env = "NATS_USER", value_name = "USER", global = true)]
    pub nats_user: Option<String>,
    /// The NATS user's password (never shown in --help, logs or errors).
    #[arg(
        long,
        env = "NATS_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD",
        global = true
    )]
    pub nats_password: Option<SecretString>,
    /// NATS authentication token (never shown in --help, logs or errors).
    #[arg(
        long,
        env = "NATS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        global = true
    )]
    pub nats_token: Option<SecretString>,
    /// PEM file of the certificate authorities that signed the NATS server's certificate (when
    /// the system's roots do not). Setting it requires TLS.
    #[arg(long, env = "NATS_CA", value_name = "FILE", global = true)]
    pub nats_ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS, with NATS_KEY. Setting it requires TLS.
    #[arg(long, env = "NATS_CERT", value_name = "FILE", global = true)]
    pub nats_cert: Option<PathBuf>,
    /// PEM private key of NATS_CERT.
    #[arg(long, env = "NATS_KEY", value_name = "FILE", global = true)]
    pub nats_key: Option<PathBuf>,
    /// Prefix of this process's reply subjects (its requests' replies and JetStream API
    /// answers). Default: `_INBOX_` and the service's name (`_INBOX_ingress`,
    /// `_INBOX_behavior-worker`, `_INBOX_outbound`, `_INBOX_switchboard-cli`), so that each
    /// service's replies stay out of the others' and out of the integrators' `_INBOX.>`.
    #[arg(long, env = "NATS_INBOX_PREFIX", value_name = "PREFIX", global = true)]
    pub nats_inbox_prefix: Option<String>,
}

impl Default for NatsArgs {
    fn default() -> Self {
        NatsArgs::new(DEFAULT_NATS_URL)
    }
}

/// Passwords, tokens and credentials in the URL are left out.
impl fmt::Debug for NatsArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |s: &Option<SecretString>| s.as_ref().map(|_| "***");
        f.debug_struct("NatsArgs")
            .field("nats_url", &self.display_url())
            .field("nats_creds", &self.nats_creds)
            .field("nats_nkey", &self.nats_nkey)
            .field("nats_user", &self.nats_user)
            .field("nats_password", &hidden(&self.nats_password))
            .field("nats_token", &hidden(&self.nats_token))
            .field("nats_ca", &self.nats_ca)
            .field("nats_cert", &self.nats_cert)
            .field("nats_key", &self.nats_key)
            .field("nats_inbox_prefix", &self.nats_inbox_prefix)
            .finish()
    }
}

/// The way a client authenticates, as [`NatsArgs`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsAuth {
    /// None: the server lets anyone in (development only).
    None,
    /// As the URL says (`nats://user:password@host` or `nats://token@host`).
    InUrl,
    /// `NATS_CREDS`.
    Creds(PathBuf),
    /// `NATS_NKEY`.
    Nkey(PathBuf),
    /// `NATS_USER` and `NATS_PASSWORD`.
    UserPassword(String),
    /// `NATS_TOKEN`.
    Token,
}

/// What [`NatsArgs`] amount to, checked: the servers, how to authenticate, whether TLS is
/// required, and the reply-subject prefix.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsPlan {
    pub servers: Vec<async_nats::ServerAddr>,
    pub auth: NatsAuth,
    pub require_tls: bool,
    pub inbox_prefix: String,
}

/// The servers without the credentials their URLs may hold.
impl fmt::Debug for NatsPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("{}://{}:{}", s.scheme(), s.host(), s.port()))
            .collect();
        f.debug_struct("NatsPlan")
            .field("servers", &servers)
            .field("auth", &self.auth)
            .field("require_tls", &self.require_tls)
            .field("inbox_prefix", &self.inbox_prefix)
            .finish()
    }
}

impl NatsArgs {
    /// The given URL, nothing else set.
    pub fn new(url: &str) -> NatsArgs {
        NatsArgs {
            nats_url: url.to_owned(),
            nats_creds: None,
            nats_nkey: None,
            nats_user: None,
            nats_password: None,
            nats_token: None,
            nats_ca: None,
            nats_cert: None,
            nats_key: None,
            nats_inbox_prefix: None,
        }
    }

    /// The URL(s) as they can be shown: scheme, host and port, without any credentials.
    pub fn display_url(&self) -> String {
        self.nats_url
            .split(',')
            .map(|url| match url.trim().parse::<async_nats::ServerAddr>() {
                Ok(addr) => format!("{}://{}:{}", addr.scheme(), addr.host(), addr.port()),
                Err(_) => crate::redact_passwords(url.trim()),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Checks the options for `service` (the connection's name, and its default reply-subject
    /// prefix `_INBOX_{service}`): the URLs parse, at most one way to authenticate is given and
    /// it is complete, a client certificate has its key. `Err` is one line naming the options
    /// at fault, never their secret values.
    pub fn plan(&self, service: &str) -> Result<NatsPlan, String> {
        let given = |s: &Option<String>| s.as_deref().filter(|v| !v.is_empty()).is_some();
        let secret =
            |s: &Option<SecretString>| s.as_ref().is_some_and(|v| !v.expose_secret().is_empty());
        let path = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());

        let mut servers = Vec::new();
        let mut url_credentials = false;
        for url in self.nats_url.split(',').map(str::trim) {
            if url.is_empty() {
                return Err("NATS_URL is empty (or has an empty entry between commas)".into());
            }
            let addr: async_nats::ServerAddr = url.parse().map_err(|e| {
                format!(
                    "NATS_URL '{}' is not a NATS server URL: {e}",
                    crate::redact_passwords(url)
                )
            })?;
            url_credentials |= addr.username().is_some_and(|u| !u.is_empty());
            servers.push(addr);
        }

        let user = given(&self.nats_user);
        let password = secret(&self.nats_password);
        if user && !password {
            return Err("NATS_USER is set without NATS_PASSWORD".into());
        }
        if password && !user {
            return Err("NATS_PASSWORD is set without NATS_USER".into());
        }
        let mut ways: Vec<(&str, NatsAuth)> = Vec::new();
        if let Some(creds) = path(&self.nats_creds) {
            ways.push(("NATS_CREDS", NatsAuth::Creds(creds)));
        }
        if let Some(nkey) = path(&self.nats_nkey) {
            ways.push(("NATS_NKEY", NatsAuth::Nkey(nkey)));
        }
        if user {
            let name = self.nats_user.clone().unwrap_or_default();
            ways.push(("NATS_USER/NATS_PASSWORD", NatsAuth::UserPassword(name)));
        }
        if secret(&self.nats_token) {
            ways.push(("NATS_TOKEN", NatsAuth::Token));
        }
        if url_credentials {
            ways.push(("the credentials in NATS_URL", NatsAuth::InUrl));
        }
        let auth = match ways.len() {
            0 => NatsAuth::None,
            1 => ways.pop().expect("one").1,
            n => {
                let names: Vec<&str> = ways.iter().map(|(name, _)| *name).collect();
                let listed = format!("{} and {}", names[..n - 1].join(", "), names[n - 1]);
                let verb = if n == 2 { "both" } else { "all" };
                return Err(format!(
                    "{listed} are {verb} set: authenticate to NATS one way only"
                ));
            }
        };

        let (ca, cert, key) = (
            path(&self.nats_ca),
            path(&self.nats_cert),
            path(&self.nats_key),
        );
        match (&cert, &key) {
            (Some(_), None) => {
                return Err("NATS_CERT is set without NATS_KEY (its private key)".into());
            }
            (None, Some(_)) => {
                return Err("NATS_KEY is set without NATS_CERT (the client certificate)".into());
            }
            _ => {}
        }
        let require_tls =
            ca.is_some() || cert.is_some() || servers.iter().any(|s| s.tls_required());

        let inbox_prefix = match self.nats_inbox_prefix.as_deref().filter(|p| !p.is_empty()) {
            Some(prefix) => {
                check_inbox_prefix(prefix)?;
                prefix.to_owned()
            }
            None => format!("_INBOX_{service}"),
        };
        Ok(NatsPlan {
            servers,
            auth,
            require_tls,
            inbox_prefix,
        })
    }

    /// The connect options of `service` ([`NatsArgs::plan`]), with its name, credentials (read
    /// from their files now, so a missing or unreadable file is named at once), TLS and reply
    /// prefix. Add the service's own settings (timeouts, retries) and connect to
    /// [`NatsPlan::servers`], or use [`NatsArgs::connect_with`].
    pub async fn connect_options(
        &self,
        service: &str,
    ) -> anyhow::Result<(async_nats::ConnectOptions, NatsPlan)> {
        let plan = self.plan(service).map_err(anyhow::Error::msg)?;
        let who = service.to_owned();
        let mut options = async_nats::ConnectOptions::new()
            .name(service)
            .custom_inbox_prefix(&plan.inbox_prefix)
            // What the server says goes to the log: a refused login or a permission
            // violation (a subject this user may not use) is otherwise silent.
            .event_callback(move |event| {
                let who = who.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!(service = %who, "NATS connected")
                        }
                        event => tracing::warn!(service = %who, "NATS {event}"),
                    }
                }
            });
        options = match &plan.auth {
            NatsAuth::None | NatsAuth::InUrl => options,
            NatsAuth::Creds(path) => {
                readable("NATS_CREDS", path)?;
                options
                    .credentials_file(path)
                    .await
                    .map_err(|e| anyhow::anyhow!("NATS_CREDS: {}: {e}", path.display()))?
            }
            NatsAuth::Nkey(path) => options.nkey(read_nkey_seed(path)?),
            NatsAuth::UserPassword(user) => {
                let password = self
                    .nats_password
                    .as_ref()
                    .map(|p| p.expose_secret().to_owned())
                    .unwrap_or_default();
                options.user_and_password(user.clone(), password)
            }
            NatsAuth::Token => options.token(
                self.nats_token
                    .as_ref()
                    .map(|t| t.expose_secret().to_owned())
                    .unwrap_or_default(),
            ),
        };
        if let Some(ca) = self.nats_ca.as_ref().filter(|p| !p.as_os_str().is_empty()) {
            readable("NATS_CA", ca)?;
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (
            self.nats_cert
                .as_ref()
                .filter(|p| !p.as_os_str().is_empty()),
            self.nats_key.as_ref().filter(|p| !p.as_os_str().is_empty()),
        ) {
            readable("NATS_CERT", cert)?;
            readable("NATS_KEY", key)?;
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if plan.require_tls {
            options = options.require_tls(true);
        }
        Ok((options, plan))
    }

    /// Connects as `service` with [`NatsArgs::connect_options`], changed by `adjust` (timeouts,
    /// `retry_on_initial_connect`…). The error names the servers without credentials.
    pub async fn connect_with(
        &self,
        service: &str,
        adjust: impl FnOnce(async_nats::ConnectOptions) -> async_nats::ConnectOptions,
    ) -> anyhow::Result<async_nats::Client> {
        let (options, plan) = self.connect_options(service).await?;
        adjust(options)
            .connect(plan.servers)
            .await
            .with_context(|| format!("connecting to NATS at {}", self.display_url()))
    }

    /// [`NatsArgs::connect_with`] with the options as they are.
    pub async fn connect(&self, service: &str) -> anyhow::Result<async_nats::Client> {
        self.connect_with(service, |options| options).await
    }
}

/// A reply-subject prefix is subject tokens without wildcards or spaces.
fn check_inbox_prefix(prefix: &str) -> Result<(), String> {
    let bad_token = prefix.split('.').any(|token| {
        token.is_empty()
            || token
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
    });
    if bad_token {
        return Err(format!(
            "NATS_INBOX_PREFIX '{prefix}' is not a subject prefix (tokens separated by dots, without spaces, '*' or '>')"
        ));
    }
    Ok(())
}

/// `path` can be opened for reading; else an error naming `option` and the path.
fn readable(option: &str, path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| anyhow::anyhow!("{option}: cannot read {}: {e}", path.display()))
}

/// The nkey seed in the file (its first line starting with `S`), checked.
fn read_nkey_seed(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("NATS_NKEY: cannot read {}: {e}", path.display()))?;
    let seed = text
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with('S'))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "NATS_NKEY: {} holds no nkey seed (a line starting with SU)",
                path.display()
            )
        })?;
    nkeys::KeyPair::from_seed(seed)
        .map_err(|_| anyhow::anyhow!("NATS_NKEY: {} holds no valid nkey seed", path.display()))?;
    Ok(seed.to_owned())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        metrics: MetricsArgs,
        #[command(flatten)]
        shutdown: ShutdownArgs,
        #[command(flatten)]
        nats: NatsArgs,
    }

    fn nats(args: &[&str]) -> NatsArgs {
        let mut argv = vec!["x"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().nats
    }

    fn plan_err(args: &[&str]) -> String {
        nats(args).plan("svc").unwrap_err()
    }

    /// A file in the temporary directory holding `text`, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(text: &str) -> TempFile {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("sb-nats-args-{}-{n}", std::process::id()));
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }

        fn arg(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn nats_defaults_no_credentials_and_a_reply_prefix_of_the_service() {
        let plan = nats(&[]).plan("ingress").unwrap();
        assert_eq!(plan.auth, NatsAuth::None);
        assert!(!plan.require_tls);
        assert_eq!(plan.inbox_prefix, "_INBOX_ingress");
        assert_eq!(plan.servers.len(), 1);
        assert_eq!(nats(&[]).display_url(), "nats://127.0.0.1:4222");
        let plan = nats(&["--nats-inbox-prefix", "_INBOX.team-a"])
            .plan("ingress")
            .unwrap();
        assert_eq!(plan.inbox_prefix, "_INBOX.team-a");
        for bad in ["_INBOX.>", "a..b", "a b", "x.*", "trailing."] {
            let err = plan_err(&["--nats-inbox-prefix", bad]);
            assert!(err.starts_with("NATS_INBOX_PREFIX '"), "{bad}: {err}");
        }
    }

    #[test]
    fn nats_each_way_to_authenticate() {
        let plan = nats(&["--nats-user", "ingress", "--nats-password", "pw"])
            .plan("ingress")
            .unwrap();
        assert_eq!(plan.auth, NatsAuth::UserPassword("ingress".into()));
        assert_eq!(
            nats(&["--nats-token", "t"]).plan("x").unwrap().auth,
            NatsAuth::Token
        );
        assert_eq!(
            nats(&["--nats-creds", "/x/user.creds"])
                .plan("x")
                .unwrap()
                .auth,
            NatsAuth::Creds("/x/user.creds".into())
        );
        assert_eq!(
            nats(&["--nats-nkey", "/x/user.nk"]).plan("x").unwrap().auth,
            NatsAuth::Nkey("/x/user.nk".into())
        );
        assert_eq!(
            nats(&["--nats-url", "nats://u:p@h:4222"])
                .plan("x")
                .unwrap()
                .auth,
            NatsAuth::InUrl
        );
        assert_eq!(
            nats(&["--nats-url", "nats://tok3n@h:4222"])
                .plan("x")
                .unwrap()
                .auth,
            NatsAuth::InUrl
        );
        // Empty values (an unset variable passed through by compose) count as not given.
        let plan = nats(&["--nats-user", "", "--nats-password", "", "--nats-token", ""])
            .plan("x")
            .unwrap();
        assert_eq!(plan.auth, NatsAuth::None);
    }

    #[test]
    fn nats_conflicting_or_incomplete_options_are_named_in_one_line() {
        assert_eq!(
            plan_err(&[
                "--nats-creds",
                "/x/a.creds",
                "--nats-user",
                "u",
                "--nats-password",
                "secret-pw"
            ]),
            "NATS_CREDS and NATS_USER/NATS_PASSWORD are both set: authenticate to NATS one way only"
        );
        assert_eq!(
            plan_err(&["--nats-nkey", "/x/a.nk", "--nats-token", "secret-tok"]),
            "NATS_NKEY and NATS_TOKEN are both set: authenticate to NATS one way only"
        );
        assert_eq!(
            plan_err(&[
                "--nats-url",
                "nats://u:secret-url@h",
                "--nats-creds",
                "/x/a.creds",
                "--nats-token",
                "secret-tok"
            ]),
            "NATS_CREDS, NATS_TOKEN and the credentials in NATS_URL are all set: authenticate to NATS one way only"
        );
        assert_eq!(
            plan_err(&["--nats-user", "u"]),
            "NATS_USER is set without NATS_PASSWORD"
        );
        assert_eq!(
            plan_err(&["--nats-password", "secret-pw"]),
            "NATS_PASSWORD is set without NATS_USER"
        );
        assert_eq!(
            plan_err(&["--nats-cert", "/x/c.pem"]),
            "NATS_CERT is set without NATS_KEY (its private key)"
        );
        assert_eq!(
            plan_err(&["--nats-key", "/x/k.pem"]),
            "NATS_KEY is set without NATS_CERT (the client certificate)"
        );
        let err = plan_err(&["--nats-url", "http://u:secret-url@h"]);
        assert!(
            err.starts_with("NATS_URL 'http://u:***@h' is not a NATS server URL"),
            "{err}"
        );
        assert_eq!(
            plan_err(&["--nats-url", "nats://a:4222,,nats://b:4222"]),
            "NATS_URL is empty (or has an empty entry between commas)"
        );
    }

    #[test]
    fn nats_tls_is_required_with_a_ca_a_client_certificate_or_tls_urls() {
        assert!(
            !nats(&["--nats-url", "nats://h:4222"])
                .plan("x")
                .unwrap()
                .require_tls
        );
        assert!(
            nats(&["--nats-url", "tls://h:4222"])
                .plan("x")
                .unwrap()
                .require_tls
        );
        assert!(
            nats(&["--nats-ca", "/x/ca.pem"])
                .plan("x")
                .unwrap()
                .require_tls
        );
        let mtls = nats(&["--nats-cert", "/x/c.pem", "--nats-key", "/x/k.pem"]);
        assert!(mtls.plan("x").unwrap().require_tls);
        let several = nats(&["--nats-url", "nats://a:4222, nats://b:4223"]);
        assert_eq!(several.plan("x").unwrap().servers.len(), 2);
        assert_eq!(several.display_url(), "nats://a:4222,nats://b:4223");
    }

    #[tokio::test]
    async fn nats_files_are_read_and_checked_when_connecting() {
        // A missing file is named with its option before any connection is tried.
        for (flag, option) in [
            ("--nats-creds", "NATS_CREDS"),
            ("--nats-nkey", "NATS_NKEY"),
            ("--nats-ca", "NATS_CA"),
        ] {
            let err = nats(&[flag, "/nonexistent/file.pem"])
                .connect_options("x")
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("{option}: cannot read /nonexistent/file.pem")),
                "{err}"
            );
        }
        let seed = nkeys::KeyPair::new_user().seed().unwrap();
        let good = TempFile::new(&format!("# the worker's key\n{seed}\n"));
        let (_, plan) = nats(&["--nats-nkey", good.arg()])
            .connect_options("x")
            .await
            .unwrap();
        assert_eq!(plan.auth, NatsAuth::Nkey(good.0.clone()));
        let bad = TempFile::new("SUNOTAVALIDSEEDATALL-secret\n");
        let err = nats(&["--nats-nkey", bad.arg()])
            .connect_options("x")
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!("NATS_NKEY: {} holds no valid nkey seed", bad.arg())
        );
        let empty = TempFile::new("\n");
        let err = nats(&["--nats-nkey", empty.arg()])
            .connect_options("x")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no nkey seed"), "{err}");
        let creds = TempFile::new("not a credentials file");
        let err = nats(&["--nats-creds", creds.arg()])
            .connect_options("x")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("NATS_CREDS: {}: ", creds.arg())),
            "{err}"
        );
    }

    #[test]
    fn nats_secrets_are_hidden_in_help_and_debug() {
        use clap::CommandFactory as _;
        let command = Cli::command();
        for id in ["nats_url", "nats_password", "nats_token"] {
            let arg = command
                .get_arguments()
                .find(|a| a.get_id() == id)
                .unwrap_or_else(|| panic!("{id}"));
            assert!(
                arg.is_hide_env_values_set(),
                "{id} shows its value in --help"
            );
        }
        let names: Vec<String> = command
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .filter(|e| e.starts_with("NATS_"))
            .collect();
        assert_eq!(
            names,
            [
                "NATS_URL",
                "NATS_CREDS",
                "NATS_NKEY",
                "NATS_USER",
                "NATS_PASSWORD",
                "NATS_TOKEN",
                "NATS_CA",
                "NATS_CERT",
                "NATS_KEY",
                "NATS_INBOX_PREFIX"
            ]
        );
        let args = nats(&[
            "--nats-url",
            "nats://u:secret-url@h:4222",
            "--nats-user",
            "u",
            "--nats-password",
            "secret-pw",
            "--nats-token",
            "secret-tok",
        ]);
        let debug = format!("{args:?}");
        let plan = format!(
            "{:?}",
            nats(&["--nats-url", "nats://u:secret-url@h:4222"])
                .plan("x")
                .unwrap()
        );
        for text in [&debug, &plan, &args.display_url()] {
            for secret in ["secret-url", "secret-pw", "secret-tok"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
        assert!(debug.contains("nats://h:4222"), "{debug}");
        assert_eq!(
            nats(&["--nats-url", "nats://tok3n-secret@h"]).display_url(),
            "nats://h:4222"
        );
    }

    #[test]
    fn defaults_and_values() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.metrics.metrics_addr, None);
        assert_eq!(cli.shutdown.timeout(), Duration::from_secs(10));
        assert_eq!(cli.shutdown.drain_budget(), Duration::from_secs(8));
        let cli = Cli::try_parse_from([
            "x",
            "--metrics-addr",
            "0.0.0.0:9090",
            "--shutdown-timeout-secs",
            "30",
        ])
        .unwrap();
        assert_eq!(
            cli.metrics.metrics_addr,
            Some("0.0.0.0:9090".parse().unwrap())
        );
        assert_eq!(cli.shutdown.timeout(), Duration::from_secs(30));
        assert!(Cli::try_parse_from(["x", "--shutdown-timeout-secs", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--metrics-addr", "9090"]).is_err());
    }
}
