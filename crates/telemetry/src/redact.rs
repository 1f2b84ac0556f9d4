//! Passwords kept out of what a service prints: URLs such as `DATABASE_URL` or `NATS_URL` may
//! carry `user:password@`, and an error that echoes one must not show the password.

use std::fmt;

/// `text` with the password of every `scheme://user:password@host` in it replaced by `***`.
pub fn redact_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | '>' | ')' | ',')
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at_sign) => {
                let userinfo = &authority[..at_sign];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at_sign..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// What `main` returns in place of an [`anyhow::Error`]: printed (as `Error: …`) like it, with
/// passwords in URLs redacted ([`redact_passwords`]).
pub struct Redacted(anyhow::Error);

impl From<anyhow::Error> for Redacted {
    fn from(e: anyhow::Error) -> Redacted {
        Redacted(e)
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_passwords(&format!("{:?}", self.0)))
    }
}

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_passwords(&format!("{:#}", self.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_redacted() {
        for (text, want) in [
            (
                "connecting to postgres://u:s3cr3t@127.0.0.1:1/db failed",
                "connecting to postgres://u:***@127.0.0.1:1/db failed",
            ),
            ("'nats://a:b@h:4222'", "'nats://a:***@h:4222'"),
            ("nats://token@h", "nats://token@h"),
            ("http://h/x?u=a:b@c", "http://h/x?u=a:b@c"),
            ("no url: a:b@c", "no url: a:b@c"),
            (
                "postgres://u:p@h/db and postgres://v:q%40r@h2",
                "postgres://u:***@h/db and postgres://v:***@h2",
            ),
            ("trailing ://", "trailing ://"),
        ] {
            assert_eq!(redact_passwords(text), want, "{text}");
        }
        let e = Redacted::from(anyhow::anyhow!("bad postgres://u:s3cr3t@h/db"));
        // (Debug may add a backtrace, with RUST_BACKTRACE set.)
        assert!(format!("{e:?}").starts_with("bad postgres://u:***@h/db"));
        assert_eq!(format!("{e}"), "bad postgres://u:***@h/db");
    }
}
