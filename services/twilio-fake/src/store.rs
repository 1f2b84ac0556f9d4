//! The fake's memory: created messages, every request received, every status callback
//! attempted, and the fault settings. One mutex, never held across an `.await`.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};

use crate::error::xml_escape;
use crate::faults::{FaultState, NumberRule};
use crate::openapi::Violation;

/// Most messages and callback attempts kept: a sandbox left running for days stays bounded.
pub const MAX_KEPT: usize = 100_000;

/// The API version every resource reports.
pub const API_VERSION: &str = "2010-04-01";

/// A message created through the API.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// `SM…` or `MM…`.
    pub sid: String,
    /// The owning account.
    pub account_sid: String,
    /// Recipient as given.
    pub to: String,
    /// Sender; `None` until a Messaging Service picks one.
    pub from: Option<String>,
    /// `MG…` when sent through a Messaging Service.
    pub messaging_service_sid: Option<String>,
    /// Text ("" for media only).
    pub body: String,
    /// `MediaUrl`s in the order given.
    pub media_urls: Vec<String>,
    /// Current status (`queued`, `accepted`, `sent`, `delivered`, …).
    pub status: String,
    /// Segments as the API reports them (0 while a Messaging Service has not sent it).
    pub num_segments: usize,
    /// Asynchronous error code once failed/undelivered.
    pub error_code: Option<u32>,
    /// Its message.
    pub error_message: Option<String>,
    /// Creation time.
    pub date_created: OffsetDateTime,
    /// Last status change.
    pub date_updated: OffsetDateTime,
    /// When it was sent.
    pub date_sent: Option<OffsetDateTime>,
    /// `StatusCallback` as given.
    pub status_callback: Option<String>,
    /// The form fields of the create, in order (repeats kept).
    pub params: Vec<(String, String)>,
    /// How the create was answered when accept-then-fail applied (`"status 500"`, `"dropped"`,
    /// `"slow 2000 ms"`).
    pub answered_with: Option<String>,
    /// From when list answers include it (its creation, unless a `list_lag_ms` fault applied).
    pub listable_at: OffsetDateTime,
}

impl StoredMessage {
    /// `/2010-04-01/Accounts/AC…/Messages/SM…` plus the suffix.
    pub fn uri(&self, suffix: &str) -> String {
        format!(
            "/{API_VERSION}/Accounts/{}/Messages/{}{suffix}",
            self.account_sid, self.sid
        )
    }

    /// The `api.v2010.account.message` resource, properties in the order the real API sends.
    pub fn to_json(&self) -> Value {
        json!({
            "body": self.body,
            "num_segments": self.num_segments.to_string(),
            "direction": "outbound-api",
            "from": self.from,
            "date_updated": rfc2822(self.date_updated),
            "price": null,
            "error_message": self.error_message,
            "uri": self.uri(".json"),
            "account_sid": self.account_sid,
            "num_media": self.media_urls.len().to_string(),
            "to": self.to,
            "date_created": rfc2822(self.date_created),
            "status": self.status,
            "sid": self.sid,
            "date_sent": self.date_sent.map(rfc2822),
            "messaging_service_sid": self.messaging_service_sid,
            "error_code": self.error_code,
            "price_unit": "USD",
            "api_version": API_VERSION,
            "subresource_uris": {
                "media": format!("{}/Media.json", self.uri("")),
            },
        })
    }

    /// The `<Message>` element of the XML representation (URLs without the `.json` suffix).
    pub fn to_xml(&self) -> String {
        let text = |name: &str, value: Option<&str>| match value {
            Some(v) => format!("<{name}>{}</{name}>", xml_escape(v)),
            None => format!("<{name}/>"),
        };
        let date_sent = self.date_sent.map(rfc2822);
        let error_code = self.error_code.map(|c| c.to_string());
        [
            "<Message>".to_owned(),
            text("Sid", Some(&self.sid)),
            text("DateCreated", Some(&rfc2822(self.date_created))),
            text("DateUpdated", Some(&rfc2822(self.date_updated))),
            text("DateSent", date_sent.as_deref()),
            text("AccountSid", Some(&self.account_sid)),
            text("To", Some(&self.to)),
            text("From", self.from.as_deref()),
            text("MessagingServiceSid", self.messaging_service_sid.as_deref()),
            text("Body", Some(&self.body)),
            text("Status", Some(&self.status)),
            text("NumSegments", Some(&self.num_segments.to_string())),
            text("NumMedia", Some(&self.media_urls.len().to_string())),
            text("Direction", Some("outbound-api")),
            text("ApiVersion", Some(API_VERSION)),
            text("Price", None),
            text("PriceUnit", Some("USD")),
            text("ErrorCode", error_code.as_deref()),
            text("ErrorMessage", self.error_message.as_deref()),
            text("Uri", Some(&self.uri(""))),
            format!(
                "<SubresourceUris><Media>{}/Media</Media></SubresourceUris>",
                self.uri("")
            ),
            "</Message>".to_owned(),
        ]
        .concat()
    }

    /// What `/_fake/messages` shows: the resource plus what the fake knows besides.
    pub fn admin_view(&self) -> Value {
        json!({
            "message": self.to_json(),
            "media_urls": self.media_urls,
            "status_callback": self.status_callback,
            "params": self.params,
            "answered_with": self.answered_with,
            "listable_at": rfc3339(self.listable_at),
        })
    }
}

/// One request received on the API (admin requests are not recorded).
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// Sequence number, from 1.
    pub id: u64,
    /// When it arrived (RFC 3339).
    pub timestamp: String,
    /// `GET`, `POST`…
    pub method: String,
    /// Path as received (percent-encoded).
    pub path: String,
    /// Raw query string ("" when none).
    pub query: String,
    /// Decoded query parameters in order, repeats kept.
    pub query_params: Vec<(String, String)>,
    /// Decoded form fields in order, repeats kept (empty for non-form bodies).
    pub form: Vec<(String, String)>,
    /// Request headers in order, lower-case names, without `Authorization`.
    pub headers: Vec<(String, String)>,
    /// User of the Basic credentials, if any.
    pub auth_user: Option<String>,
    /// `operationId` of the matched OpenAPI operation.
    pub operation: Option<String>,
    /// Whether the OpenAPI check ran (false when no description was loaded).
    pub openapi_checked: bool,
    /// What the OpenAPI check found.
    pub openapi_violations: Vec<Violation>,
    /// Status of the answer (`None` while in flight or when the connection was dropped).
    pub response_status: Option<u16>,
    /// The connection was closed without an answer (accept-then-fail `drop`).
    pub connection_dropped: bool,
    /// The injected fault that shaped the answer, if any.
    pub fault: Option<String>,
}

/// One status callback attempt.
#[derive(Debug, Clone, Serialize)]
pub struct CallbackAttempt {
    /// The message it reports on.
    pub message_sid: String,
    /// Where it was sent.
    pub url: String,
    /// `MessageStatus` it carried.
    pub status: String,
    /// The form fields sent, in order.
    pub params: Vec<(String, String)>,
    /// `X-Twilio-Signature` sent.
    pub signature: String,
    /// When it was attempted (RFC 3339).
    pub timestamp: String,
    /// Status of the receiver's answer.
    pub response_status: Option<u16>,
    /// Transport error, when there was no answer.
    pub error: Option<String>,
}

/// Everything mutable.
#[derive(Debug)]
pub struct Store {
    /// Messages in creation order (at most [`MAX_KEPT`], the oldest dropped first).
    pub messages: VecDeque<StoredMessage>,
    /// Recent requests, oldest first.
    pub requests: VecDeque<RequestRecord>,
    /// Sequence number of the last request recorded.
    pub last_request_id: u64,
    /// Most requests kept.
    pub request_capacity: usize,
    /// Callback attempts in order (at most [`MAX_KEPT`]).
    pub callbacks: VecDeque<CallbackAttempt>,
    /// Global faults and their generator.
    pub faults: FaultState,
    /// Rules per number (E.164 as given in `To`).
    pub numbers: BTreeMap<String, NumberRule>,
}

impl Store {
    /// An empty store.
    pub fn new(seed: u64, request_capacity: usize) -> Store {
        Store {
            messages: VecDeque::new(),
            requests: VecDeque::new(),
            last_request_id: 0,
            request_capacity: request_capacity.max(1),
            callbacks: VecDeque::new(),
            faults: FaultState::new(seed),
            numbers: BTreeMap::new(),
        }
    }

    /// Forgets messages, requests, callbacks, faults and number rules.
    pub fn reset(&mut self) {
        self.messages.clear();
        self.requests.clear();
        self.callbacks.clear();
        self.faults.reset();
        self.numbers.clear();
    }

    /// Records a request and returns its id.
    pub fn push_request(&mut self, mut record: RequestRecord) -> u64 {
        self.last_request_id += 1;
        record.id = self.last_request_id;
        if self.requests.len() >= self.request_capacity {
            self.requests.pop_front();
        }
        self.requests.push_back(record);
        self.last_request_id
    }

    /// The record with `id`, if still kept.
    pub fn request_mut(&mut self, id: u64) -> Option<&mut RequestRecord> {
        self.requests.iter_mut().rev().find(|r| r.id == id)
    }

    /// Keeps a created message.
    pub fn push_message(&mut self, message: StoredMessage) {
        if self.messages.len() >= MAX_KEPT {
            self.messages.pop_front();
        }
        self.messages.push_back(message);
    }

    /// Keeps a callback attempt.
    pub fn push_callback(&mut self, attempt: CallbackAttempt) {
        if self.callbacks.len() >= MAX_KEPT {
            self.callbacks.pop_front();
        }
        self.callbacks.push_back(attempt);
    }

    /// A message by SID within an account. Searched newest first: the messages looked up most
    /// (each status step of a message just created) are at the back, and a search from the
    /// front would cost every lookup the whole history under the store's lock.
    pub fn message_mut(&mut self, account: &str, sid: &str) -> Option<&mut StoredMessage> {
        self.messages
            .iter_mut()
            .rev()
            .find(|m| m.sid == sid && m.account_sid == account)
    }
}

/// RFC 2822 in GMT, as Twilio writes dates: `Thu, 24 Aug 2023 05:01:45 +0000`.
pub fn rfc2822(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc2822)
        .unwrap_or_default()
}

/// RFC 3339 in UTC.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_look_like_twilio() {
        let t = time::macros::datetime!(2023-08-24 05:01:45 UTC);
        assert_eq!(rfc2822(t), "Thu, 24 Aug 2023 05:01:45 +0000");
    }
}
