//! Kinds of connected accounts (issue 12, docs/semantics.md Decision 11): a Twilio account, or an
//! account for another HTTP service whose secret goes as a bearer token, HTTP Basic auth, or an
//! API key in a named header or query parameter, only ever to the account's allowed hosts.
//!
//! The checks here are the store's: `switchboard accounts add` and anything else that adds an
//! account get the same one-line refusals.

use serde::{Deserialize, Serialize};

/// How an account's secret is attached to a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountKind {
    /// `Authorization: Basic base64(AccountSid:auth token)`, for Twilio's hosts.
    #[default]
    Twilio,
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: Basic base64(username:password)`.
    Basic,
    /// The key in a named header or query parameter.
    ApiKey,
}

impl AccountKind {
    /// Every kind, in the order `--kind` lists them.
    pub const ALL: [AccountKind; 4] = [
        AccountKind::Twilio,
        AccountKind::Bearer,
        AccountKind::Basic,
        AccountKind::ApiKey,
    ];

    /// The name stored in `connected_accounts.kind` and taken by `--kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Twilio => "twilio",
            AccountKind::Bearer => "bearer",
            AccountKind::Basic => "basic",
            AccountKind::ApiKey => "api-key",
        }
    }

    /// "a Twilio account", "a bearer-token account"... for messages.
    pub fn describe(self) -> &'static str {
        match self {
            AccountKind::Twilio => "a Twilio account",
            AccountKind::Bearer => "a bearer-token account",
            AccountKind::Basic => "a Basic-auth account",
            AccountKind::ApiKey => "an API-key account",
        }
    }
}

impl std::fmt::Display for AccountKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AccountKind {
    type Err = String;

    fn from_str(s: &str) -> Result<AccountKind, String> {
        AccountKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("'{s}' is not an account kind (twilio, bearer, basic, api-key)"))
    }
}

/// How a non-Twilio account's secret travels (what `outbound` attaches).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "in", rename_all = "snake_case")]
pub enum HttpAuth {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: Basic base64(username:password)`.
    Basic { username: String },
    /// `<header>: <key>`.
    Header { header: String },
    /// `?<param>=<key>` added to the URL's query.
    Query { param: String },
}

impl HttpAuth {
    /// The kind of account that carries this.
    pub fn kind(&self) -> AccountKind {
        match self {
            HttpAuth::Bearer => AccountKind::Bearer,
            HttpAuth::Basic { .. } => AccountKind::Basic,
            HttpAuth::Header { .. } | HttpAuth::Query { .. } => AccountKind::ApiKey,
        }
    }

    /// Where the secret goes, for `accounts list` (never the secret): `Authorization: Bearer`,
    /// `Basic (user bob)`, `header X-Api-Key`, `query api_key`.
    pub fn placement(&self) -> String {
        match self {
            HttpAuth::Bearer => "Authorization: Bearer".into(),
            HttpAuth::Basic { username } => format!("Authorization: Basic (user {username})"),
            HttpAuth::Header { header } => format!("header {header}"),
            HttpAuth::Query { param } => format!("query parameter {param}"),
        }
    }

    /// Part of the associated data the secret is encrypted with: a ciphertext moved to another
    /// row, or a row whose placement was changed, does not decrypt.
    pub(crate) fn context(&self, id: i64) -> String {
        let placement = match self {
            HttpAuth::Bearer => String::new(),
            HttpAuth::Basic { username } => format!("user:{username}"),
            HttpAuth::Header { header } => format!("header:{header}"),
            HttpAuth::Query { param } => format!("query:{param}"),
        };
        format!(
            "switchboard connected account {id} {} {placement}",
            self.kind()
        )
    }

    /// Checks the header name, query parameter or user name.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            HttpAuth::Bearer => Ok(()),
            HttpAuth::Basic { username } => {
                if username.is_empty() {
                    Err("--username is empty".into())
                } else if username.contains(':') {
                    Err("--username may not contain ':' (HTTP Basic auth separates the user name from the password with it)".into())
                } else if username.chars().any(char::is_control) {
                    Err("--username may not contain control characters".into())
                } else {
                    Ok(())
                }
            }
            HttpAuth::Header { header } => {
                const TCHAR: &[u8] = b"!#$%&'*+-.^_`|~";
                if header.is_empty() {
                    return Err("--header is empty: give the name of the header the key goes in (e.g. X-Api-Key)".into());
                }
                if let Some(c) = header.chars().find(|c| {
                    !(c.is_ascii_alphanumeric() || (c.is_ascii() && TCHAR.contains(&(*c as u8))))
                }) {
                    return Err(format!(
                        "--header '{header}' is not a header name: {c:?} is not allowed"
                    ));
                }
                const RESERVED: [&str; 8] = [
                    "host",
                    "content-length",
                    "transfer-encoding",
                    "connection",
                    "te",
                    "trailer",
                    "upgrade",
                    "traceparent",
                ];
                if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(header)) {
                    return Err(format!(
                        "--header {header}: the request itself needs this header; name the header the service expects the key in"
                    ));
                }
                Ok(())
            }
            HttpAuth::Query { param } => {
                if param.is_empty() {
                    Err("--query-param is empty: give the name of the query parameter the key goes in (e.g. api_key)".into())
                } else if param.chars().any(|c| c.is_control() || c.is_whitespace()) {
                    Err(format!(
                        "--query-param '{param}' may not contain spaces or control characters"
                    ))
                } else if param.chars().any(|c| matches!(c, '&' | '=' | '#' | '?')) {
                    Err(format!(
                        "--query-param '{param}' may not contain & = # or ?"
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// A host an account's credentials may go to, as stored: trimmed, lower-case, no trailing dot.
/// Host names only (no IP address, port, scheme, path or wildcard): the credentials go where a
/// TLS certificate proves the name.
pub fn allowed_host(text: &str) -> Result<String, String> {
    let host = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let shown = text.trim();
    if host.is_empty() {
        return Err("--allowed-host is empty: give a host name such as api.example.com".into());
    }
    if host.contains("://") || host.contains(['/', ':', '?', '#', '@']) {
        return Err(format!(
            "--allowed-host '{shown}' is not a host name: give the host alone (e.g. api.example.com), no scheme, port or path"
        ));
    }
    if host.contains('*') {
        return Err(format!(
            "--allowed-host '{shown}': wildcards are not allowed; give each host (repeat --allowed-host)"
        ));
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "--allowed-host '{shown}' is an IP address: credentials go only to host names (https proves the name)"
        ));
    }
    if host.len() > 253 {
        return Err(format!(
            "--allowed-host '{shown}' is longer than 253 characters"
        ));
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "--allowed-host '{shown}' is not a host name (letters, digits and '-' in dot-separated labels)"
            ));
        }
    }
    if host
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("--allowed-host '{shown}' is not a host name"));
    }
    Ok(host)
}

/// The service an account is for (`provider`): `http` when the operator does not say.
pub fn service_name(text: &str) -> Result<String, String> {
    let name = text.trim().to_ascii_lowercase();
    if name.is_empty() {
        return Err("--service is empty".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "--service '{text}': use letters, digits, '-', '_' and '.' (e.g. slack, stripe)"
        ));
    }
    if name == "twilio" {
        return Err("--service twilio: a Twilio account is `--kind twilio` (the default)".into());
    }
    Ok(name)
}

/// A secret (token, password, key) as it can travel in a header or query parameter.
pub fn check_secret(secret: &str, what: &str) -> Result<(), String> {
    if secret.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    if secret.chars().any(char::is_control) {
        return Err(format!(
            "{what} contains control characters (a line break?): it could not travel in an HTTP header"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_lower_cased_names() {
        assert_eq!(allowed_host(" Slack.COM. ").unwrap(), "slack.com");
        assert_eq!(allowed_host("api.stripe.com").unwrap(), "api.stripe.com");
        for bad in [
            "",
            "https://slack.com",
            "slack.com/api",
            "slack.com:443",
            "*.slack.com",
            "10.0.0.1",
            "::1",
            "sl ack.com",
            "-x.com",
            "a..b",
            "1.2.3",
        ] {
            assert!(allowed_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn placements_are_checked() {
        assert!(
            HttpAuth::Header {
                header: "X-Api-Key".into()
            }
            .validate()
            .is_ok()
        );
        assert!(
            HttpAuth::Header {
                header: "X Api".into()
            }
            .validate()
            .is_err()
        );
        assert!(
            HttpAuth::Header {
                header: "Host".into()
            }
            .validate()
            .is_err()
        );
        assert!(
            HttpAuth::Query {
                param: "api_key".into()
            }
            .validate()
            .is_ok()
        );
        assert!(
            HttpAuth::Query {
                param: "a&b".into()
            }
            .validate()
            .is_err()
        );
        assert!(
            HttpAuth::Basic {
                username: "sk_live".into()
            }
            .validate()
            .is_ok()
        );
        assert!(
            HttpAuth::Basic {
                username: "a:b".into()
            }
            .validate()
            .is_err()
        );
        assert_eq!(
            "API-KEY".parse::<AccountKind>().unwrap(),
            AccountKind::ApiKey
        );
        assert!("oauth".parse::<AccountKind>().is_err());
        assert!(check_secret("tok\n", "ACCOUNT_TOKEN").is_err());
        assert!(service_name("Twilio").is_err());
        assert_eq!(service_name("Slack").unwrap(), "slack");
    }
}
