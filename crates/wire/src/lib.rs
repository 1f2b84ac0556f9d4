//! The NATS contract between Switchboard's services: subject names (under a configurable prefix,
//! so tests and tenants can share one server), header names and message bodies. Every subject
//! and every message type lives here and nowhere else.

pub mod outbound;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Default subject prefix.
pub const DEFAULT_PREFIX: &str = "switchboard";
/// Queue group of behavior-worker replicas: each webhook goes to exactly one of them.
pub const WORKER_QUEUE_GROUP: &str = "behavior-worker";
/// NATS service name of the behavior worker (service discovery: `$SRV.INFO.behavior-worker`).
pub const WORKER_SERVICE_NAME: &str = "behavior-worker";

/// NATS header carrying the request id that ingress gave a webhook (also its HTTP response header).
pub const HEADER_REQUEST_ID: &str = "Switchboard-Request-Id";

/// Subject names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Subjects::new(DEFAULT_PREFIX)
    }
}

impl Subjects {
    /// `prefix` must be a valid subject prefix: tokens of `[A-Za-z0-9_-]` separated by dots.
    pub fn new(prefix: &str) -> Subjects {
        Subjects {
            prefix: prefix.trim_end_matches('.').to_string(),
        }
    }

    /// Checks a prefix before use (config validation).
    pub fn validate_prefix(prefix: &str) -> Result<(), String> {
        if prefix.is_empty() {
            return Err("subject prefix is empty".into());
        }
        for token in prefix.split('.') {
            if token.is_empty()
                || !token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!(
                    "subject prefix '{prefix}' has an invalid token '{token}' (use [A-Za-z0-9_-] separated by dots)"
                ));
            }
        }
        Ok(())
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Request/reply: ingress → behavior-worker, one webhook ([`WebhookRequest`] → [`WebhookReply`]).
    pub fn webhook_request(&self) -> String {
        format!("{}.webhook.request", self.prefix)
    }

    /// Request/reply: ingress → behavior-worker, one Twilio delivery status callback
    /// (`/twilio/status`), in a [`WebhookRequest`] (empty `guid`) → [`WebhookReply`].
    pub fn status_callback(&self) -> String {
        format!("{}.webhook.status", self.prefix)
    }

    /// Request/reply: a behavior's HTTP request, performed by the outbound service
    /// ([`HttpJob`] → [`HttpJobResult`]).
    pub fn outbound_http(&self) -> String {
        format!("{}.outbound.http", self.prefix)
    }

    /// Request/reply: run a macro behavior (`event.macro.bot`) on request, served by the
    /// behavior worker ([`RunBehaviorRequest`] → [`RunBehaviorReply`]).
    pub fn behavior_run(&self) -> String {
        format!("{}.behavior.run", self.prefix)
    }

    /// Broadcast: configuration changed (import, enable/disable); workers drop cached behaviors.
    pub fn config_changed(&self) -> String {
        format!("{}.events.config.changed", self.prefix)
    }
}

/// Version of the webhook request message; bumped on incompatible change.
pub const WEBHOOK_REQUEST_VERSION: u32 = 1;

/// A webhook as ingress received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookRequest {
    pub version: u32,
    /// Unique id of this HTTP request (also in [`HEADER_REQUEST_ID`]).
    pub request_id: String,
    /// The listener guid from the path, as sent.
    pub guid: String,
    /// Path segments after the guid, joined by `/` (empty for `/webhooks/<guid>`).
    #[serde(default)]
    pub path: String,
    /// The public URL the caller requested (what Twilio signed): base URL + path + `?query`.
    pub public_url: String,
    pub method: String,
    /// Raw query string, without `?`.
    #[serde(default)]
    pub query: String,
    /// Request headers in order, names as received (lower-case from HTTP/2 and hyper).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Raw body, base64 in JSON.
    #[serde(default, with = "b64")]
    pub body: Vec<u8>,
    pub client_ip: String,
}

/// The HTTP response for a webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookReply {
    pub status: u16,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: String,
}

impl WebhookReply {
    /// An empty-bodied reply with a status (404, 403, 503, ...).
    pub fn status(status: u16) -> WebhookReply {
        WebhookReply {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }
}

/// Version of [`HttpJob`]; bumped on incompatible change.
pub const HTTP_JOB_VERSION: u32 = 1;

/// A behavior's `core.va.action.http_request`, for the outbound service to perform with the
/// connected account's credentials (docs/semantics.md, Decision 11).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpJob {
    pub version: u32,
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: String,
    /// Connected account whose credentials to attach (the engine already checked the host).
    #[serde(default)]
    pub account_id: Option<i64>,
    #[serde(default)]
    pub ignore_ssl_validation: bool,
}

/// Decodes an [`HttpJob`], naming every field that is missing or of the wrong type at once
/// (serde stops at the first), each with its path (`headers[2]: …`), joined by `; `. Unknown
/// fields are ignored, as [`decode`] does: a newer worker may add some.
pub fn decode_http_job(bytes: &[u8]) -> Result<HttpJob, String> {
    use outbound::Got;
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let Some(object) = doc.as_object() else {
        return Err("an HTTP job is a JSON object".into());
    };
    let mut read = outbound::Reader::new(object, "");
    let version = read.integer("version", true);
    let method = read.string("method", true);
    let url = read.string("url", true);
    let headers = read.pairs("headers");
    let body = read.string("body", false);
    let account_id = read.integer("account_id", false);
    let ignore_ssl_validation = read.boolean("ignore_ssl_validation", false);
    let version = match version {
        Got::Ok(v) => match u32::try_from(v) {
            Ok(v) => Some(v),
            Err(_) => {
                read.problem("version", format!("{v} is not a version"));
                None
            }
        },
        _ => None,
    };
    let account_id = match account_id {
        Got::Ok(id) => match i64::try_from(id) {
            Ok(id) => Got::Ok(id),
            Err(_) => {
                read.problem("account_id", format!("{id} is not an account id"));
                Got::Bad
            }
        },
        other => other.map(|_| 0),
    };
    if !read.problems.is_empty() {
        return Err(read
            .problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "));
    }
    let (Some(version), Got::Ok(method), Got::Ok(url)) = (version, method, url) else {
        unreachable!("a missing or unusable field is a problem");
    };
    Ok(HttpJob {
        version,
        method,
        url,
        headers: headers.ok().unwrap_or_default(),
        body: body.ok().unwrap_or_default(),
        account_id: account_id.ok(),
        ignore_ssl_validation: ignore_ssl_validation.ok().unwrap_or(false),
    })
}

/// The outcome of an [`HttpJob`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum HttpJobResult {
    Response {
        status: u16,
        #[serde(default)]
        headers: Vec<(String, String)>,
        #[serde(default, with = "b64")]
        body: Vec<u8>,
        url: String,
    },
    Error {
        message: String,
    },
    /// The connected account's credentials may not be used for this request (unknown account,
    /// or a host outside its allowed hosts): nothing was sent, and the behavior's response
    /// placeholder becomes `false` (docs/semantics.md, Decision 11).
    CredentialsRefused {
        message: String,
    },
}

/// Version of [`RunBehaviorRequest`] and [`RunBehaviorReply`]; bumped on incompatible change.
pub const RUN_BEHAVIOR_VERSION: u32 = 1;

/// Run a macro behavior (`event.macro.bot`) of a bot now, with variable inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBehaviorRequest {
    pub version: u32,
    /// The bot: its id, or its package uid (e.g. `bot_twilio`) when that is unique.
    pub bot: String,
    /// The behavior of that bot: its id, or its package uid (e.g. `behavior_41`).
    pub behavior: String,
    /// Variable inputs by variable key (`var_to`), as text; coerced by the variable's type.
    #[serde(default)]
    pub vars: std::collections::BTreeMap<String, String>,
}

/// The answer to a [`RunBehaviorRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RunBehaviorReply {
    /// The behavior ran (its own errors, e.g. a failed HTTP request, are in `errors`).
    Completed(Box<RunBehaviorResult>),
    /// The behavior did not run.
    Rejected {
        version: u32,
        /// `invalid_request`, `unknown_bot`, `unknown_behavior`, `not_a_macro`, `disabled`,
        /// `unknown_variable` or `internal`.
        code: String,
        message: String,
    },
}

/// What a macro run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunBehaviorResult {
    pub version: u32,
    /// Id of the run record (`behavior_runs.id`).
    pub run_id: i64,
    pub bot_id: i64,
    pub bot_name: String,
    pub behavior_id: i64,
    pub behavior_title: String,
    /// `complete`, `stop`, `suspend` or `aborted`.
    pub exit_state: String,
    /// The variables and placeholders the run set, by name (inputs included).
    #[serde(default)]
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// Errors recorded during the run.
    #[serde(default)]
    pub errors: Vec<String>,
    /// The HTTP requests the run made (method, url, headers, body, sent, authenticated_with);
    /// credentials are never listed.
    #[serde(default)]
    pub http_requests: Vec<serde_json::Value>,
}

/// What changed, for cache invalidation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigChanged {
    /// `import`, `bot`, `behavior`, `listener`, `account`.
    pub kind: String,
    #[serde(default)]
    pub ids: Vec<i64>,
}

/// Encodes a message as JSON bytes.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    serde_json::to_vec(msg).expect("wire messages always serialize")
}

/// Decodes a message, with an error that says what is wrong and where.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}

mod b64 {
    use super::*;
    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_live_under_the_prefix() {
        let s = Subjects::new("t1.");
        assert_eq!(s.webhook_request(), "t1.webhook.request");
        assert_eq!(s.config_changed(), "t1.events.config.changed");
        assert_eq!(s.outbound_http(), "t1.outbound.http");
        assert_eq!(s.behavior_run(), "t1.behavior.run");
        assert_eq!(s.status_callback(), "t1.webhook.status");
        assert!(Subjects::validate_prefix("switchboard").is_ok());
        assert!(Subjects::validate_prefix("a.b-c_d").is_ok());
        for bad in ["", "a..b", "a b", "a.*", "a.>"] {
            assert!(Subjects::validate_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn webhook_request_round_trips_with_binary_body() {
        let req = WebhookRequest {
            version: WEBHOOK_REQUEST_VERSION,
            request_id: "r1".into(),
            guid: "abc".into(),
            path: String::new(),
            public_url: "https://bot.example.com/webhooks/abc".into(),
            method: "POST".into(),
            query: String::new(),
            headers: vec![("x-twilio-signature".into(), "sig".into())],
            body: vec![0, 159, 146, 150, b'&'],
            client_ip: "203.0.113.1".into(),
        };
        let bytes = encode(&req);
        assert_eq!(decode::<WebhookRequest>(&bytes).unwrap(), req);
        let err = decode::<WebhookRequest>(br#"{"version":1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field"), "{err}");
    }

    #[test]
    fn run_behavior_messages_round_trip() {
        let req: RunBehaviorRequest = decode(
            br#"{"version":1,"bot":"bot_twilio","behavior":"behavior_41","vars":{"var_to":"+15551234567"}}"#,
        )
        .unwrap();
        assert_eq!(req.vars["var_to"], "+15551234567");
        let err = decode::<RunBehaviorRequest>(br#"{"version":1,"bot":"b","behaviour":"x"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("behaviour"), "{err}");
        let reply = RunBehaviorReply::Rejected {
            version: RUN_BEHAVIOR_VERSION,
            code: "unknown_bot".into(),
            message: "no bot 'x'".into(),
        };
        let json = String::from_utf8(encode(&reply)).unwrap();
        assert!(json.contains(r#""outcome":"rejected""#), "{json}");
        assert_eq!(decode::<RunBehaviorReply>(json.as_bytes()).unwrap(), reply);
        let refused = HttpJobResult::CredentialsRefused {
            message: "m".into(),
        };
        let json = String::from_utf8(encode(&refused)).unwrap();
        assert_eq!(json, r#"{"outcome":"credentials_refused","message":"m"}"#);
    }

    /// An HTTP job with several fields missing or mistyped names them all, each with its path.
    #[test]
    fn http_jobs_name_every_missing_or_mistyped_field() {
        let err = decode_http_job(br#"{"version": 1}"#).unwrap_err();
        assert_eq!(err, "method: required; url: required");
        let err = decode_http_job(
            br#"{"version": "1", "method": 5, "url": "https://a.example/", "headers": [["a", "b"], ["c"], 7], "body": [], "account_id": "42", "ignore_ssl_validation": "no", "later": 1}"#,
        )
        .unwrap_err();
        let fields: Vec<&str> = err
            .split("; ")
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "version",
                "method",
                "headers[1]",
                "headers[2]",
                "body",
                "account_id",
                "ignore_ssl_validation"
            ],
            "{err}"
        );
        assert!(decode_http_job(b"[]").unwrap_err().contains("JSON object"));
        assert!(decode_http_job(b"{").unwrap_err().starts_with("not JSON"));
        // A valid job reads as serde reads it; unknown fields are ignored as serde ignores them.
        for job in [
            r#"{"version":1,"method":"GET","url":"https://a.example/"}"#,
            r#"{"version":1,"method":"POST","url":"https://a.example/","headers":[["X-A","1"],["X-A","2"]],"body":"x","account_id":42,"ignore_ssl_validation":true,"added_later":{}}"#,
        ] {
            assert_eq!(
                decode_http_job(job.as_bytes()).unwrap(),
                decode::<HttpJob>(job.as_bytes()).unwrap(),
                "{job}"
            );
        }
    }

    /// The request/reply examples of `docs/jobs.md` (`json http-job`, `json http-job-result`,
    /// `json run-behavior-request`, `json run-behavior-reply` blocks and the `nats req` lines for
    /// these subjects) decode into the types, and re-encode to the same JSON.
    #[test]
    fn request_reply_examples_in_jobs_md_decode() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/jobs.md");
        let text = std::fs::read_to_string(path).unwrap();
        let mut blocks: Vec<(String, String)> = Vec::new();
        let mut current: Option<(String, String)> = None;
        for line in text.lines() {
            match (&mut current, line.strip_prefix("```")) {
                (None, Some(info)) => current = Some((info.trim().to_owned(), String::new())),
                (Some(_), Some(_)) => blocks.push(current.take().unwrap()),
                (Some((_, body)), None) => body.push_str(&format!("{line}\n")),
                (None, None) => {}
            }
        }
        fn round_trip<T: Serialize + for<'a> Deserialize<'a>>(body: &str) {
            let value: T = decode(body.trim().as_bytes()).unwrap_or_else(|e| panic!("{e}: {body}"));
            let again: serde_json::Value = serde_json::from_slice(&encode(&value)).unwrap();
            let given: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(again, given, "{body}");
        }
        let mut seen = [0; 4];
        for (info, body) in &blocks {
            match info.as_str() {
                "json http-job" => {
                    seen[0] += 1;
                    round_trip::<HttpJob>(body)
                }
                "json http-job-result" => {
                    seen[1] += 1;
                    round_trip::<HttpJobResult>(body)
                }
                "json run-behavior-request" => {
                    seen[2] += 1;
                    round_trip::<RunBehaviorRequest>(body)
                }
                "json run-behavior-reply" => {
                    seen[3] += 1;
                    round_trip::<RunBehaviorReply>(body)
                }
                "sh" => {
                    for line in body.lines() {
                        let Some(rest) = line.strip_prefix("nats req ") else {
                            continue;
                        };
                        let subject = rest.split_whitespace().next().unwrap();
                        let payload =
                            &rest[rest.find('\'').unwrap() + 1..rest.rfind('\'').unwrap()];
                        let subjects = Subjects::default();
                        if subject == subjects.outbound_http() {
                            decode::<HttpJob>(payload.as_bytes())
                                .unwrap_or_else(|e| panic!("{e}: {line}"));
                        } else if subject == subjects.behavior_run() {
                            decode::<RunBehaviorRequest>(payload.as_bytes())
                                .unwrap_or_else(|e| panic!("{e}: {line}"));
                        }
                    }
                }
                _ => {}
            }
        }
        assert_eq!(seen.map(|n| n > 0), [true; 4], "{seen:?}");
    }
}
