//! `switchboard accounts add`: the account kinds (issue 12) and their arguments, checked before
//! anything is connected to, each refusal one line.
//!
//! - `--kind twilio` (the default): `--account-sid`, and the auth token from `--auth-token` or
//!   `TWILIO_AUTH_TOKEN`, as always.
//! - `--kind bearer`, `basic` (`--username`), `api-key` (`--header NAME` or `--query-param NAME`):
//!   `--allowed-host HOST` (repeatable, at least one), optional `--service NAME`; the secret
//!   never on the command line: `ACCOUNT_TOKEN` (bearer, api-key) or `ACCOUNT_PASSWORD` (basic),
//!   or the first line of standard input with `--secret-stdin`.

use anyhow::bail;
use secrecy::SecretString;
use switchboard_store::{AccountKind, HttpAuth};

/// The variable a bearer token or API key is read from.
pub const TOKEN_VAR: &str = "ACCOUNT_TOKEN";
/// The variable a Basic-auth password is read from.
pub const PASSWORD_VAR: &str = "ACCOUNT_PASSWORD";

/// `accounts add`'s arguments as given.
#[derive(Debug, Default, Clone)]
pub struct AddArgs {
    pub kind: AccountKind,
    pub account_sid: Option<String>,
    pub auth_token: Option<SecretString>,
    pub allowed_hosts: Vec<String>,
    pub username: Option<String>,
    pub header: Option<String>,
    pub query_param: Option<String>,
    pub service: Option<String>,
    pub secret_stdin: bool,
}

/// What to add, checked.
#[derive(Debug)]
pub enum NewAccount {
    Twilio {
        account_sid: String,
        auth_token: SecretString,
    },
    Http {
        service: Option<String>,
        auth: HttpAuth,
        allowed_hosts: Vec<String>,
        secret: SecretString,
    },
}

/// Checks the arguments of `kind` (options of another kind are refused, naming the kind they
/// belong to) and reads the secret: `env` looks a variable up, `stdin` reads standard input.
pub fn new_account(
    args: AddArgs,
    env: impl Fn(&str) -> Option<String>,
    stdin: impl FnOnce() -> std::io::Result<String>,
) -> anyhow::Result<NewAccount> {
    let kind = args.kind;
    let not_for = |option: &str, belongs: &str| -> anyhow::Result<NewAccount> {
        bail!("{option} is not for --kind {kind}: it belongs to {belongs}")
    };
    if kind == AccountKind::Twilio {
        if !args.allowed_hosts.is_empty() {
            bail!(
                "--allowed-host is not for --kind twilio: a Twilio account's hosts are api.twilio.com and lookups.twilio.com (for another service use --kind bearer|basic|api-key)"
            );
        }
        if args.username.is_some() {
            return not_for("--username", "--kind basic");
        }
        if args.header.is_some() || args.query_param.is_some() {
            let option = if args.header.is_some() {
                "--header"
            } else {
                "--query-param"
            };
            return not_for(option, "--kind api-key");
        }
        if args.service.is_some() {
            return not_for("--service", "--kind bearer|basic|api-key");
        }
        if args.secret_stdin {
            return not_for(
                "--secret-stdin",
                "--kind bearer|basic|api-key (a Twilio auth token comes from TWILIO_AUTH_TOKEN)",
            );
        }
        let Some(account_sid) = args.account_sid else {
            bail!("--kind twilio needs --account-sid (AC followed by 32 hex digits)");
        };
        let Some(auth_token) = args.auth_token else {
            bail!(
                "--kind twilio needs the auth token: set TWILIO_AUTH_TOKEN (it keeps the token out of the process list)"
            );
        };
        return Ok(NewAccount::Twilio {
            account_sid,
            auth_token,
        });
    }
    if args.account_sid.is_some() {
        return not_for("--account-sid", "--kind twilio");
    }
    if args.auth_token.is_some() {
        bail!(
            "--auth-token / TWILIO_AUTH_TOKEN is not for --kind {kind}: its secret comes from {} or --secret-stdin",
            if kind == AccountKind::Basic {
                PASSWORD_VAR
            } else {
                TOKEN_VAR
            }
        );
    }
    if kind != AccountKind::Basic && args.username.is_some() {
        return not_for("--username", "--kind basic");
    }
    if kind != AccountKind::ApiKey && (args.header.is_some() || args.query_param.is_some()) {
        let option = if args.header.is_some() {
            "--header"
        } else {
            "--query-param"
        };
        return not_for(option, "--kind api-key");
    }
    let auth = match kind {
        AccountKind::Bearer => HttpAuth::Bearer,
        AccountKind::Basic => match args.username {
            Some(username) => HttpAuth::Basic { username },
            None => bail!(
                "--kind basic needs --username (the password comes from {PASSWORD_VAR} or --secret-stdin)"
            ),
        },
        AccountKind::ApiKey => match (args.header, args.query_param) {
            (Some(header), None) => HttpAuth::Header { header },
            (None, Some(param)) => HttpAuth::Query { param },
            (Some(_), Some(_)) => {
                bail!("--kind api-key takes --header or --query-param, not both")
            }
            (None, None) => bail!(
                "--kind api-key needs --header NAME (the key in that request header) or --query-param NAME (the key in that query parameter)"
            ),
        },
        AccountKind::Twilio => unreachable!("handled above"),
    };
    auth.validate().map_err(anyhow::Error::msg)?;
    if args.allowed_hosts.is_empty() {
        bail!(
            "--kind {kind} needs --allowed-host HOST (repeat it for several): the credentials go only to those hosts"
        );
    }
    let mut hosts = Vec::new();
    for h in &args.allowed_hosts {
        hosts.push(switchboard_store::account_kinds::allowed_host(h).map_err(anyhow::Error::msg)?);
    }
    let service = match args.service.as_deref() {
        Some(s) => {
            Some(switchboard_store::account_kinds::service_name(s).map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    let var = if kind == AccountKind::Basic {
        PASSWORD_VAR
    } else {
        TOKEN_VAR
    };
    let secret = if args.secret_stdin {
        let text =
            stdin().map_err(|e| anyhow::anyhow!("--secret-stdin: reading standard input: {e}"))?;
        let line = text.lines().next().unwrap_or_default().to_owned();
        if line.trim().is_empty() {
            bail!("--secret-stdin: standard input is empty (give the secret on its first line)");
        }
        line
    } else {
        match env(var) {
            Some(v) if !v.trim().is_empty() => v,
            Some(_) => bail!("{var} is empty"),
            None => bail!(
                "--kind {kind} needs its secret: set {var}, or give it on standard input with --secret-stdin (never as an argument, which other users can see in the process list)"
            ),
        }
    };
    let what = if args.secret_stdin {
        "the secret on standard input"
    } else {
        var
    };
    switchboard_store::account_kinds::check_secret(&secret, what).map_err(anyhow::Error::msg)?;
    Ok(NewAccount::Http {
        service,
        auth,
        allowed_hosts: hosts,
        secret: SecretString::from(secret),
    })
}

/// One line of `accounts list`: id, name, kind, service, Account SID or where the secret goes,
/// and the allowed hosts (never a secret).
pub fn list_line(a: &switchboard_store::Account) -> String {
    let detail = match (&a.auth, &a.account_sid) {
        (Some(auth), _) => auth.placement(),
        (None, Some(sid)) => sid.clone(),
        (None, None) => "-".into(),
    };
    format!(
        "{:<6} {:<24} {:<8} {:<10} {:<36} {}",
        a.id,
        a.name,
        a.kind,
        a.provider,
        detail,
        a.allowed_hosts.join(",")
    )
}

/// The header of `accounts list`.
pub fn list_header() -> String {
    format!(
        "{:<6} {:<24} {:<8} {:<10} {:<36} HOSTS",
        "ID", "NAME", "KIND", "SERVICE", "ACCOUNT SID / CREDENTIAL"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(kind: AccountKind) -> AddArgs {
        AddArgs {
            kind,
            ..AddArgs::default()
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn token(var: &str) -> Option<String> {
        (var == TOKEN_VAR || var == PASSWORD_VAR).then(|| "s3cret".into())
    }

    fn no_stdin() -> std::io::Result<String> {
        panic!("stdin is not read")
    }

    fn err(r: anyhow::Result<NewAccount>) -> String {
        let e = format!("{:#}", r.unwrap_err());
        assert!(!e.contains('\n'), "{e}");
        e
    }

    #[test]
    fn each_kind_takes_its_own_options() {
        let hosts = vec!["Slack.com".to_owned()];
        let ok = new_account(
            AddArgs {
                allowed_hosts: hosts.clone(),
                service: Some("Slack".into()),
                ..args(AccountKind::Bearer)
            },
            token,
            no_stdin,
        )
        .unwrap();
        match ok {
            NewAccount::Http {
                service,
                auth,
                allowed_hosts,
                ..
            } => {
                assert_eq!(service.as_deref(), Some("slack"));
                assert_eq!(auth, HttpAuth::Bearer);
                assert_eq!(allowed_hosts, ["slack.com"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            err(new_account(args(AccountKind::Bearer), token, no_stdin)).contains("--allowed-host")
        );
        assert!(
            err(new_account(
                AddArgs {
                    allowed_hosts: hosts.clone(),
                    header: Some("X-Key".into()),
                    ..args(AccountKind::Bearer)
                },
                token,
                no_stdin
            ))
            .starts_with("--header is not for --kind bearer")
        );
        assert!(
            err(new_account(
                AddArgs {
                    allowed_hosts: hosts.clone(),
                    ..args(AccountKind::Basic)
                },
                token,
                no_stdin
            ))
            .contains("--username")
        );
        assert!(
            err(new_account(
                AddArgs {
                    allowed_hosts: hosts.clone(),
                    ..args(AccountKind::ApiKey)
                },
                token,
                no_stdin
            ))
            .contains("--header NAME")
        );
        assert!(
            err(new_account(
                AddArgs {
                    allowed_hosts: hosts.clone(),
                    ..args(AccountKind::Bearer)
                },
                no_env,
                no_stdin
            ))
            .contains("set ACCOUNT_TOKEN")
        );
        assert!(
            err(new_account(
                AddArgs {
                    allowed_hosts: hosts.clone(),
                    ..args(AccountKind::Twilio)
                },
                no_env,
                no_stdin
            ))
            .starts_with("--allowed-host is not for --kind twilio")
        );
        let from_stdin = new_account(
            AddArgs {
                allowed_hosts: hosts,
                username: Some("user".into()),
                secret_stdin: true,
                ..args(AccountKind::Basic)
            },
            no_env,
            || Ok("pa ss\n".into()),
        )
        .unwrap();
        match from_stdin {
            NewAccount::Http { secret, .. } => {
                use secrecy::ExposeSecret as _;
                assert_eq!(secret.expose_secret(), "pa ss");
            }
            other => panic!("{other:?}"),
        }
    }
}
