//! Twilio REST API errors (docs/twilio.md §3): both body shapes parsed into one [`ApiError`], and
//! whether to retry decided here, by [`ApiError::kind`], not guessed at each call site.

use serde_json::Value as Json;

/// Recipient unsubscribed (replied STOP): record the opt-out, never retry, never treat it as a
/// failure of the sender.
pub const OPT_OUT: u32 = 21610;

/// Account concurrency limit: the request was not processed and is always safe to retry.
pub const TOO_MANY_REQUESTS: u32 = 20429;

/// The sender's queue is full: back off, then retry later or use another sender.
pub const QUEUE_FULL: u32 = 21611;

/// Codes that will fail the same way however often the request is repeated.
pub const PERMANENT_CODES: &[u32] = &[
    20003, // authentication failed
    20404, // resource not found (and Lookup v1's answer for an invalid number)
    21211, // invalid To
    21212, // invalid From
    21265, // To is a short code
    21408, // geo permission not enabled for the region
    21602, // body required
    21603, // From required
    21604, // To required
    21606, // From not SMS-capable or not on this account
    21608, // unverified To on a trial account
    21610, // recipient unsubscribed (STOP)
    21612, // unroutable
    21614, // To is not SMS-capable
    21617, // body over 1600 characters
    21620, // invalid media URL
    21623, // too many media
    21635, // To is a landline
    21658, // a parameter exceeds its length limit
];

/// What the caller should do about an [`ApiError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Transient (429/20429, 5xx): retry with backoff. For a create, a 5xx is ambiguous: the
    /// message may have been sent.
    Retryable,
    /// 21611, the sender's queue is full: retry much later or from another sender.
    Throttled,
    /// Repeating the request cannot help: surface it, or mark the recipient.
    Permanent,
}

/// An error answer from the Twilio REST API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Twilio API error {code} (HTTP {status}): {message}")]
pub struct ApiError {
    /// HTTP status of the response.
    pub status: u16,
    /// Twilio's error code, or the HTTP status when the body carries none.
    pub code: u32,
    /// Twilio's message (`message`, or `detail`/`title` of a problem document).
    pub message: String,
    /// Link to the error's documentation (`more_info`, or a problem document's `type`).
    pub more_info: Option<String>,
}

impl ApiError {
    /// Reads an error response: the legacy `{code, message, more_info, status}` body, an RFC 9457
    /// problem document (`{type, title, status, code, detail, ...}`), or anything else (an empty
    /// 503, an HTML error page), in which case the HTTP status stands in for the code.
    pub fn from_response(status: u16, body: &[u8]) -> ApiError {
        let json = serde_json::from_slice::<Json>(body).ok();
        let object = json.as_ref().and_then(Json::as_object);
        let field = |name: &str| object.and_then(|o| o.get(name));
        let text = |name: &str| {
            field(name)
                .and_then(Json::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };

        let code = field("code")
            .and_then(|c| match c {
                Json::Number(n) => n.as_u64(),
                Json::String(s) => s.trim().parse().ok(),
                _ => None,
            })
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(u32::from(status));
        let message = text("message")
            .or_else(|| text("detail"))
            .or_else(|| text("title"))
            .or_else(|| {
                if object.is_some() {
                    None
                } else {
                    plain_text(body)
                }
            })
            .unwrap_or_else(|| format!("HTTP {status} with no error message"));
        let more_info = text("more_info").or_else(|| text("type").filter(|t| t != "about:blank"));
        ApiError {
            status,
            code,
            message,
            more_info,
        }
    }

    /// Whether to retry, throttle or give up.
    pub fn kind(&self) -> ErrorKind {
        if self.code == TOO_MANY_REQUESTS || self.status == 429 {
            ErrorKind::Retryable
        } else if self.code == QUEUE_FULL {
            ErrorKind::Throttled
        } else if PERMANENT_CODES.contains(&self.code) {
            ErrorKind::Permanent
        } else if self.status >= 500 {
            ErrorKind::Retryable
        } else {
            ErrorKind::Permanent
        }
    }

    /// True for 429/20429 and 5xx.
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Retryable
    }

    /// True when the recipient has opted out (21610).
    pub fn is_opt_out(&self) -> bool {
        self.code == OPT_OUT
    }
}

/// A short, single-line excerpt of a non-JSON body, for the message.
fn plain_text(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return None;
    }
    const MAX: usize = 200;
    Some(if line.chars().count() > MAX {
        format!("{}…", line.chars().take(MAX).collect::<String>())
    } else {
        line
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_body() {
        let body = br#"{"code": 21211, "message": "The 'To' number 5551234567 is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}"#;
        let e = ApiError::from_response(400, body);
        assert_eq!(
            e,
            ApiError {
                status: 400,
                code: 21211,
                message: "The 'To' number 5551234567 is not a valid phone number.".into(),
                more_info: Some("https://www.twilio.com/docs/errors/21211".into()),
            }
        );
        assert_eq!(e.kind(), ErrorKind::Permanent);
        assert_eq!(
            e.to_string(),
            "Twilio API error 21211 (HTTP 400): The 'To' number 5551234567 is not a valid phone number."
        );
    }

    #[test]
    fn rfc9457_problem_body() {
        let body = br#"{"type": "https://www.twilio.com/docs/errors/20429", "title": "Too Many Requests", "status": 429, "code": 20429, "detail": "Concurrency limit reached", "instance": "/2010-04-01/Accounts/AC1/Messages.json", "errors": []}"#;
        let e = ApiError::from_response(429, body);
        assert_eq!(e.code, 20429);
        assert_eq!(e.message, "Concurrency limit reached");
        assert_eq!(
            e.more_info.as_deref(),
            Some("https://www.twilio.com/docs/errors/20429")
        );
        assert_eq!(e.kind(), ErrorKind::Retryable);

        let e = ApiError::from_response(
            422,
            br#"{"type": "about:blank", "title": "Unprocessable", "status": 422}"#,
        );
        assert_eq!(
            (e.code, e.message.as_str(), e.more_info),
            (422, "Unprocessable", None)
        );
    }

    #[test]
    fn bodies_without_a_code_fall_back_to_the_status() {
        let e = ApiError::from_response(503, b"");
        assert_eq!(
            (e.code, e.message.as_str()),
            (503, "HTTP 503 with no error message")
        );
        assert_eq!(e.kind(), ErrorKind::Retryable);
        let e = ApiError::from_response(502, b"<html>\n<body>Bad   Gateway</body>\n</html>");
        assert_eq!(
            (e.code, e.message.as_str()),
            (502, "<html> <body>Bad Gateway</body> </html>")
        );
        let e = ApiError::from_response(400, br#"{"message": "nope"}"#);
        assert_eq!((e.code, e.kind()), (400, ErrorKind::Permanent));
        let e = ApiError::from_response(400, br#"{"code": "21211"}"#);
        assert_eq!(e.code, 21211, "numeric string code");
        let e = ApiError::from_response(500, &[b'x'; 1000]);
        assert_eq!(e.message.chars().count(), 201, "long bodies are cut");
    }

    #[test]
    fn retryable_errors() {
        for (status, code) in [
            (429, 20429),
            (429, 429),
            (500, 20500),
            (503, 503),
            (502, 502),
            (400, 20429),
        ] {
            let e = ApiError {
                status,
                code,
                message: String::new(),
                more_info: None,
            };
            assert_eq!(e.kind(), ErrorKind::Retryable, "{status}/{code}");
            assert!(e.is_retryable());
        }
    }

    #[test]
    fn throttled_error() {
        let e = ApiError::from_response(
            400,
            br#"{"code": 21611, "message": "queue full", "status": 400}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Throttled);
        assert!(!e.is_retryable());
    }

    #[test]
    fn permanent_errors() {
        for &code in PERMANENT_CODES {
            let status = match code {
                20003 => 401,
                20404 => 404,
                _ => 400,
            };
            let e = ApiError {
                status,
                code,
                message: String::new(),
                more_info: None,
            };
            assert_eq!(e.kind(), ErrorKind::Permanent, "{code}");
            assert!(!e.is_retryable());
        }
        // Any other 4xx too, and a permanent code is permanent even under a 5xx status.
        for (status, code) in [
            (400, 21999),
            (403, 403),
            (404, 404),
            (413, 413),
            (500, 21211),
        ] {
            let e = ApiError {
                status,
                code,
                message: String::new(),
                more_info: None,
            };
            assert_eq!(e.kind(), ErrorKind::Permanent, "{status}/{code}");
        }
    }

    #[test]
    fn opt_out() {
        let e = ApiError::from_response(
            400,
            br#"{"code": 21610, "message": "Attempt to send to unsubscribed recipient", "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400}"#,
        );
        assert!(e.is_opt_out());
        assert_eq!(e.kind(), ErrorKind::Permanent);
        assert!(!ApiError::from_response(400, br#"{"code": 21211}"#).is_opt_out());
    }
}
