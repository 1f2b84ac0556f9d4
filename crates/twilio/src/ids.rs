//! The identifiers Twilio hands out, as types that can only hold a valid value: parse once at the
//! edge (webhook, config, database row), then pass the type around (zero2prod's `domain/`).
//!
//! Error messages say what is wrong without echoing the input: phone numbers are personal data
//! and end up in logs.

use std::fmt;
use std::str::FromStr;

/// Why a string is not a valid identifier of the named kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {reason}")]
pub struct IdError {
    /// The kind of identifier that was expected, e.g. `AccountSid`.
    pub kind: &'static str,
    /// What is wrong with the input.
    pub reason: String,
}

impl IdError {
    fn new(kind: &'static str, reason: impl Into<String>) -> Self {
        IdError {
            kind,
            reason: reason.into(),
        }
    }
}

/// Checks `<one of prefixes><32 hex digits>` and names the first problem found.
fn check_sid(kind: &'static str, prefixes: &[&str], s: &str) -> Result<(), IdError> {
    let expected = prefixes.join(" or ");
    if s.is_empty() {
        return Err(IdError::new(
            kind,
            format!("empty; expected {expected} followed by 32 hex digits"),
        ));
    }
    let Some(rest) = prefixes.iter().find_map(|p| s.strip_prefix(p)) else {
        let found: String = s.chars().take(2).collect();
        return Err(IdError::new(
            kind,
            format!("must start with {expected}, found {found:?}"),
        ));
    };
    if let Some((i, c)) = rest
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_hexdigit())
    {
        return Err(IdError::new(
            kind,
            format!("character {} ({c:?}) is not a hex digit", i + 3),
        ));
    }
    if rest.len() != 32 {
        return Err(IdError::new(
            kind,
            format!("must be 34 characters, found {}", s.len()),
        ));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses `s`, or says what is wrong with it.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                let check: fn(&str) -> Result<(), IdError> = $check;
                check(s)?;
                Ok($name(s.to_owned()))
            }

            /// The identifier as Twilio writes it.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The identifier as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                $name::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                let check: fn(&str) -> Result<(), IdError> = $check;
                check(&s)?;
                Ok($name(s))
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, IdError> {
                $name::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
                $name::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// An account: `AC` followed by 32 hex digits.
    AccountSid,
    |s| check_sid("AccountSid", &["AC"], s)
);

string_id!(
    /// A message: `SM` (SMS) or `MM` (MMS) followed by 32 hex digits.
    MessageSid,
    |s| check_sid("MessageSid", &["SM", "MM"], s)
);

string_id!(
    /// A Messaging Service: `MG` followed by 32 hex digits.
    MessagingServiceSid,
    |s| check_sid("MessagingServiceSid", &["MG"], s)
);

string_id!(
    /// A phone number in E.164: `+`, then 8 to 15 digits, the first not zero (`+14155551234`).
    E164,
    check_e164
);

impl MessageSid {
    /// True for an MMS (`MM…`), false for an SMS (`SM…`).
    pub fn is_mms(&self) -> bool {
        self.0.starts_with("MM")
    }
}

fn check_e164(s: &str) -> Result<(), IdError> {
    const KIND: &str = "E.164 number";
    let Some(digits) = s.strip_prefix('+') else {
        return Err(IdError::new(
            KIND,
            if s.is_empty() {
                "empty; expected '+' and 8 to 15 digits".into()
            } else {
                "must start with '+'".to_owned()
            },
        ));
    };
    if let Some((i, c)) = digits
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_digit())
    {
        let what = if c.is_whitespace() || "()-./".contains(c) {
            "separators are not allowed".to_owned()
        } else {
            format!("{c:?} is not a digit")
        };
        return Err(IdError::new(KIND, format!("character {} {what}", i + 2)));
    }
    if digits.starts_with('0') {
        return Err(IdError::new(KIND, "the country code cannot start with 0"));
    }
    if !(8..=15).contains(&digits.len()) {
        return Err(IdError::new(
            KIND,
            format!("must have 8 to 15 digits after '+', found {}", digits.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX32: &str = "0123456789abcdefABCDEF0123456789";

    #[test]
    fn sids_parse() {
        let ac = AccountSid::parse(&format!("AC{HEX32}")).unwrap();
        assert_eq!(ac.as_str(), format!("AC{HEX32}"));
        assert_eq!(ac.to_string(), format!("AC{HEX32}"));
        let sm: MessageSid = format!("SM{HEX32}").parse().unwrap();
        assert!(!sm.is_mms());
        assert!(MessageSid::parse(&format!("MM{HEX32}")).unwrap().is_mms());
        assert!(MessagingServiceSid::try_from(format!("MG{HEX32}")).is_ok());
    }

    #[test]
    fn sids_refuse_with_a_reason() {
        let err = AccountSid::parse("").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid AccountSid: empty; expected AC followed by 32 hex digits"
        );
        let err = AccountSid::parse(&format!("SM{HEX32}")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid AccountSid: must start with AC, found \"SM\""
        );
        let err = AccountSid::parse(&format!("ac{HEX32}")).unwrap_err();
        assert!(
            err.reason.contains("must start with AC"),
            "prefix is case-sensitive: {err}"
        );
        let err = AccountSid::parse("ACxyz").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid AccountSid: character 3 ('x') is not a hex digit"
        );
        let err = AccountSid::parse("AC0123").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid AccountSid: must be 34 characters, found 6"
        );
        let err = AccountSid::parse(&format!("AC{HEX32}0")).unwrap_err();
        assert_eq!(err.reason, "must be 34 characters, found 35");
        let err = MessageSid::parse(&format!("MG{HEX32}")).unwrap_err();
        assert_eq!(err.reason, "must start with SM or MM, found \"MG\"");
        let err = MessagingServiceSid::parse(&format!("MG{}é", &HEX32[..31])).unwrap_err();
        assert!(err.reason.contains("not a hex digit"), "{err}");
        assert!(
            MessageSid::parse(&format!("SM{HEX32} ")).is_err(),
            "trailing space"
        );
    }

    #[test]
    fn e164_parses() {
        for ok in [
            "+14155551234",
            "+12345678",
            "+123456789012345",
            "+447911123456",
        ] {
            assert_eq!(E164::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn e164_refuses_with_a_reason() {
        let reason = |s: &str| E164::parse(s).unwrap_err().to_string();
        assert_eq!(
            reason(""),
            "invalid E.164 number: empty; expected '+' and 8 to 15 digits"
        );
        assert_eq!(
            reason("14155551234"),
            "invalid E.164 number: must start with '+'"
        );
        assert_eq!(
            reason("+1 415 555 1234"),
            "invalid E.164 number: character 3 separators are not allowed"
        );
        assert_eq!(
            reason("+1415555123x"),
            "invalid E.164 number: character 12 'x' is not a digit"
        );
        assert_eq!(
            reason("+04155551234"),
            "invalid E.164 number: the country code cannot start with 0"
        );
        assert_eq!(
            reason("+1234567"),
            "invalid E.164 number: must have 8 to 15 digits after '+', found 7"
        );
        assert_eq!(
            reason("+1234567890123456"),
            "invalid E.164 number: must have 8 to 15 digits after '+', found 16"
        );
        assert!(E164::parse("+١٢٣٤٥٦٧٨٩").is_err(), "non-ASCII digits");
        assert!(
            E164::parse("whatsapp:+14155551234").is_err(),
            "channel addresses are not E.164"
        );
    }

    #[test]
    fn serde_goes_through_parse() {
        let n: E164 = serde_json::from_str("\"+14155551234\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"+14155551234\"");
        let err = serde_json::from_str::<E164>("\"4155551234\"").unwrap_err();
        assert!(err.to_string().contains("must start with '+'"), "{err}");
        let err = serde_json::from_str::<AccountSid>("\"ACnope\"").unwrap_err();
        assert!(err.to_string().contains("invalid AccountSid"), "{err}");
        assert!(
            serde_json::from_str::<MessageSid>("42").is_err(),
            "not a string"
        );

        #[derive(serde::Deserialize)]
        struct Inbound {
            #[serde(rename = "MessageSid")]
            message_sid: MessageSid,
            #[serde(rename = "From")]
            from: E164,
        }
        let inbound: Inbound = serde_json::from_str(&format!(
            r#"{{"MessageSid":"SM{HEX32}","From":"+14155551234"}}"#
        ))
        .unwrap();
        assert_eq!(inbound.message_sid.as_str(), format!("SM{HEX32}"));
        assert_eq!(String::from(inbound.from), "+14155551234");
    }
}
