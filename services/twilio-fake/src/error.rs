//! Twilio's error answers: `{code, message, more_info, status}` in JSON, or the 2010 API's
//! `<TwilioResponse><RestException>` in XML when the URL has no `.json`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The representation a 2010-04-01 resource is answered in, chosen by the URL's suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `….json`
    Json,
    /// No suffix: the TwiML-API XML (`<TwilioResponse>`).
    Xml,
}

/// An error answer as the real API gives it.
#[derive(Debug, Clone)]
pub struct TwilioError {
    /// HTTP status.
    pub status: StatusCode,
    /// Twilio's error code (`21211`, `20429`…).
    pub code: u32,
    /// The human-readable message.
    pub message: String,
    /// Answer with no body at all (a bare 503, as a load balancer gives).
    pub empty_body: bool,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
    /// JSON or XML.
    pub format: Format,
}

impl TwilioError {
    /// An error with Twilio's usual message for `code`.
    pub fn new(status: StatusCode, code: u32) -> TwilioError {
        TwilioError::with_message(status, code, default_message(code))
    }

    /// An error with a specific message.
    pub fn with_message(status: StatusCode, code: u32, message: impl Into<String>) -> TwilioError {
        TwilioError {
            status,
            code,
            message: message.into(),
            empty_body: false,
            retry_after: None,
            format: Format::Json,
        }
    }

    /// A 400 validation error.
    pub fn bad_request(code: u32, message: impl Into<String>) -> TwilioError {
        TwilioError::with_message(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 / 20003, the answer to missing or wrong credentials.
    pub fn unauthorized() -> TwilioError {
        TwilioError::new(StatusCode::UNAUTHORIZED, 20003)
    }

    /// 404 / 20404 for `path`.
    pub fn not_found(path: &str) -> TwilioError {
        TwilioError::with_message(
            StatusCode::NOT_FOUND,
            20404,
            format!("The requested resource {path} was not found"),
        )
    }

    /// The same error in another representation.
    pub fn in_format(mut self, format: Format) -> TwilioError {
        self.format = format;
        self
    }

    /// Twilio's documentation page for the code.
    pub fn more_info(&self) -> String {
        format!("https://www.twilio.com/docs/errors/{}", self.code)
    }

    /// The JSON body (also what the admin API reports).
    pub fn json_body(&self) -> serde_json::Value {
        serde_json::json!({
            "code": self.code,
            "message": self.message,
            "more_info": self.more_info(),
            "status": self.status.as_u16(),
        })
    }
}

impl IntoResponse for TwilioError {
    fn into_response(self) -> Response {
        let mut response = if self.empty_body {
            self.status.into_response()
        } else {
            match self.format {
                Format::Json => (self.status, axum::Json(self.json_body())).into_response(),
                Format::Xml => {
                    let body = format!(
                        "<?xml version='1.0' encoding='UTF-8'?>\n<TwilioResponse><RestException>\
                         <Code>{}</Code><Message>{}</Message><MoreInfo>{}</MoreInfo>\
                         <Status>{}</Status></RestException></TwilioResponse>",
                        self.code,
                        xml_escape(&self.message),
                        xml_escape(&self.more_info()),
                        self.status.as_u16()
                    );
                    (
                        self.status,
                        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
                        body,
                    )
                        .into_response()
                }
            }
        };
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Twilio API\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Twilio's message for the codes the fake produces on its own or is asked to inject.
pub fn default_message(code: u32) -> String {
    match code {
        20003 => "Authenticate",
        20404 => "The requested resource was not found",
        20429 => "Too Many Requests",
        20500 => "An internal server error has occurred",
        20503 => "Service unavailable",
        21211 => "The 'To' number is not a valid phone number.",
        21212 => "The 'From' number is not a valid phone number, shortcode, or alphanumeric sender ID.",
        21265 => "'To' number cannot be a Short Code",
        21408 => "Permission to send an SMS has not been enabled for the region indicated by the 'To' number",
        21602 => "Message body is required.",
        21603 => "A 'From' phone number is required.",
        21604 => "A 'To' phone number is required.",
        21606 => "The 'From' phone number provided is not a valid message-capable Twilio phone number for this destination/account",
        21608 => "The number is unverified. Trial accounts may only send messages to verified numbers",
        21610 => "Attempt to send to unsubscribed recipient",
        21611 => "This 'From' number has exceeded the maximum number of queued messages",
        21612 => "The 'To' phone number is not currently reachable via SMS",
        21614 => "'To' number is not a valid mobile number",
        21617 => "The concatenated message body exceeds the 1600 character limit",
        21620 => "Invalid media URL(s)",
        21623 => "Too many media URLs. The maximum is 10",
        21635 => "'To' number cannot be a landline",
        21658 => "A parameter exceeds its length limit",
        21701 => "The Messaging Service Sid is invalid",
        other => return format!("Error {other} (injected by twilio-fake)"),
    }
    .to_owned()
}

/// Escapes text for XML content and double-quoted attribute values.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}
