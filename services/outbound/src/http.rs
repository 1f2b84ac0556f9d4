//! Behaviors' HTTP requests (`core.va.action.http_request`, docs/semantics.md §4.2): a NATS
//! request/reply endpoint on `{prefix}.outbound.http` in the queue group `outbound-http`
//! (replicas share the load), answering each [`HttpJob`] with an [`HttpJobResult`].
//!
//! Why here: Decision 11 of docs/semantics.md says HTTP requests leave only through the outbound
//! service, so the credentials and the network policy live in one place.
//!
//! - Cerb's client semantics: method, headers and body as given, redirects followed (at most 5),
//!   4xx/5xx are responses, connect timeout 10 s, total 30 s.
//! - Credentials: the connected account's secret goes only when the request's host equals
//!   (case-insensitively) one of the account's allowed hosts; otherwise the answer is
//!   `credentials_refused` (naming the account's kind and hosts) and the behavior's placeholder
//!   is `false`. How it goes depends on the account's kind (issue 12): a Twilio account as HTTP
//!   Basic auth `AccountSid:token`; `bearer` as `Authorization: Bearer <token>`; `basic` as
//!   HTTP Basic auth `username:password`; `api-key` in the named header, or the named query
//!   parameter. A request carrying credentials follows redirects only on its own host and
//!   scheme (a 3xx elsewhere is answered as it is), so an API key never goes to another host;
//!   a query-parameter key is taken out of the URL the answer reports.
//!   They go only over https with TLS verification on (not with `ignore_ssl_validation`): a
//!   request with an account that is http, or https unverified, is not sent and answers an
//!   error saying why. The operator's sandbox bases (below) are exempt.
//! - SSRF guard: loopback, private, link-local (cloud metadata), unspecified, CGNAT, multicast
//!   and reserved addresses, and IPv4 embedded in IPv6 forms of them, are refused, unless the
//!   operator's allow-list (`OUTBOUND_HTTP_ALLOW`) names the host or a network holding the
//!   address. Names are checked where they are resolved (a resolver that drops refused
//!   addresses, so DNS rebinding between a check and the connect cannot bypass it), literal
//!   addresses on the URL and on every redirect hop.
//! - Twilio sandbox routing: with `TWILIO_API_BASE`/`TWILIO_LOOKUPS_BASE` set to something
//!   other than Twilio, requests for `api.twilio.com`/`lookups.twilio.com` go to that base
//!   (same path and query). The allowed-host check uses the original host; the operator's base
//!   is trusted by the guard.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use secrecy::ExposeSecret as _;
use switchboard_store::{AccountCredentials, HttpAuth, Store};
use switchboard_telemetry::lifecycle;
use switchboard_wire::{self as wire, HTTP_JOB_VERSION, HttpJob, HttpJobResult, Subjects};
use tokio::sync::Semaphore;
use tracing::Instrument as _;

/// Queue group of the HTTP endpoint: each request goes to one outbound replica.
pub const HTTP_QUEUE_GROUP: &str = "outbound-http";
/// Redirects followed per request (Cerb's HTTP library default).
pub const MAX_REDIRECTS: usize = 5;
/// Longest URL accepted.
pub const MAX_URL_BYTES: usize = 8 * 1024;
/// Most request headers accepted.
pub const MAX_HEADERS: usize = 100;
/// Largest request body accepted.
pub const MAX_REQUEST_BODY_BYTES: usize = 512 * 1024;
/// Room kept in an answer for everything but the response body (status, URL, headers, JSON),
/// when the body's bound is fitted to the NATS server's `max_payload` ([`body_limit_for`]).
pub const ANSWER_OVERHEAD_BYTES: usize = 16 * 1024;

/// The largest response body whose answer fits in a NATS message of `max_payload` bytes: the
/// body travels in base64 (4 bytes for every 3), and [`ANSWER_OVERHEAD_BYTES`] are kept for the
/// rest of the answer. An answer that still does not fit (very large headers) is replaced by an
/// error that does ([`fit_answer`]).
pub fn body_limit_for(max_payload: usize) -> usize {
    max_payload.saturating_sub(ANSWER_OVERHEAD_BYTES) / 4 * 3
}

/// The answer to publish: `result` encoded, or, when that is larger than the NATS server's
/// `max_payload` (it could not be published, and the behavior would wait out its timeout), an
/// error saying so, which fits.
pub fn fit_answer(result: HttpJobResult, max_payload: usize) -> (HttpJobResult, Vec<u8>) {
    let encoded = wire::encode(&result);
    if max_payload == 0 || encoded.len() <= max_payload {
        return (result, encoded);
    }
    let body = match &result {
        HttpJobResult::Response { body, .. } => format!(" (its body {} bytes)", body.len()),
        _ => String::new(),
    };
    let error = HttpJobResult::Error {
        message: format!(
            "the response is too large to pass back: its answer is {} bytes{body}, and the NATS server takes at most {max_payload} bytes per message (max_payload)",
            encoded.len()
        ),
    };
    let encoded = wire::encode(&error);
    (error, encoded)
}

/// How the HTTP endpoint behaves; [`HttpConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `{prefix}.outbound.http`.
    pub subject: String,
    /// Requests performed at once by this replica; more wait in NATS.
    pub max_in_flight: usize,
    /// Targets the SSRF guard lets through.
    pub allow: AllowList,
    /// Hosts whose requests go to an operator-configured base instead (the Twilio sandbox).
    pub routes: Vec<SandboxRoute>,
    pub connect_timeout: Duration,
    /// Connect to last byte of the response body.
    pub total_timeout: Duration,
    /// Largest response body passed back (the reply must fit in a NATS message: base64 in JSON
    /// grows it by a third, and NATS' default limit is 1 MiB). [`start`] lowers it to what the
    /// connected server's `max_payload` allows ([`body_limit_for`]), with a warning.
    pub max_response_bytes: usize,
    /// At shutdown, how long requests in flight may take to finish (`main` gives it the drain
    /// budget of `SHUTDOWN_TIMEOUT_SECS`).
    pub drain_timeout: Duration,
    /// Readiness of the subscription: set once subscribed, cleared when shutdown begins
    /// (`/readyz`; detached by default).
    pub ready: switchboard_telemetry::health::ReadyFlag,
    /// Where HTTP jobs are counted (`/metrics`; detached by default).
    pub metrics: crate::OutboundMetrics,
}

impl HttpConfig {
    /// Defaults for a subject prefix: Cerb's timeouts, no allow-list, no sandbox routes.
    pub fn new(prefix: &str) -> HttpConfig {
        HttpConfig {
            subject: Subjects::new(prefix).outbound_http(),
            max_in_flight: 64,
            allow: AllowList::default(),
            routes: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(30),
            max_response_bytes: 512 * 1024,
            drain_timeout: Duration::from_secs(35),
            ready: Default::default(),
            metrics: Default::default(),
        }
    }

    /// Routes `api.twilio.com` and `lookups.twilio.com` to the configured bases when they are
    /// not Twilio's own (the sandbox in development and tests).
    pub fn with_twilio_bases(
        mut self,
        api_base: &str,
        lookups_base: &str,
    ) -> anyhow::Result<HttpConfig> {
        for (host, base, default, name) in [
            (
                "api.twilio.com",
                api_base,
                switchboard_twilio::client::DEFAULT_API_BASE,
                "TWILIO_API_BASE",
            ),
            (
                "lookups.twilio.com",
                lookups_base,
                switchboard_twilio::client::DEFAULT_LOOKUPS_BASE,
                "TWILIO_LOOKUPS_BASE",
            ),
        ] {
            if base.trim_end_matches('/') == default.trim_end_matches('/') {
                continue;
            }
            let url = Url::parse(base).with_context(|| format!("{name} '{base}' is not a URL"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                anyhow::bail!("{name} '{base}' must be an http(s) URL with a host");
            }
            self.routes.push(SandboxRoute {
                host: host.to_owned(),
                base: url,
            });
        }
        Ok(self)
    }
}

/// Requests for `host` go to `base` (same path and query).
#[derive(Debug, Clone)]
pub struct SandboxRoute {
    pub host: String,
    pub base: Url,
}

impl SandboxRoute {
    fn target(&self, original: &Url) -> Url {
        let mut url = self.base.clone();
        let prefix = self.base.path().trim_end_matches('/');
        url.set_path(&format!("{prefix}{}", original.path()));
        url.set_query(original.query());
        url
    }
}

// ---- the SSRF guard --------------------------------------------------------------------------

/// The operator's allow-list: host names (exact, case-insensitive) and networks (CIDR, or a
/// single address). Written comma- or space-separated: `localhost,10.1.2.0/24,fd00::1`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    hosts: Vec<String>,
    nets: Vec<(IpAddr, u8)>,
}

impl FromStr for AllowList {
    type Err = String;

    fn from_str(s: &str) -> Result<AllowList, String> {
        let mut list = AllowList::default();
        for entry in s.split([',', ' ', '\n', '\t']).filter(|e| !e.is_empty()) {
            if let Some((addr, bits)) = entry.split_once('/') {
                let ip: IpAddr = addr
                    .parse()
                    .map_err(|_| format!("'{entry}': '{addr}' is not an IP address"))?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let bits: u8 =
                    bits.parse().ok().filter(|b| *b <= max).ok_or_else(|| {
                        format!("'{entry}': the prefix length must be 0 to {max}")
                    })?;
                list.nets.push((ip, bits));
            } else if let Ok(ip) = entry.trim_matches(['[', ']']).parse::<IpAddr>() {
                list.nets.push((ip, if ip.is_ipv4() { 32 } else { 128 }));
            } else if entry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                list.hosts.push(entry.to_ascii_lowercase());
            } else {
                return Err(format!(
                    "'{entry}' is neither a host name, an IP address nor a CIDR network"
                ));
            }
        }
        Ok(list)
    }
}

impl AllowList {
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.nets.is_empty()
    }

    /// Whether the host name is allowed (its addresses are then not checked).
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Whether an address lies in an allowed network.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets
            .iter()
            .any(|&(net, bits)| in_network(ip, canonical(net), bits))
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// Why the guard refuses an address, or `None` for an ordinary public address.
pub fn refused_because(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match (a, b) {
        (0, _) => "an unspecified address",
        (127, _) => "a loopback address",
        (10, _) | (192, 168) => "a private address",
        (172, b) if (16..32).contains(&b) => "a private address",
        (169, 254) => "a link-local address (where cloud metadata services live)",
        (100, b) if (64..128).contains(&b) => "a shared (CGNAT) address",
        (224..=239, _) => "a multicast address",
        (240..=255, _) => "a reserved address",
        _ => return None,
    })
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    let segments = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // IPv4 embedded in IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d), NAT64
    // (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::) reach the IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return refused_v4(v4);
    }
    if segments[..6] == [0; 6] {
        return refused_v4(embedded_v4(segments[6], segments[7]));
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return refused_v4(embedded_v4(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        return refused_v4(embedded_v4(segments[1], segments[2]));
    }
    Some(match segments[0] {
        s if s & 0xfe00 == 0xfc00 => "a private (unique local) address",
        s if s & 0xffc0 == 0xfe80 => "a link-local address",
        s if s & 0xffc0 == 0xfec0 => "a private (site-local) address",
        s if s & 0xff00 == 0xff00 => "a multicast address",
        _ => return None,
    })
}

/// A request the guard refused; the message says why (addresses and host names only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The guard's decision for one address of `host` (`None`: the address was given literally).
fn check_ip(allow: &AllowList, host: Option<&str>, ip: IpAddr) -> Result<(), Refused> {
    if allow.allows_ip(ip) {
        return Ok(());
    }
    match refused_because(ip) {
        None => Ok(()),
        Some(reason) => Err(Refused(match host {
            None => format!("{ip} is {reason}; an operator can allow it with OUTBOUND_HTTP_ALLOW"),
            Some(host) => format!(
                "{host} resolves to {ip}, {reason}; an operator can allow it with OUTBOUND_HTTP_ALLOW"
            ),
        })),
    }
}

/// Checks a URL before it is requested (the first request and every redirect hop): the scheme,
/// and a literal address (reqwest does not resolve those, so the resolver never sees them).
pub fn check_url(allow: &AllowList, url: &Url) -> Result<(), Refused> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refused(format!(
            "the scheme '{}' is not allowed (http and https only)",
            url.scheme()
        )));
    }
    let Some(host) = url.host_str() else {
        return Err(Refused("the URL has no host".into()));
    };
    // The URL parser normalises literal addresses (`0x7f.1` is `127.0.0.1`, IPv6 in brackets).
    let literal = host.trim_matches(['[', ']']);
    match literal.parse::<IpAddr>() {
        Ok(ip) => check_ip(allow, None, ip),
        Err(_) => Ok(()),
    }
}

/// A resolver that drops the addresses the guard refuses, so a connection only ever goes to an
/// address that was checked (no window for DNS rebinding).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    allow: Arc<AllowList>,
}

impl GuardedResolver {
    pub fn new(allow: Arc<AllowList>) -> GuardedResolver {
        GuardedResolver { allow }
    }

    /// The checked addresses of `host` (port 0), or why there are none.
    pub async fn lookup(
        &self,
        host: &str,
    ) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
        if self.allow.allows_host(host) {
            return Ok(found);
        }
        let mut refused = None;
        let kept: Vec<SocketAddr> = found
            .iter()
            .copied()
            .filter(|a| match check_ip(&self.allow, Some(host), a.ip()) {
                Ok(()) => true,
                Err(e) => {
                    refused.get_or_insert(e);
                    false
                }
            })
            .collect();
        match (kept.is_empty(), refused) {
            (true, Some(refused)) => Err(Box::new(refused)),
            (true, None) => Err(format!("{host} has no addresses").into()),
            (false, _) => Ok(kept),
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = this.lookup(&host).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

// ---- performing jobs -------------------------------------------------------------------------

/// The HTTP clients: guarded (verifying certificates or not, per job) and, for the operator's
/// sandbox, trusted.
struct Clients {
    guarded: reqwest::Client,
    guarded_insecure: reqwest::Client,
    /// For requests carrying an account's credentials (verified TLS only): redirects are
    /// followed only on the same host and scheme.
    guarded_credentialed: reqwest::Client,
    trusted: reqwest::Client,
}

impl Clients {
    fn new(config: &HttpConfig) -> anyhow::Result<Clients> {
        let allow = Arc::new(config.allow.clone());
        let base = || {
            reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(config.connect_timeout)
                .timeout(config.total_timeout)
        };
        let guarded = |insecure: bool, same_origin: bool| {
            let allow = allow.clone();
            base()
                .dns_resolver(GuardedResolver::new(allow.clone()))
                .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                    if attempt.previous().len() > MAX_REDIRECTS {
                        return attempt
                            .error(Refused(format!("more than {MAX_REDIRECTS} redirects")));
                    }
                    // Credentials stay on the host (and scheme) they were sent to.
                    if same_origin
                        && attempt.previous().first().is_some_and(|first| {
                            first.host_str() != attempt.url().host_str()
                                || first.scheme() != attempt.url().scheme()
                        })
                    {
                        return attempt.stop();
                    }
                    match check_url(&allow, attempt.url()) {
                        Ok(()) => attempt.follow(),
                        Err(e) => attempt.error(Refused(format!("redirect refused: {e}"))),
                    }
                }))
                .danger_accept_invalid_certs(insecure)
                .build()
        };
        Ok(Clients {
            guarded: guarded(false, false).context("building the HTTP client")?,
            guarded_insecure: guarded(true, false).context("building the HTTP client")?,
            guarded_credentialed: guarded(false, true).context("building the HTTP client")?,
            trusted: base()
                .redirect(sandbox_redirects(&config.routes))
                .build()
                .context("building the HTTP client")?,
        })
    }
}

/// The sandbox is trusted only as itself: its redirects are followed within the configured
/// bases' origins, never elsewhere (the trusted client does not run the guard).
fn sandbox_redirects(routes: &[SandboxRoute]) -> reqwest::redirect::Policy {
    let origins: Vec<_> = routes.iter().map(|r| r.base.origin()).collect();
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(Refused(format!("more than {MAX_REDIRECTS} redirects")))
        } else if origins.contains(&attempt.url().origin()) {
            attempt.follow()
        } else {
            attempt.error(Refused(
                "redirect refused: the Twilio sandbox redirected outside its configured base"
                    .into(),
            ))
        }
    })
}

/// A job that passed validation.
#[derive(Debug)]
struct Valid {
    method: reqwest::Method,
    url: Url,
    host: String,
    headers: reqwest::header::HeaderMap,
}

/// Checks a job; the error names everything that is wrong, joined by `; `.
fn validate(job: &HttpJob) -> Result<Valid, String> {
    let mut problems = Vec::new();
    if job.version != HTTP_JOB_VERSION {
        problems.push(format!(
            "version {} is not supported (this service speaks version {HTTP_JOB_VERSION})",
            job.version
        ));
    }
    let method = job.method.trim().to_ascii_uppercase();
    let method = if method.is_empty() || method.len() > 32 {
        problems.push(format!("method '{}' is empty or too long", job.method));
        None
    } else {
        match reqwest::Method::from_bytes(method.as_bytes()) {
            Ok(m) => Some(m),
            Err(_) => {
                problems.push(format!(
                    "method '{}' is not an HTTP method token",
                    job.method
                ));
                None
            }
        }
    };
    let url = if job.url.len() > MAX_URL_BYTES {
        problems.push(format!("url is longer than {MAX_URL_BYTES} bytes"));
        None
    } else {
        match Url::parse(job.url.trim()) {
            Err(e) => {
                problems.push(format!("url '{}': {e}", job.url));
                None
            }
            Ok(url) if !matches!(url.scheme(), "http" | "https") => {
                problems.push(format!(
                    "url '{}': the scheme must be http or https",
                    job.url
                ));
                None
            }
            Ok(url) if url.host_str().is_none() => {
                problems.push(format!("url '{}' has no host", job.url));
                None
            }
            Ok(url) if !url.username().is_empty() || url.password().is_some() => {
                problems.push("url must not carry credentials (user:password@)".into());
                None
            }
            Ok(url) => {
                let host = url
                    .host_str()
                    .unwrap_or_default()
                    .trim_matches(['[', ']'])
                    .to_ascii_lowercase();
                Some((url, host))
            }
        }
    };
    if job.headers.len() > MAX_HEADERS {
        problems.push(format!("more than {MAX_HEADERS} headers"));
    }
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in job.headers.iter().take(MAX_HEADERS) {
        let n = reqwest::header::HeaderName::from_bytes(name.as_bytes());
        let v = reqwest::header::HeaderValue::from_str(value);
        match (n, v) {
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            (Err(_), _) => problems.push(format!("header name '{name}' is not valid")),
            (_, Err(_)) => problems.push(format!("the value of header '{name}' is not valid")),
        }
    }
    if job.body.len() > MAX_REQUEST_BODY_BYTES {
        problems.push(format!(
            "body is larger than {MAX_REQUEST_BODY_BYTES} bytes"
        ));
    }
    match (method, url) {
        (Some(method), Some((url, host))) if problems.is_empty() => Ok(Valid {
            method,
            url,
            host,
            headers,
        }),
        _ => Err(problems.join("; ")),
    }
}

/// Whether `host` is Twilio's (`twilio.com` or a name under it): its requests carry the W3C
/// `traceparent` of their span.
fn is_twilio(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "twilio.com" || host.ends_with(".twilio.com")
}

/// The error chain of a failed request, with the guard's refusal named as such.
fn describe(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut parts = Vec::new();
    while let Some(err) = source {
        if let Some(refused) = err.downcast_ref::<Refused>() {
            return format!("refused by the outbound policy: {refused}");
        }
        let text = err.to_string();
        if !parts.iter().any(|p: &String| p.contains(&text)) {
            parts.push(text);
        }
        source = err.source();
    }
    if e.is_timeout() {
        parts.push("timed out".into());
    }
    parts.join(": ")
}

/// Why a request carrying an account's credentials may not be sent to `url` (none when it is
/// https with the certificate verified).
fn credentials_transport_refused(url: &Url, ignore_ssl_validation: bool) -> Option<&'static str> {
    if url.scheme() != "https" {
        Some("is not https")
    } else if ignore_ssl_validation {
        Some("turns TLS verification off (ignore_ssl_validation)")
    } else {
        None
    }
}

/// The account's credentials on `request`, by its kind (the query-parameter key is put in the
/// URL by the caller). Header values are marked sensitive (never printed by `Debug`).
fn attach_credentials(
    request: reqwest::RequestBuilder,
    c: &AccountCredentials,
) -> reqwest::RequestBuilder {
    let secret = c.auth_token.expose_secret();
    match &c.account.auth {
        None => request.basic_auth(
            c.account.account_sid.as_deref().unwrap_or_default(),
            Some(secret),
        ),
        Some(HttpAuth::Bearer) => request.bearer_auth(secret),
        Some(HttpAuth::Basic { username }) => request.basic_auth(username, Some(secret)),
        Some(HttpAuth::Header { header }) => {
            match (
                reqwest::header::HeaderName::from_bytes(header.as_bytes()),
                reqwest::header::HeaderValue::from_str(secret),
            ) {
                (Ok(name), Ok(mut value)) => {
                    value.set_sensitive(true);
                    request.header(name, value)
                }
                // Checked when the account was added; a row changed since fails the request
                // (reqwest reports an invalid header without its value).
                _ => request.header(header.as_str(), "\n"),
            }
        }
        Some(HttpAuth::Query { .. }) => request,
    }
}

/// `url` without the query pairs whose value is `secret` (a query-parameter key).
fn without_secret(url: &str, secret: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else {
        return url.replace(secret, "[redacted]");
    };
    if parsed.query().is_none() {
        return url.to_owned();
    }
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(_, v)| v != secret)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.len() == parsed.query_pairs().count() {
        return url.to_owned();
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    parsed.to_string()
}

struct Ctx {
    config: HttpConfig,
    store: Store,
    nats: async_nats::Client,
    clients: Clients,
    /// Accounts whose credentials the master key does not decrypt, logged once each.
    wrong_key: crate::accounts::WrongKeyAccounts,
}

impl Ctx {
    /// Performs one job.
    async fn perform(&self, job: &HttpJob) -> HttpJobResult {
        let valid = match validate(job) {
            Ok(v) => v,
            Err(message) => {
                return HttpJobResult::Error {
                    message: format!("invalid HTTP job: {message}"),
                };
            }
        };
        tracing::Span::current().record("method", valid.method.as_str());
        tracing::Span::current().record("host", valid.host.as_str());
        // docs/semantics.md, Decision 11: the credentials only for the account's allowed hosts
        // (original host).
        let credentials = match job.account_id {
            None => None,
            Some(id) => match self.store.credentials(id).await {
                Ok(Some(c))
                    if c.account
                        .allowed_hosts
                        .iter()
                        .any(|h| h.eq_ignore_ascii_case(&valid.host)) =>
                {
                    Some(c)
                }
                Ok(Some(c)) => {
                    return HttpJobResult::CredentialsRefused {
                        message: format!(
                            "connected account {id} ('{}', {}) may not be used with host {}: its allowed hosts are {}",
                            c.account.name,
                            c.account.kind.describe(),
                            valid.host,
                            c.account.allowed_hosts.join(", ")
                        ),
                    };
                }
                Ok(None) => {
                    return HttpJobResult::CredentialsRefused {
                        message: format!("connected account {id} does not exist"),
                    };
                }
                Err(e) if e.is_wrong_master_key() => {
                    let message = self.wrong_key.report(&e.into());
                    return HttpJobResult::Error { message };
                }
                Err(e) => {
                    tracing::error!(error = %e, account_id = id, "loading credentials failed");
                    return HttpJobResult::Error {
                        message: format!("could not load connected account {id}: {e}"),
                    };
                }
            },
        };
        let route = self.config.routes.iter().find(|r| r.host == valid.host);
        // The credentials travel only where nobody in between can read them: https with the
        // certificate verified. The operator's sandbox base (a route) is trusted as configured.
        if credentials.is_some()
            && route.is_none()
            && let Some(why) = credentials_transport_refused(&valid.url, job.ignore_ssl_validation)
        {
            return HttpJobResult::Error {
                message: format!(
                    "connected account {}'s credentials are sent only over https with TLS verification; this request {why}: {}",
                    job.account_id.unwrap_or_default(),
                    valid.url
                ),
            };
        }
        let (client, target) = match route {
            Some(route) => (&self.clients.trusted, route.target(&valid.url)),
            None => {
                if let Err(refused) = check_url(&self.config.allow, &valid.url) {
                    return HttpJobResult::Error {
                        message: format!("refused by the outbound policy: {refused}"),
                    };
                }
                let client = if job.ignore_ssl_validation {
                    &self.clients.guarded_insecure
                } else if credentials.is_some() {
                    &self.clients.guarded_credentialed
                } else {
                    &self.clients.guarded
                };
                (client, valid.url.clone())
            }
        };
        // The request is a client span of the job's trace. Twilio (and the operator's sandbox in
        // its place) also gets the span's W3C traceparent; other hosts get the headers the
        // behavior wrote and nothing more.
        let span = tracing::info_span!(
            "http.request",
            otel.kind = "client",
            http.request.method = %valid.method,
            server.address = %valid.host,
            http.response.status_code = tracing::field::Empty,
        );
        let mut headers = valid.headers;
        if route.is_some() || is_twilio(&valid.host) {
            switchboard_telemetry::inject_http(&span, &mut headers);
        }
        // A query-parameter key is part of the URL requested, never of the one reported.
        let mut target = target;
        let mut query_secret = None;
        if let Some(c) = &credentials
            && let Some(HttpAuth::Query { param }) = &c.account.auth
        {
            let secret = c.auth_token.expose_secret();
            target.query_pairs_mut().append_pair(param, secret);
            query_secret = Some(secret);
        }
        let mut request = client
            .request(valid.method, target.clone())
            .headers(headers)
            .body(job.body.clone());
        if let Some(c) = &credentials {
            request = attach_credentials(request, c);
        }
        let mut result = self
            .exchange(request, &valid.url, route.is_some(), &target)
            .instrument(span)
            .await;
        if let (Some(secret), HttpJobResult::Response { url, .. }) = (query_secret, &mut result) {
            *url = if url == target.as_str() {
                valid.url.to_string()
            } else {
                without_secret(url, secret)
            };
        }
        result
    }

    /// Sends a job's request and reads the answer, the body bounded; inside its client span.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        asked: &Url,
        routed: bool,
        target: &Url,
    ) -> HttpJobResult {
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return HttpJobResult::Error {
                    message: describe(&e),
                };
            }
        };
        let status = response.status().as_u16();
        tracing::Span::current().record("http.response.status_code", status);
        // The sandbox's address is an operator detail: show the URL the behavior asked for.
        let url = if routed && response.url() == target {
            asked.to_string()
        } else {
            response.url().to_string()
        };
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.config.max_response_bytes {
                        return HttpJobResult::Error {
                            message: format!(
                                "the response body is larger than {} bytes",
                                self.config.max_response_bytes
                            ),
                        };
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return HttpJobResult::Error {
                        message: format!("reading the response body: {}", describe(&e)),
                    };
                }
            }
        }
        HttpJobResult::Response {
            status,
            headers,
            body,
            url,
        }
    }

    async fn handle(&self, message: async_nats::Message) {
        let Some(reply) = message.reply.clone() else {
            tracing::warn!(
                "an HTTP job without a reply subject was dropped (it must be a request)"
            );
            return;
        };
        let span = tracing::info_span!(
            "http_job",
            method = tracing::field::Empty,
            host = tracing::field::Empty,
            status = tracing::field::Empty,
            outcome = tracing::field::Empty,
            otel.kind = "consumer",
        );
        switchboard_telemetry::set_parent_from_nats(&span, message.headers.as_ref());
        let started = std::time::Instant::now();
        let result = match wire::decode_http_job(&message.payload) {
            Ok(job) => self.perform(&job).instrument(span.clone()).await,
            Err(e) => HttpJobResult::Error {
                message: format!("malformed HTTP job: {e}"),
            },
        };
        // An answer larger than the server takes could not be published at all.
        let (result, payload) = fit_answer(result, self.nats.max_payload());
        let outcome = match &result {
            HttpJobResult::Response { .. } => "response",
            HttpJobResult::Error { message } => {
                tracing::info!(parent: &span, error = %message, "HTTP job failed");
                "error"
            }
            HttpJobResult::CredentialsRefused { message } => {
                tracing::warn!(parent: &span, reason = %message, "credentials refused");
                "credentials_refused"
            }
        };
        if let HttpJobResult::Response { status, .. } = &result {
            span.record("status", status);
        }
        span.record("outcome", outcome);
        self.config.metrics.job("http", outcome);
        self.config.metrics.job_duration("http", started.elapsed());
        if let Err(e) = self.nats.publish(reply, payload.into()).await {
            tracing::warn!(parent: &span, error = %e, "could not answer an HTTP job");
        }
    }
}

/// The HTTP endpoint, subscribed: requests published from now on reach it (or a sibling).
pub struct Started {
    ctx: Arc<Ctx>,
    subscriber: async_nats::Subscriber,
}

/// Subscribes to the HTTP subject in the queue group. The response body bound is then lowered
/// to what the connected NATS server's `max_payload` allows, with a warning.
pub async fn start(
    mut config: HttpConfig,
    store: Store,
    nats: async_nats::Client,
) -> anyhow::Result<Started> {
    let clients = Clients::new(&config)?;
    let subscriber = nats
        .queue_subscribe(config.subject.clone(), HTTP_QUEUE_GROUP.to_owned())
        .await
        .with_context(|| format!("subscribing to {}", config.subject))?;
    nats.flush().await.context("flushing NATS subscriptions")?;
    // Connected now (the flush waited for the server), so this is the server's own limit.
    let max_payload = nats.max_payload();
    let fits = body_limit_for(max_payload);
    if max_payload > 0 && config.max_response_bytes > fits {
        tracing::warn!(
            max_payload,
            configured = config.max_response_bytes,
            used = fits,
            "the NATS server's max_payload is too small for answers with response bodies of the configured size: behaviors' HTTP responses are passed back up to {fits} bytes (larger ones answer an error)"
        );
        config.max_response_bytes = fits;
    }
    tracing::info!(
        subject = %config.subject,
        queue_group = HTTP_QUEUE_GROUP,
        max_response_bytes = config.max_response_bytes,
        allow_list = !config.allow.is_empty(),
        sandbox_routes = config.routes.len(),
        "outbound HTTP jobs ready"
    );
    Ok(Started {
        ctx: Arc::new(Ctx {
            config,
            store,
            nats,
            clients,
            wrong_key: Default::default(),
        }),
        subscriber,
    })
}

impl Started {
    /// The largest response body passed back, after fitting it to the server's `max_payload`.
    pub fn max_response_bytes(&self) -> usize {
        self.ctx.config.max_response_bytes
    }

    /// Serves until `shutdown` completes; then stops taking requests, answers those already
    /// delivered and waits (at most the drain timeout) for those in flight. Every step after the
    /// shutdown is bounded, whether NATS is reachable or not; an error names what was abandoned.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Started {
            ctx,
            mut subscriber,
        } = self;
        let max = ctx.config.max_in_flight.max(1);
        let permits = Arc::new(Semaphore::new(max));
        let spawn = |message: async_nats::Message, permit: tokio::sync::OwnedSemaphorePermit| {
            let ctx = ctx.clone();
            let tracked = lifecycle::track("HTTP jobs");
            tokio::spawn(async move {
                ctx.handle(message).await;
                drop((permit, tracked));
            });
        };
        ctx.config.ready.set(true);
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                () = &mut shutdown => break,
                permit = permits.clone().acquire_owned() => permit.expect("semaphore never closed"),
            };
            let message = tokio::select! {
                () = &mut shutdown => break,
                message = subscriber.next() => message,
            };
            match message {
                Some(message) => spawn(message, permit),
                None => break,
            }
        }
        ctx.config.ready.set(false);
        tracing::info!("outbound HTTP jobs stopping: draining");
        let deadline = tokio::time::Instant::now() + ctx.config.drain_timeout;
        // Unsubscribe (new requests go to other replicas) and answer what was delivered here.
        match tokio::time::timeout_at(deadline, subscriber.drain()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "draining the HTTP subscription failed"),
            Err(_) => tracing::warn!("draining the HTTP subscription did not finish in time"),
        }
        loop {
            let look = (tokio::time::Instant::now() + Duration::from_millis(500)).min(deadline);
            let Ok(Some(message)) = tokio::time::timeout_at(look, subscriber.next()).await else {
                break;
            };
            let Ok(permit) =
                tokio::time::timeout_at(deadline, permits.clone().acquire_owned()).await
            else {
                break;
            };
            spawn(message, permit.expect("semaphore never closed"));
        }
        let mut abandoned = Vec::new();
        if tokio::time::timeout_at(deadline, permits.acquire_many(max as u32))
            .await
            .is_err()
        {
            let running = max - permits.available_permits();
            tracing::warn!(running, "drain timeout: some HTTP jobs were still running");
            abandoned.push(format!(
                "{running} HTTP jobs still running after the {} ms drain",
                ctx.config.drain_timeout.as_millis()
            ));
        }
        // The answers are buffered publishes: they reach NATS only with the flush.
        if let Err(why) = lifecycle::flush_within(&ctx.nats, lifecycle::FLUSH_BOUND).await {
            abandoned.push(format!("HTTP job answers not confirmed by NATS ({why})"));
        }
        if abandoned.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("outbound HTTP jobs abandoned {}", abandoned.join("; "))
        }
    }
}

/// Starts and serves the HTTP endpoint until `shutdown` completes.
pub async fn serve(
    config: HttpConfig,
    store: Store,
    nats: async_nats::Client,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    start(config, store, nats).await?.serve(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_twilio_hosts_get_the_trace_context() {
        for host in [
            "api.twilio.com",
            "lookups.twilio.com",
            "API.Twilio.com.",
            "twilio.com",
        ] {
            assert!(is_twilio(host), "{host}");
        }
        for host in [
            "example.com",
            "nottwilio.com",
            "twilio.com.evil.example",
            "api-twilio.com",
        ] {
            assert!(!is_twilio(host), "{host}");
        }
    }

    #[test]
    fn special_addresses_are_refused_and_public_ones_pass() {
        for (addr, why) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "CGNAT"),
            ("100.127.255.254", "CGNAT"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fc00::1", "unique local"),
            ("fd12:3456::1", "unique local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:10.0.0.1", "private"),
            ("::10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:7f00:1::", "loopback"),
        ] {
            let reason = refused_because(ip(addr)).unwrap_or_else(|| panic!("{addr} passed"));
            assert!(reason.contains(why), "{addr}: {reason}");
        }
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert_eq!(refused_because(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn the_allow_list_takes_hosts_addresses_and_networks() {
        let allow: AllowList = "Localhost, 10.1.2.0/24 fd00::/8,[::1]".parse().unwrap();
        assert!(allow.allows_host("localhost"));
        assert!(allow.allows_host("LOCALHOST."));
        assert!(!allow.allows_host("localhost.example"));
        assert!(allow.allows_ip(ip("10.1.2.200")));
        assert!(
            allow.allows_ip(ip("::ffff:10.1.2.3")),
            "mapped form of an allowed address"
        );
        assert!(!allow.allows_ip(ip("10.1.3.1")));
        assert!(allow.allows_ip(ip("fd00::5")));
        assert!(allow.allows_ip(ip("::1")));
        assert!(!allow.allows_ip(ip("127.0.0.1")));
        let everything: AllowList = "0.0.0.0/0".parse().unwrap();
        assert!(everything.allows_ip(ip("127.0.0.1")));
        for bad in ["10.0.0.0/33", "10.0.0/8", "a_b", "http://x"] {
            assert!(bad.parse::<AllowList>().is_err(), "{bad}");
        }
        assert!("".parse::<AllowList>().unwrap().is_empty());
    }

    #[test]
    fn literal_addresses_are_checked_on_the_url() {
        let none = AllowList::default();
        for url in [
            "http://127.0.0.1/",
            "http://10.0.0.1:8080/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://[::ffff:7f00:1]/",
            "http://0x7f.1/",
        ] {
            let err = check_url(&none, &Url::parse(url).unwrap()).unwrap_err();
            assert!(err.0.contains("OUTBOUND_HTTP_ALLOW"), "{url}: {err}");
        }
        assert!(check_url(&none, &Url::parse("ftp://example.com/").unwrap()).is_err());
        assert!(check_url(&none, &Url::parse("https://example.com/").unwrap()).is_ok());
        let allow: AllowList = "127.0.0.1".parse().unwrap();
        assert!(check_url(&allow, &Url::parse("http://127.0.0.1:9/").unwrap()).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_drops_refused_addresses() {
        let resolver = GuardedResolver::new(Arc::new(AllowList::default()));
        let err = resolver.lookup("localhost").await.unwrap_err().to_string();
        assert!(err.contains("localhost resolves to"), "{err}");
        assert!(err.contains("loopback"), "{err}");
        let allowed = GuardedResolver::new(Arc::new("localhost".parse().unwrap()));
        assert!(!allowed.lookup("localhost").await.unwrap().is_empty());
        let by_net = GuardedResolver::new(Arc::new("127.0.0.0/8".parse().unwrap()));
        let addrs = by_net.lookup("localhost").await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    }

    fn job(method: &str, url: &str) -> HttpJob {
        HttpJob {
            version: HTTP_JOB_VERSION,
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: String::new(),
            account_id: None,
            ignore_ssl_validation: false,
        }
    }

    #[test]
    fn invalid_jobs_are_named() {
        let mut j = job("get", "https://example.com/a?b=1");
        let v = validate(&j).unwrap();
        assert_eq!(v.method, reqwest::Method::GET);
        assert_eq!(v.host, "example.com");
        j.version = 2;
        assert!(validate(&j).unwrap_err().contains("version 2"));
        for (m, u, want) in [
            ("", "https://example.com/", "method"),
            ("GE T", "https://example.com/", "method"),
            ("GET", "example.com/x", "url"),
            ("GET", "file:///etc/passwd", "scheme"),
            ("GET", "https://user:pw@example.com/", "credentials"),
        ] {
            let err = validate(&job(m, u)).unwrap_err();
            assert!(err.contains(want), "{m} {u}: {err}");
        }
        let mut j = job("POST", "https://example.com/");
        j.headers = vec![("Bad Header".into(), "x".into())];
        assert!(validate(&j).unwrap_err().contains("Bad Header"));
        j.headers = vec![("X-A".into(), "line\nbreak".into())];
        assert!(validate(&j).unwrap_err().contains("X-A"));
        // Every problem at once, not only the first.
        let mut j = job("GE T", "file:///etc/passwd");
        j.version = 2;
        j.headers = vec![
            ("Bad Header".into(), "x".into()),
            ("X-B".into(), "\n".into()),
        ];
        let err = validate(&j).unwrap_err();
        let parts: Vec<&str> = err.split("; ").collect();
        assert_eq!(parts.len(), 5, "{err}");
        for (part, want) in parts
            .iter()
            .zip(["version 2", "method", "scheme", "Bad Header", "X-B"])
        {
            assert!(part.contains(want), "{part}: {want}");
        }
    }

    #[test]
    fn answers_fit_the_nats_max_payload() {
        // NATS' default 1 MiB keeps the 512 KiB default; 64 KiB allows 36 KiB of body.
        assert!(body_limit_for(1024 * 1024) >= HttpConfig::new("t").max_response_bytes);
        assert_eq!(body_limit_for(64 * 1024), 36 * 1024);
        assert_eq!(body_limit_for(1000), 0);
        let response = |body: usize| HttpJobResult::Response {
            status: 200,
            headers: vec![("x".into(), "y".repeat(100))],
            body: vec![b'a'; body],
            url: "https://a.example/".into(),
        };
        let limit = body_limit_for(64 * 1024);
        let (fits, payload) = fit_answer(response(limit), 64 * 1024);
        assert!(matches!(fits, HttpJobResult::Response { .. }));
        assert!(payload.len() <= 64 * 1024);
        let (too_large, payload) = fit_answer(response(60 * 1024), 64 * 1024);
        let HttpJobResult::Error { message } = too_large else {
            panic!("{too_large:?}")
        };
        assert!(payload.len() <= 64 * 1024);
        assert!(message.contains("its body 61440 bytes"), "{message}");
        assert!(message.contains("at most 65536 bytes"), "{message}");
        // Unknown max_payload (0): passed through.
        assert!(matches!(
            fit_answer(response(10), 0).0,
            HttpJobResult::Response { .. }
        ));
    }

    #[test]
    fn sandbox_routes_keep_path_and_query() {
        let config = HttpConfig::new("t")
            .with_twilio_bases(
                "http://127.0.0.1:8090/",
                switchboard_twilio::client::DEFAULT_LOOKUPS_BASE,
            )
            .unwrap();
        assert_eq!(config.routes.len(), 1, "Twilio's own base is not a route");
        let route = &config.routes[0];
        assert_eq!(route.host, "api.twilio.com");
        let original =
            Url::parse("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages?x=%2B1").unwrap();
        assert_eq!(
            route.target(&original).as_str(),
            "http://127.0.0.1:8090/2010-04-01/Accounts/AC1/Messages?x=%2B1"
        );
        assert!(
            HttpConfig::new("t")
                .with_twilio_bases("not a url", "x")
                .is_err()
        );
    }
}
