//! The Twilio REST client the outbound service sends with (docs/twilio.md §3, §4): Messages create,
//! fetch and list, Lookup v1 and v2, an error type that says whether a failure may be retried and
//! whether a create may already have happened, and the backoff arithmetic for those retries.
//!
//! Twilio has no idempotency key for Messages. A create that failed *after* the request went out
//! (a 5xx, a read timeout, a broken connection) is therefore ambiguous: the message may exist and
//! may be on its way. [`TwilioError::is_ambiguous`] marks those cases; the caller checks with
//! [`TwilioClient::list_messages`] before sending again. Only failures before sending
//! ([`TwilioError::Connect`]) and 429s are always safe to repeat.

use std::fmt;
use std::time::{Duration, SystemTime};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::Rng;
use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value as Json;
use time::OffsetDateTime;
use tracing::Instrument as _;

use crate::errors::{ApiError, ErrorKind};
use crate::ids::{AccountSid, E164, MessageSid, MessagingServiceSid};

/// Where the Messages API lives.
pub const DEFAULT_API_BASE: &str = "https://api.twilio.com";
/// Where the Lookup API lives.
pub const DEFAULT_LOOKUPS_BASE: &str = "https://lookups.twilio.com";
/// Version segment of every Messages path.
const API_VERSION: &str = "2010-04-01";
/// Lookup v1's answer for a number it does not know (with HTTP 404).
const NOT_FOUND: u32 = 20404;

/// What a path segment keeps unescaped (RFC 3986 unreserved); `+` in particular becomes `%2B`.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How to reach Twilio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Base URL of the Messages API, without a trailing slash (the sandbox's `twilio-fake`
    /// serves both APIs on one address).
    pub api_base: String,
    /// Base URL of the Lookup API, without a trailing slash.
    pub lookups_base: String,
    /// Bound on opening the TCP and TLS connection. A request that fails here was never sent.
    pub connect_timeout: Duration,
    /// Bound on the whole request, connect to last byte of the answer.
    pub request_timeout: Duration,
    /// `User-Agent` of every request.
    pub user_agent: String,
    /// Writes the trace context of the current span (each request's `twilio.request` client
    /// span) into the request's headers, W3C `traceparent`
    /// (`switchboard_telemetry::inject_http_current`). None: no trace headers.
    pub propagate: Option<Propagate>,
    /// Told of every request once it is answered or failed (the outbound service's
    /// `http_client_request_duration_seconds`). None: nothing is told.
    pub observe: Option<Observe>,
}

/// What [`ClientConfig::observe`] is told of a request: never its path or query (they may hold
/// a phone number).
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub operation: Operation,
    pub method: &'a str,
    pub host: &'a str,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// From sending to the whole answer read (or the failure).
    pub took: Duration,
}

/// A hook told of each request ([`ClientConfig::observe`]).
#[derive(Clone)]
pub struct Observe(pub std::sync::Arc<dyn Fn(&Observed<'_>) + Send + Sync>);

impl fmt::Debug for Observe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Observe(..)")
    }
}

impl PartialEq for Observe {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Observe {}

/// A hook writing trace context into a request's headers ([`ClientConfig::propagate`]).
#[derive(Debug, Clone, Copy)]
pub struct Propagate(pub fn(&mut reqwest::header::HeaderMap));

impl PartialEq for Propagate {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::fn_addr_eq(self.0, other.0)
    }
}

impl Eq for Propagate {}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            api_base: DEFAULT_API_BASE.to_owned(),
            lookups_base: DEFAULT_LOOKUPS_BASE.to_owned(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            user_agent: concat!("switchboard-twilio/", env!("CARGO_PKG_VERSION")).to_owned(),
            propagate: None,
            observe: None,
        }
    }
}

/// Who the requests are made as: an account's SID and auth token, or an API key of that account.
/// The secret is kept out of `Debug` output.
#[derive(Debug, Clone)]
pub struct Credentials {
    account_sid: AccountSid,
    username: String,
    secret: SecretString,
}

impl Credentials {
    /// The account's own SID and auth token.
    pub fn auth_token(account_sid: AccountSid, auth_token: impl Into<String>) -> Credentials {
        Credentials {
            username: account_sid.as_str().to_owned(),
            account_sid,
            secret: SecretString::from(auth_token.into()),
        }
    }

    /// An API key (`SK…` and its secret) acting for `account_sid`.
    pub fn api_key(
        account_sid: AccountSid,
        key_sid: impl Into<String>,
        key_secret: impl Into<String>,
    ) -> Credentials {
        Credentials {
            account_sid,
            username: key_sid.into(),
            secret: SecretString::from(key_secret.into()),
        }
    }

    /// The account whose resources are addressed (the `{AccountSid}` of the paths).
    pub fn account_sid(&self) -> &AccountSid {
        &self.account_sid
    }
}

/// Which request failed; decides whether a failure after sending is ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `POST …/Messages.json`: not idempotent.
    CreateMessage,
    /// `GET …/Messages/{sid}.json`.
    FetchMessage,
    /// `GET …/Messages.json`.
    ListMessages,
    /// `GET /v1/PhoneNumbers/{number}`.
    LookupV1,
    /// `GET /v2/PhoneNumbers/{number}`.
    LookupV2,
}

impl Operation {
    /// True for the one request that creates something (and may duplicate it when repeated).
    pub fn is_create(self) -> bool {
        self == Operation::CreateMessage
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::CreateMessage => "create message",
            Operation::FetchMessage => "fetch message",
            Operation::ListMessages => "list messages",
            Operation::LookupV1 => "lookup v1",
            Operation::LookupV2 => "lookup v2",
        })
    }
}

/// Why a request to Twilio failed. URLs are stripped from the transport errors: Lookup paths
/// carry phone numbers, which must not reach the logs.
#[derive(Debug, thiserror::Error)]
pub enum TwilioError {
    /// Twilio answered with an error status.
    #[error("{op}: {error}")]
    Api {
        op: Operation,
        error: ApiError,
        /// The `Retry-After` header, when the answer had one (seconds or an HTTP date).
        retry_after: Option<Duration>,
    },
    /// No connection could be made: the request was never sent, so it is always safe to repeat.
    #[error("{op}: could not connect to Twilio; the request was not sent")]
    Connect {
        op: Operation,
        #[source]
        source: reqwest::Error,
    },
    /// The request was sent but no complete answer came within the timeout.
    #[error("{op}: no answer from Twilio within the timeout")]
    Timeout {
        op: Operation,
        #[source]
        source: reqwest::Error,
    },
    /// The connection failed after the request was (or may have been) sent.
    #[error("{op}: the connection to Twilio failed during the request")]
    Io {
        op: Operation,
        #[source]
        source: reqwest::Error,
    },
    /// Twilio answered with a success status and a body this client cannot read.
    #[error("{op}: unreadable answer from Twilio (HTTP {status})")]
    Decode {
        op: Operation,
        status: u16,
        #[source]
        source: serde_json::Error,
    },
    /// The HTTP client could not be set up (no rustls crypto provider, bad configuration).
    #[error("Twilio client: {0}")]
    Setup(String),
}

impl TwilioError {
    /// The request that failed (`None` for [`TwilioError::Setup`]).
    pub fn operation(&self) -> Option<Operation> {
        match self {
            TwilioError::Api { op, .. }
            | TwilioError::Connect { op, .. }
            | TwilioError::Timeout { op, .. }
            | TwilioError::Io { op, .. }
            | TwilioError::Decode { op, .. } => Some(*op),
            TwilioError::Setup(_) => None,
        }
    }

    /// Twilio's error answer, if there was one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            TwilioError::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether Twilio answered that the sender's queue is full (21611, `ErrorKind::Throttled`):
    /// retryable later, though not a 429.
    pub fn is_throttled(&self) -> bool {
        self.api_error()
            .is_some_and(|e| e.kind() == ErrorKind::Throttled)
    }

    /// Whether repeating the request later can succeed: 429/20429 and 5xx answers, and every
    /// transport failure. For a create, check [`TwilioError::is_ambiguous`] first.
    pub fn is_retryable(&self) -> bool {
        match self {
            TwilioError::Api { error, .. } => error.kind() == ErrorKind::Retryable,
            TwilioError::Connect { .. } | TwilioError::Timeout { .. } | TwilioError::Io { .. } => {
                true
            }
            TwilioError::Decode { .. } | TwilioError::Setup(_) => false,
        }
    }

    /// True when a create failed in a way that leaves open whether Twilio created the message:
    /// a 5xx, a timeout or connection failure after sending, or a success answer that could not
    /// be read. Repeating it blindly may send the SMS twice.
    pub fn is_ambiguous(&self) -> bool {
        let create = self.operation().is_some_and(Operation::is_create);
        create
            && match self {
                TwilioError::Api { error, .. } => error.status >= 500,
                TwilioError::Timeout { .. } | TwilioError::Io { .. } => true,
                TwilioError::Decode { status, .. } => (200..300).contains(status),
                TwilioError::Connect { .. } | TwilioError::Setup(_) => false,
            }
    }

    /// How long Twilio asked to wait, when it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TwilioError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// True when the recipient has opted out (21610).
    pub fn is_opt_out(&self) -> bool {
        self.api_error().is_some_and(ApiError::is_opt_out)
    }

    fn transport(op: Operation, error: reqwest::Error) -> TwilioError {
        let source = error.without_url();
        if source.is_connect() {
            TwilioError::Connect { op, source }
        } else if source.is_timeout() {
            TwilioError::Timeout { op, source }
        } else {
            TwilioError::Io { op, source }
        }
    }
}

/// Who a message is sent from: exactly one of a sender or a Messaging Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// `From`: an E.164 number, an alphanumeric sender ID or a channel address.
    From(String),
    /// `MessagingServiceSid`: Twilio picks the sender from the service's pool.
    MessagingService(MessagingServiceSid),
}

/// The form of `POST …/Messages.json` (docs/twilio.md §3), in the order it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateMessage {
    /// `To`.
    pub to: E164,
    /// `From` or `MessagingServiceSid`.
    pub sender: Sender,
    /// `Body`, up to 1600 characters.
    pub body: Option<String>,
    /// `MediaUrl`, sent as one repeated key per URL, in order (at most 10).
    pub media_urls: Vec<String>,
    /// `StatusCallback`: where Twilio posts the delivery status changes.
    pub status_callback: Option<String>,
    /// `ValidityPeriod` in seconds (1..=36000): how long the message may wait in Twilio's queue.
    pub validity_period: Option<u32>,
    /// `SmartEncoded`: replace look-alike Unicode characters to stay in GSM-7.
    pub smart_encoded: Option<bool>,
    /// `Attempt`: informational attempt counter Twilio records with the message.
    pub attempt: Option<u32>,
    /// Any other documented parameter (`ContentSid`, `SendAt`, …), appended as given.
    pub extra: Vec<(String, String)>,
}

impl CreateMessage {
    /// A message with nothing but its addresses; set `body` and/or `media_urls` next.
    pub fn new(to: E164, sender: Sender) -> CreateMessage {
        CreateMessage {
            to,
            sender,
            body: None,
            media_urls: Vec::new(),
            status_callback: None,
            validity_period: None,
            smart_encoded: None,
            attempt: None,
            extra: Vec::new(),
        }
    }

    /// The `application/x-www-form-urlencoded` body.
    pub fn to_form(&self) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("To", self.to.as_str());
        match &self.sender {
            Sender::From(from) => form.append_pair("From", from),
            Sender::MessagingService(sid) => form.append_pair("MessagingServiceSid", sid.as_str()),
        };
        if let Some(body) = &self.body {
            form.append_pair("Body", body);
        }
        for url in &self.media_urls {
            form.append_pair("MediaUrl", url);
        }
        if let Some(url) = &self.status_callback {
            form.append_pair("StatusCallback", url);
        }
        if let Some(seconds) = self.validity_period {
            form.append_pair("ValidityPeriod", &seconds.to_string());
        }
        if let Some(smart) = self.smart_encoded {
            form.append_pair("SmartEncoded", if smart { "true" } else { "false" });
        }
        if let Some(attempt) = self.attempt {
            form.append_pair("Attempt", &attempt.to_string());
        }
        for (key, value) in &self.extra {
            form.append_pair(key, value);
        }
        form.finish()
    }
}

/// Filters of `GET …/Messages.json`, and how far to follow its pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    /// `To`.
    pub to: Option<E164>,
    /// `From`.
    pub from: Option<String>,
    /// `DateSent>`, sent as `YYYY-MM-DDTHH:MM:SSZ`. Twilio compares sent dates: a message still
    /// queued may not have one yet, so an ambiguity check should not rely on this filter alone.
    pub date_sent_after: Option<OffsetDateTime>,
    /// Applied here, not by Twilio: keep only messages created at or after this time (and those
    /// without a readable `date_created`), and stop paging at the first older one, since Twilio
    /// lists newest first. This is the filter for the ambiguity check: it sees queued messages.
    pub created_after: Option<OffsetDateTime>,
    /// `PageSize` (1..=1000).
    pub page_size: u32,
    /// Pages fetched at most; [`MessageList::complete`] says whether the list ended before.
    pub max_pages: u32,
}

impl Default for ListFilter {
    fn default() -> Self {
        ListFilter {
            to: None,
            from: None,
            date_sent_after: None,
            created_after: None,
            page_size: 50,
            max_pages: 5,
        }
    }
}

/// The messages a list request found, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageList {
    pub messages: Vec<Message>,
    /// False when [`ListFilter::max_pages`] stopped the paging before the last page.
    pub complete: bool,
}

/// A Message resource (`api.v2010.account.message`). Every field but `sid` may be missing or
/// null; fields this struct does not know are kept in `raw`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Message {
    pub sid: MessageSid,
    pub account_sid: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub body: Option<String>,
    pub status: Option<MessageStatus>,
    /// `inbound`, `outbound-api`, `outbound-call` or `outbound-reply`.
    pub direction: Option<String>,
    /// A count, as Twilio writes it: a string.
    pub num_segments: Option<String>,
    pub num_media: Option<String>,
    pub price: Option<String>,
    pub price_unit: Option<String>,
    #[serde(default, deserialize_with = "lenient_code")]
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    pub api_version: Option<String>,
    pub uri: Option<String>,
    /// RFC 2822, e.g. `Thu, 24 Aug 2023 05:01:45 +0000`; see [`Message::created_at`].
    pub date_created: Option<String>,
    pub date_updated: Option<String>,
    pub date_sent: Option<String>,
    /// The resource as Twilio sent it.
    #[serde(skip)]
    pub raw: Json,
}

impl Message {
    /// `num_segments` as a number.
    pub fn segments(&self) -> Option<u32> {
        self.num_segments.as_deref()?.trim().parse().ok()
    }

    /// `date_created` parsed.
    pub fn created_at(&self) -> Option<OffsetDateTime> {
        parse_rfc2822(self.date_created.as_deref()?)
    }

    /// `date_sent` parsed.
    pub fn sent_at(&self) -> Option<OffsetDateTime> {
        parse_rfc2822(self.date_sent.as_deref()?)
    }
}

/// `message_enum_status`, plus `Unknown` for values added after this was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Queued,
    Sending,
    Sent,
    Failed,
    Delivered,
    Undelivered,
    Receiving,
    Received,
    Accepted,
    Scheduled,
    Read,
    PartiallyDelivered,
    Canceled,
    #[serde(other)]
    Unknown,
}

impl MessageStatus {
    /// States no later callback moves a message out of (docs/twilio.md §1.4).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            MessageStatus::Delivered
                | MessageStatus::Undelivered
                | MessageStatus::Failed
                | MessageStatus::Read
                | MessageStatus::Canceled
        )
    }
}

/// A lookup's answer: the number's data, or Twilio does not know the number (Lookup v1 answers
/// an invalid number with 404/20404; that is an answer about the number, not an outage).
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<T> {
    Found(T),
    NotFound(ApiError),
}

/// Lookup v1 `PhoneNumber`. `carrier` and `caller_name` are null unless requested.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LookupV1 {
    pub phone_number: Option<String>,
    pub country_code: Option<String>,
    pub national_format: Option<String>,
    pub carrier: Option<CarrierV1>,
    pub caller_name: Option<CallerName>,
    pub add_ons: Option<Json>,
    pub url: Option<String>,
    /// The resource as Twilio sent it.
    #[serde(skip)]
    pub raw: Json,
}

/// Lookup v1 `carrier`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CarrierV1 {
    pub mobile_country_code: Option<String>,
    pub mobile_network_code: Option<String>,
    pub name: Option<String>,
    /// `landline`, `mobile` or `voip`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "lenient_code")]
    pub error_code: Option<i64>,
}

/// `caller_name` of both Lookup versions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CallerName {
    pub caller_name: Option<String>,
    /// `BUSINESS`, `CONSUMER` or `UNDETERMINED`.
    pub caller_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_code")]
    pub error_code: Option<i64>,
}

/// Lookup v2 `PhoneNumber`. An invalid number is a normal answer: `valid: Some(false)` with
/// `validation_errors`. Packages that were not requested are null.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LookupV2 {
    pub calling_country_code: Option<String>,
    pub country_code: Option<String>,
    pub phone_number: Option<String>,
    pub national_format: Option<String>,
    pub valid: Option<bool>,
    /// `TOO_SHORT`, `TOO_LONG`, `INVALID_BUT_POSSIBLE`, `INVALID_COUNTRY_CODE`, …
    #[serde(default, deserialize_with = "null_as_empty")]
    pub validation_errors: Vec<String>,
    pub caller_name: Option<CallerName>,
    pub line_type_intelligence: Option<LineTypeIntelligence>,
    pub sim_swap: Option<Json>,
    pub call_forwarding: Option<Json>,
    pub line_status: Option<Json>,
    pub identity_match: Option<Json>,
    pub reassigned_number: Option<Json>,
    pub sms_pumping_risk: Option<Json>,
    pub phone_number_quality_score: Option<Json>,
    pub pre_fill: Option<Json>,
    pub url: Option<String>,
    /// The resource as Twilio sent it.
    #[serde(skip)]
    pub raw: Json,
}

/// Lookup v2 `line_type_intelligence`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LineTypeIntelligence {
    pub mobile_country_code: Option<String>,
    pub mobile_network_code: Option<String>,
    pub carrier_name: Option<String>,
    /// `landline`, `mobile`, `fixedVoip`, `nonFixedVoip`, `tollFree`, … or `unknown`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "lenient_code")]
    pub error_code: Option<i64>,
}

/// Types that keep the JSON they were read from.
trait KeepRaw: DeserializeOwned {
    fn set_raw(&mut self, raw: Json);
}

impl KeepRaw for Message {
    fn set_raw(&mut self, raw: Json) {
        self.raw = raw;
    }
}

impl KeepRaw for LookupV1 {
    fn set_raw(&mut self, raw: Json) {
        self.raw = raw;
    }
}

impl KeepRaw for LookupV2 {
    fn set_raw(&mut self, raw: Json) {
        self.raw = raw;
    }
}

/// The paging envelope of list answers.
#[derive(Deserialize)]
struct MessagePage {
    #[serde(default, deserialize_with = "null_as_empty")]
    messages: Vec<Json>,
    next_page_uri: Option<String>,
}

/// Talks to Twilio over one pooled HTTP client; cheap to clone.
#[derive(Debug, Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    api_base: String,
    lookups_base: String,
    propagate: Option<Propagate>,
    observe: Option<Observe>,
}

impl TwilioClient {
    /// Builds the client. The process must have a rustls crypto provider installed
    /// (`rustls::crypto::ring::default_provider().install_default()` first thing in `main`).
    pub fn new(config: ClientConfig) -> Result<TwilioClient, TwilioError> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(TwilioError::Setup(
                "no rustls crypto provider installed; call \
                 rustls::crypto::ring::default_provider().install_default() at start-up"
                    .into(),
            ));
        }
        let http = reqwest::Client::builder()
            // Twilio does not redirect API calls; following one could turn a POST into a GET or
            // send the credentials elsewhere. A 3xx is reported as an error instead.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(config.user_agent)
            .build()
            .map_err(|e| TwilioError::Setup(e.to_string()))?;
        Ok(TwilioClient {
            http,
            api_base: config.api_base.trim_end_matches('/').to_owned(),
            lookups_base: config.lookups_base.trim_end_matches('/').to_owned(),
            propagate: config.propagate,
            observe: config.observe,
        })
    }

    /// `POST /2010-04-01/Accounts/{sid}/Messages.json`: creates (and sends) a message.
    pub async fn create_message(
        &self,
        creds: &Credentials,
        message: &CreateMessage,
    ) -> Result<Message, TwilioError> {
        let op = Operation::CreateMessage;
        let url = format!(
            "{}/{API_VERSION}/Accounts/{}/Messages.json",
            self.api_base,
            creds.account_sid()
        );
        let request = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(message.to_form());
        let (status, json) = self.execute(op, creds, request).await?;
        typed(op, status, json)
    }

    /// `GET /2010-04-01/Accounts/{sid}/Messages/{MessageSid}.json`.
    pub async fn fetch_message(
        &self,
        creds: &Credentials,
        sid: &MessageSid,
    ) -> Result<Message, TwilioError> {
        let op = Operation::FetchMessage;
        let url = format!(
            "{}/{API_VERSION}/Accounts/{}/Messages/{sid}.json",
            self.api_base,
            creds.account_sid()
        );
        let (status, json) = self.execute(op, creds, self.http.get(url)).await?;
        typed(op, status, json)
    }

    /// `GET /2010-04-01/Accounts/{sid}/Messages.json` with filters, following `next_page_uri` up
    /// to `filter.max_pages` pages. The outbound service uses it after an ambiguous create to
    /// see whether the message exists.
    pub async fn list_messages(
        &self,
        creds: &Credentials,
        filter: &ListFilter,
    ) -> Result<MessageList, TwilioError> {
        let op = Operation::ListMessages;
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(to) = &filter.to {
            query.append_pair("To", to.as_str());
        }
        if let Some(from) = &filter.from {
            query.append_pair("From", from);
        }
        if let Some(after) = filter.date_sent_after {
            query.append_pair("DateSent>", &iso8601_utc(after));
        }
        query.append_pair("PageSize", &filter.page_size.clamp(1, 1000).to_string());
        let mut url = format!(
            "{}/{API_VERSION}/Accounts/{}/Messages.json?{}",
            self.api_base,
            creds.account_sid(),
            query.finish()
        );

        let mut messages = Vec::new();
        for _ in 0..filter.max_pages.max(1) {
            let (status, json) = self.execute(op, creds, self.http.get(&url)).await?;
            let page: MessagePage = serde_json::from_value(json)
                .map_err(|source| TwilioError::Decode { op, status, source })?;
            let mut reached_older = false;
            for item in page.messages {
                let message: Message = typed(op, status, item)?;
                match (filter.created_after, message.created_at()) {
                    (Some(after), Some(created)) if created < after => reached_older = true,
                    _ => messages.push(message),
                }
            }
            let next = page
                .next_page_uri
                .filter(|u| !u.is_empty() && !reached_older);
            match next {
                // Paths only: credentials never go to a host other than the configured one.
                Some(next) => url = format!("{}{}", self.api_base, path_of(&next)),
                None => {
                    return Ok(MessageList {
                        messages,
                        complete: true,
                    });
                }
            }
        }
        Ok(MessageList {
            messages,
            complete: false,
        })
    }

    /// `GET /v1/PhoneNumbers/{number}?Type=…&Type=…` (`carrier`, `caller-name`). A number Twilio
    /// does not know is [`Lookup::NotFound`], not an error.
    pub async fn lookup_v1(
        &self,
        creds: &Credentials,
        number: &str,
        types: &[&str],
    ) -> Result<Lookup<LookupV1>, TwilioError> {
        let query: Vec<String> = types
            .iter()
            .map(|t| format!("Type={}", encode_query_value(t)))
            .collect();
        self.lookup(Operation::LookupV1, creds, "v1", number, query.join("&"))
            .await
    }

    /// `GET /v2/PhoneNumbers/{number}?Fields=a,b`. An invalid number is a normal answer
    /// (`valid: false`).
    pub async fn lookup_v2(
        &self,
        creds: &Credentials,
        number: &str,
        fields: &[&str],
    ) -> Result<Lookup<LookupV2>, TwilioError> {
        let query = if fields.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = fields.iter().map(|f| encode_query_value(f)).collect();
            format!("Fields={}", list.join(","))
        };
        self.lookup(Operation::LookupV2, creds, "v2", number, query)
            .await
    }

    async fn lookup<T: KeepRaw>(
        &self,
        op: Operation,
        creds: &Credentials,
        version: &str,
        number: &str,
        query: String,
    ) -> Result<Lookup<T>, TwilioError> {
        let mut url = format!(
            "{}/{version}/PhoneNumbers/{}",
            self.lookups_base,
            utf8_percent_encode(number, PATH_SEGMENT)
        );
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        match self.execute(op, creds, self.http.get(url)).await {
            Ok((status, json)) => typed(op, status, json).map(Lookup::Found),
            Err(TwilioError::Api { error, .. })
                if error.status == 404 && error.code == NOT_FOUND =>
            {
                Ok(Lookup::NotFound(error))
            }
            Err(e) => Err(e),
        }
    }

    /// Sends with Basic auth and reads the whole answer: the JSON of a 2xx, or the error. Each
    /// request is a client span, `twilio.request`: the operation, method, host and answer (never
    /// the path or query, which may hold a phone number), whose context goes with the request
    /// when [`ClientConfig::propagate`] is set.
    async fn execute(
        &self,
        op: Operation,
        creds: &Credentials,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Json), TwilioError> {
        let mut request = request
            .basic_auth(&creds.username, Some(creds.secret.expose_secret()))
            .header(ACCEPT, "application/json")
            .build()
            .map_err(|e| TwilioError::transport(op, e))?;
        let span = tracing::info_span!(
            "twilio.request",
            otel.kind = "client",
            twilio.operation = %op,
            http.request.method = %request.method(),
            server.address = request.url().host_str().unwrap_or_default(),
            http.response.status_code = tracing::field::Empty,
            twilio.error_code = tracing::field::Empty,
        );
        if let Some(Propagate(propagate)) = self.propagate {
            span.in_scope(|| propagate(request.headers_mut()));
        }
        let method = request.method().clone();
        let host = request.url().host_str().unwrap_or_default().to_owned();
        let started = std::time::Instant::now();
        let answer = self.send(op, request).instrument(span.clone()).await;
        if let Some(Observe(observe)) = &self.observe {
            let status = match &answer {
                Ok((status, _)) => Some(*status),
                Err(TwilioError::Api { error, .. }) => Some(error.status),
                Err(TwilioError::Decode { status, .. }) => Some(*status),
                Err(_) => None,
            };
            observe(&Observed {
                operation: op,
                method: method.as_str(),
                host: &host,
                status,
                took: started.elapsed(),
            });
        }
        match &answer {
            Ok((status, _)) => {
                span.record("http.response.status_code", status);
            }
            Err(TwilioError::Api { error, .. }) => {
                span.record("http.response.status_code", error.status);
                span.record("twilio.error_code", error.code);
            }
            Err(_) => {}
        }
        answer
    }

    /// [`TwilioClient::execute`]'s request and answer.
    async fn send(
        &self,
        op: Operation,
        request: reqwest::Request,
    ) -> Result<(u16, Json), TwilioError> {
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| TwilioError::transport(op, e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body = response
            .bytes()
            .await
            .map_err(|e| TwilioError::transport(op, e))?;
        if !(200..300).contains(&status) {
            return Err(TwilioError::Api {
                op,
                error: ApiError::from_response(status, &body),
                retry_after,
            });
        }
        let json = serde_json::from_slice(&body).map_err(|source| TwilioError::Decode {
            op,
            status,
            source,
        })?;
        Ok((status, json))
    }
}

/// Reads `json` as `T` and keeps it beside.
fn typed<T: KeepRaw>(op: Operation, status: u16, json: Json) -> Result<T, TwilioError> {
    let mut value =
        T::deserialize(&json).map_err(|source| TwilioError::Decode { op, status, source })?;
    value.set_raw(json);
    Ok(value)
}

/// `/path?query` of an absolute or relative URI.
fn path_of(uri: &str) -> &str {
    match uri.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => uri,
    }
}

/// A query value, percent-encoded as a form value.
fn encode_query_value(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// `2024-05-01T12:00:00Z`, the way Twilio's helper libraries write date filters.
fn iso8601_utc(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    at.format(format).unwrap_or_default()
}

fn parse_rfc2822(value: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()
}

/// `Retry-After`: delay-seconds, or an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) turned into
/// the time left from `now` (zero when it is past).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok().map(Duration::from_secs);
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, format)
        .ok()?
        .assume_utc();
    let now = OffsetDateTime::from(now);
    Some(Duration::try_from(at - now).unwrap_or(Duration::ZERO))
}

/// Exponential backoff with full jitter: the delay before retry `n` (0-based) is uniform in
/// `[0, min(cap, base·2ⁿ)]`, unless Twilio said how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first retry's delay.
    pub base: Duration,
    /// Largest ceiling of any delay.
    pub cap: Duration,
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(30),
            max_attempts: 6,
        }
    }
}

impl Backoff {
    /// The ceiling `min(cap, base·2ⁿ)` of retry `n`'s delay.
    pub fn ceiling(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// How long to wait after `attempts_made` attempts (1 after the first failure) before the
    /// next, or `None` when the attempts are used up. A `retry_after` from Twilio is used as it is:
    /// the server's explicit instruction wins over the guess.
    pub fn delay<R: Rng + ?Sized>(
        &self,
        attempts_made: u32,
        retry_after: Option<Duration>,
        rng: &mut R,
    ) -> Option<Duration> {
        if attempts_made >= self.max_attempts {
            return None;
        }
        if let Some(wait) = retry_after {
            return Some(wait);
        }
        let ceiling = self.ceiling(attempts_made.saturating_sub(1));
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Some(Duration::from_nanos(rng.random_range(0..=nanos)))
    }

    /// [`Backoff::delay`] for `error`: `None` when it is not retryable. An ambiguous create is
    /// retryable here; the caller resolves the ambiguity (list the messages) before repeating.
    pub fn delay_for<R: Rng + ?Sized>(
        &self,
        attempts_made: u32,
        error: &TwilioError,
        rng: &mut R,
    ) -> Option<Duration> {
        if !error.is_retryable() {
            return None;
        }
        self.delay(attempts_made, error.retry_after(), rng)
    }
}

/// Twilio error codes: a number, a numeric string, or null.
fn lenient_code<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Option::<Json>::deserialize(d)? {
        Some(Json::Number(n)) => n.as_i64(),
        Some(Json::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// An array that Twilio may send as null.
fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(3000),
            max_attempts: 4,
        };
        let ceilings: Vec<u128> = (0..7).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3000, 3000]);
        assert_eq!(b.ceiling(200), b.cap, "no overflow for huge exponents");
        let huge = Backoff {
            base: Duration::MAX,
            cap: Duration::MAX,
            max_attempts: 2,
        };
        assert_eq!(huge.ceiling(40), Duration::MAX);
    }

    #[test]
    fn full_jitter_stays_under_the_ceiling_and_spreads() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(3),
            max_attempts: 100,
        };
        let mut rng = StdRng::seed_from_u64(42);
        for attempts in 1..10 {
            let ceiling = b.ceiling(attempts - 1);
            let delays: Vec<Duration> = (0..500)
                .map(|_| b.delay(attempts, None, &mut rng).unwrap())
                .collect();
            assert!(delays.iter().all(|d| *d <= ceiling), "attempt {attempts}");
            // Full jitter: both ends of the range are used, not a band around the ceiling.
            assert!(
                delays.iter().any(|d| *d < ceiling / 10),
                "attempt {attempts}"
            );
            assert!(
                delays.iter().any(|d| *d > ceiling * 9 / 10),
                "attempt {attempts}"
            );
        }
    }

    #[test]
    fn a_seed_gives_the_same_delays() {
        let b = Backoff::default();
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (1..b.max_attempts)
                .map(|n| b.delay(n, None, &mut rng).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn attempts_run_out_and_retry_after_wins() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            max_attempts: 3,
        };
        let mut rng = StdRng::seed_from_u64(1);
        assert!(b.delay(1, None, &mut rng).is_some());
        assert!(b.delay(2, None, &mut rng).is_some());
        assert_eq!(b.delay(3, None, &mut rng), None);
        assert_eq!(b.delay(3, Some(Duration::from_secs(5)), &mut rng), None);
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(5)), &mut rng),
            Some(Duration::from_secs(5)),
            "Retry-After is honoured even above the cap"
        );
    }

    #[test]
    fn retry_after_values() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        for bad in ["", "-1", "1.5", "soon", "Sunday, 06-Nov-94 08:49:37 GMT"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn create_form_repeats_media_url_in_order() {
        let mut m = CreateMessage::new(
            E164::parse("+14155551234").unwrap(),
            Sender::From("+15005550006".into()),
        );
        m.body = Some("Hi & bye +1".into());
        m.media_urls = vec![
            "https://e.x/a.jpg?x=1&y=2".into(),
            "https://e.x/b.png".into(),
        ];
        m.validity_period = Some(600);
        assert_eq!(
            m.to_form(),
            "To=%2B14155551234&From=%2B15005550006&Body=Hi+%26+bye+%2B1\
             &MediaUrl=https%3A%2F%2Fe.x%2Fa.jpg%3Fx%3D1%26y%3D2&MediaUrl=https%3A%2F%2Fe.x%2Fb.png\
             &ValidityPeriod=600"
        );
        let m = CreateMessage::new(
            E164::parse("+14155551234").unwrap(),
            Sender::MessagingService(
                MessagingServiceSid::parse("MG0123456789abcdef0123456789abcdef").unwrap(),
            ),
        );
        assert_eq!(
            m.to_form(),
            "To=%2B14155551234&MessagingServiceSid=MG0123456789abcdef0123456789abcdef"
        );
    }

    #[test]
    fn message_tolerates_nulls_unknown_fields_and_string_codes() {
        let json = serde_json::json!({
            "sid": "SM0123456789abcdef0123456789abcdef",
            "status": "partially_delivered",
            "num_segments": "3",
            "error_code": "30007",
            "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
            "date_sent": null,
            "body": null,
            "brand_new_field": {"x": 1}
        });
        let m: Message = typed(Operation::FetchMessage, 200, json.clone()).unwrap();
        assert_eq!(m.status, Some(MessageStatus::PartiallyDelivered));
        assert_eq!(m.segments(), Some(3));
        assert_eq!(m.error_code, Some(30007));
        assert_eq!(
            m.created_at().map(|t| t.unix_timestamp()),
            Some(1_692_853_305)
        );
        assert_eq!(m.sent_at(), None);
        assert_eq!(m.raw["brand_new_field"]["x"], 1);

        let m: Message = typed(
            Operation::FetchMessage,
            200,
            serde_json::json!({"sid": "MM0123456789abcdef0123456789abcdef", "status": "teleported"}),
        )
        .unwrap();
        assert_eq!(m.status, Some(MessageStatus::Unknown));
        assert!(!MessageStatus::Sent.is_terminal() && MessageStatus::Canceled.is_terminal());
    }

    #[test]
    fn next_page_uris_keep_only_the_path() {
        assert_eq!(
            path_of("/2010-04-01/A/Messages.json?Page=1"),
            "/2010-04-01/A/Messages.json?Page=1"
        );
        assert_eq!(path_of("https://evil.example/x?y=1"), "/x?y=1");
        assert_eq!(path_of("https://evil.example"), "/");
    }

    #[test]
    fn credentials_hide_the_secret() {
        let sid = AccountSid::parse("AC0123456789abcdef0123456789abcdef").unwrap();
        let c = Credentials::auth_token(sid.clone(), "s3cr3t-token");
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t-token"), "{shown}");
        assert!(
            shown.contains("AC0123456789abcdef0123456789abcdef"),
            "{shown}"
        );
        let k = Credentials::api_key(sid, "SKabc", "key-secret");
        assert!(!format!("{k:?}").contains("key-secret"));
        assert_eq!(
            k.account_sid().as_str(),
            "AC0123456789abcdef0123456789abcdef"
        );
    }
}
