//! Twilio's standard opt-out and opt-in keywords for SMS (Advanced Opt-Out's defaults): a
//! recipient who texts one of them to a sender is blocked (Twilio then refuses sends to them with
//! 21610) or unblocked. Twilio matches the whole message body, trimmed, case-insensitively:
//! "stop" opts out, "please stop" does not.

/// What an inbound message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptKeyword {
    /// STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT.
    OptOut,
    /// START, YES, UNSTOP.
    OptIn,
}

/// Opt-out keywords, upper case.
pub const OPT_OUT_KEYWORDS: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
];

/// Opt-in keywords, upper case.
pub const OPT_IN_KEYWORDS: &[&str] = &["START", "YES", "UNSTOP"];

/// The keyword an inbound body is, if it is one.
pub fn keyword(body: &str) -> Option<OptKeyword> {
    let word = body.trim();
    // The longest keyword has 11 letters: longer bodies are never keywords (no allocation).
    if word.len() > 11 {
        return None;
    }
    let is = |list: &[&str]| list.iter().any(|k| k.eq_ignore_ascii_case(word));
    if is(OPT_OUT_KEYWORDS) {
        Some(OptKeyword::OptOut)
    } else if is(OPT_IN_KEYWORDS) {
        Some(OptKeyword::OptIn)
    } else {
        None
    }
}

/// The keyword class Twilio reports in an inbound webhook's `OptOutType` parameter (`STOP`,
/// `START`, `HELP`; sent when Advanced Opt-Out handled the message, custom keywords included).
pub fn from_opt_out_type(value: &str) -> Option<OptKeyword> {
    match value.trim().to_ascii_uppercase().as_str() {
        "STOP" => Some(OptKeyword::OptOut),
        "START" => Some(OptKeyword::OptIn),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_trimmed_body_is_matched_case_insensitively() {
        for body in [
            "STOP",
            "stop",
            " Stop \n",
            "STOPALL",
            "unsubscribe",
            "Cancel",
            "end",
            "QUIT",
            "revoke",
            "OptOut",
        ] {
            assert_eq!(keyword(body), Some(OptKeyword::OptOut), "{body:?}");
        }
        for body in ["START", "yes", " Unstop "] {
            assert_eq!(keyword(body), Some(OptKeyword::OptIn), "{body:?}");
        }
        for body in [
            "",
            "please stop",
            "stop!",
            "STOP STOP",
            "stopp",
            "help",
            "hi",
        ] {
            assert_eq!(keyword(body), None, "{body:?}");
        }
    }

    #[test]
    fn opt_out_type_names_the_class() {
        assert_eq!(from_opt_out_type("STOP"), Some(OptKeyword::OptOut));
        assert_eq!(from_opt_out_type("start"), Some(OptKeyword::OptIn));
        assert_eq!(from_opt_out_type("HELP"), None);
    }
}
