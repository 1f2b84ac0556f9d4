//! The public outbound job contract (`docs/jobs.md`): the subjects and streams other systems
//! publish send-SMS and lookup jobs to, the jobs themselves with their validation, and the events
//! the outbound service answers with. Versioned: additive changes keep version 1.
//!
//! Jobs reject unknown fields (a misspelt `media_url` must fail loudly, not send a text without
//! its picture); events do not, so their readers keep working when fields are added.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::Subjects;

/// Version of [`SendSmsJob`] and [`LookupJob`] this crate reads and writes.
pub const JOB_VERSION: u32 = 1;
/// Version of [`JobEvent`].
pub const EVENT_VERSION: u32 = 1;

/// JetStream de-duplication header: publishers set it to the job's `idempotency_key`.
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
/// Optional header naming a subject that also receives the job's final event. The subject must
/// start with one of the outbound service's reply prefixes ([`REPLY_TO_PREFIX`] unless
/// configured otherwise; [`check_reply_to`]): a job naming any other subject is rejected.
pub const HEADER_REPLY_TO: &str = "Switchboard-Reply-To";
/// Where `Switchboard-Reply-To` subjects may point by default: under `_INBOX.`, NATS clients'
/// own inbox prefix, never one of Switchboard's subjects (docs/nats-security.md).
pub const REPLY_TO_PREFIX: &str = "_INBOX.";
/// On dead-lettered copies: the code of the last error.
pub const HEADER_DEAD_LETTER_CODE: &str = "Switchboard-Error-Code";
/// On dead-lettered copies: the attempts made.
pub const HEADER_DEAD_LETTER_ATTEMPTS: &str = "Switchboard-Attempts";

/// Duplicate window of the job stream: a second job with the same `Nats-Msg-Id` within it is
/// acknowledged (`duplicate: true`) and dropped by JetStream.
pub const DUPLICATE_WINDOW_SECS: u64 = 24 * 60 * 60;
/// Durable consumer of the outbound service on the job stream.
pub const OUTBOUND_CONSUMER: &str = "outbound";

/// Longest `job_id` and `idempotency_key`.
pub const MAX_ID_LEN: usize = 128;
/// Longest `body`, in characters (Twilio's limit, error 21617).
pub const MAX_BODY_CHARS: usize = 1600;
/// Most `media_urls` (Twilio's limit, error 21623).
pub const MAX_MEDIA_URLS: usize = 10;
/// Longest URL accepted anywhere in a job.
pub const MAX_URL_LEN: usize = 2048;
/// Largest `metadata`, serialized as compact JSON.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// `types` a Lookup v1 job may ask for.
pub const LOOKUP_V1_TYPES: &[&str] = &["carrier", "caller-name"];
/// `fields` a Lookup v2 job may ask for.
pub const LOOKUP_V2_FIELDS: &[&str] = &[
    "validation",
    "caller_name",
    "sim_swap",
    "call_forwarding",
    "line_status",
    "line_type_intelligence",
    "identity_match",
    "reassigned_number",
    "sms_pumping_risk",
    "phone_number_quality_score",
    "pre_fill",
];

/// Error codes of Switchboard's own (Twilio's codes are written as their decimal number).
pub mod codes {
    /// The job broke a rule of the contract; `field` and `problems` say which.
    pub const INVALID_JOB: &str = "invalid_job";
    /// The job's `version` is not one this service reads.
    pub const UNSUPPORTED_VERSION: &str = "unsupported_version";
    /// The `account` names no account Switchboard knows.
    pub const UNKNOWN_ACCOUNT: &str = "unknown_account";
    /// Transient failures went on until the attempts ran out.
    pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";
    /// Twilio may or may not have created the message, and checking did not settle it.
    pub const OUTCOME_UNKNOWN: &str = "outcome_unknown";
    /// The recipient is on the account's suppression list (it texted STOP, or Twilio answered
    /// 21610 before); Twilio was not called. The message names the number, why and since when.
    pub const SUPPRESSED: &str = "suppressed";
    /// The service's `SWITCHBOARD_MASTER_KEY` does not decrypt the account's stored credentials
    /// (it differs from the key they were saved with); Twilio was not called. Once the key is
    /// right, publish the job again under a new idempotency key.
    pub const CREDENTIALS_UNREADABLE: &str = "credentials_unreadable";
}

/// The kinds of job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobType {
    /// [`SendSmsJob`].
    #[serde(rename = "sms.send")]
    SmsSend,
    /// [`LookupJob`].
    #[serde(rename = "lookup")]
    Lookup,
}

impl JobType {
    /// The name used in subjects and events.
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::SmsSend => "sms.send",
            JobType::Lookup => "lookup",
        }
    }

    /// The event subject family (`sms` or `lookup`).
    fn family(self) -> &'static str {
        match self {
            JobType::SmsSend => "sms",
            JobType::Lookup => "lookup",
        }
    }
}

/// Subjects and stream names of the job contract under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSubjects {
    prefix: String,
}

impl From<&Subjects> for JobSubjects {
    fn from(subjects: &Subjects) -> Self {
        JobSubjects::new(subjects.prefix())
    }
}

impl JobSubjects {
    /// `prefix` as for [`Subjects::new`].
    pub fn new(prefix: &str) -> JobSubjects {
        JobSubjects {
            prefix: prefix.trim_end_matches('.').to_owned(),
        }
    }

    /// `{prefix}.jobs.sms.send`: publish [`SendSmsJob`]s here.
    pub fn sms_send(&self) -> String {
        format!("{}.jobs.sms.send", self.prefix)
    }

    /// `{prefix}.jobs.lookup`: publish [`LookupJob`]s here.
    pub fn lookup(&self) -> String {
        format!("{}.jobs.lookup", self.prefix)
    }

    /// The job subject of a job type.
    pub fn job(&self, job: JobType) -> String {
        match job {
            JobType::SmsSend => self.sms_send(),
            JobType::Lookup => self.lookup(),
        }
    }

    /// `{prefix}.jobs.>`: what the job stream captures.
    pub fn jobs_wildcard(&self) -> String {
        format!("{}.jobs.>", self.prefix)
    }

    /// `{prefix}.events.{sms|lookup}.{kind}`: where [`JobEvent`]s are published.
    pub fn event(&self, job: JobType, kind: EventKind) -> String {
        format!("{}.events.{}.{}", self.prefix, job.family(), kind.as_str())
    }

    /// `{prefix}.events.sms.>` and `{prefix}.events.lookup.>`: what the event stream captures.
    pub fn events_wildcards(&self) -> [String; 2] {
        [
            format!("{}.events.sms.>", self.prefix),
            format!("{}.events.lookup.>", self.prefix),
        ]
    }

    /// `{prefix}.dlq.jobs.{sms.send|lookup}`: dead-lettered jobs, as they were published.
    pub fn dead_letter(&self, job: JobType) -> String {
        format!("{}.dlq.jobs.{}", self.prefix, job.as_str())
    }

    /// `{prefix}.dlq.jobs.>`: what the dead-letter stream captures.
    pub fn dead_letter_wildcard(&self) -> String {
        format!("{}.dlq.jobs.>", self.prefix)
    }

    /// Work-queue stream of the jobs: `SWITCHBOARD_JOBS` for the default prefix.
    pub fn job_stream(&self) -> String {
        format!("{}_JOBS", self.stream_stem())
    }

    /// Stream of dead-lettered jobs: `SWITCHBOARD_JOBS_DLQ`.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}_JOBS_DLQ", self.stream_stem())
    }

    /// Stream of job events, kept for replay: `SWITCHBOARD_JOB_EVENTS`.
    pub fn event_stream(&self) -> String {
        format!("{}_JOB_EVENTS", self.stream_stem())
    }

    /// Stream names allow no `.`: the prefix upper-cased, dots and dashes as `_`.
    fn stream_stem(&self) -> String {
        self.prefix
            .chars()
            .map(|c| match c {
                '.' | '-' => '_',
                c => c.to_ascii_uppercase(),
            })
            .collect()
    }
}

/// The Switchboard account whose Twilio credentials a job uses: `{"id": 42}` or
/// `{"name": "acme"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountRef {
    Id(i64),
    Name(String),
}

/// One thing wrong with a job: where (`to`, `media_urls[2]`, `api.v2.fields[0]`; empty for the
/// whole document) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl Problem {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Send one SMS or MMS through Twilio's Messages API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendSmsJob {
    /// Contract version, `1`.
    pub version: u32,
    /// Correlates the job's events; a UUID is a good choice. When absent, the job id is the
    /// idempotency key ([`SendSmsJob::id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The same key for every publication of the same logical message; also the
    /// `Nats-Msg-Id` header. 1 to 128 printable ASCII characters, no spaces.
    pub idempotency_key: String,
    /// Whose Twilio account sends.
    pub account: AccountRef,
    /// Recipient, E.164.
    pub to: String,
    /// Sender: E.164 number or alphanumeric sender ID. Exactly one of `from` and
    /// `messaging_service_sid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Messaging Service (`MG…`) that picks the sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_service_sid: Option<String>,
    /// Text, at most 1600 characters. `body` or `media_urls` (or both) is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Public http(s) URLs of media to attach (MMS), at most 10.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media_urls: Vec<String>,
    /// http(s) URL Twilio posts delivery status changes to, directly; Switchboard also publishes
    /// them as `status` events when it receives them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_callback: Option<String>,
    /// Seconds the message may wait in Twilio's queue (1..=36000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_period: Option<u32>,
    /// Anything the publisher wants back: copied into every event of the job. At most 16 KiB.
    #[serde(default, skip_serializing_if = "Json::is_null")]
    pub metadata: Json,
}

impl SendSmsJob {
    /// The job id events carry: `job_id`, or the idempotency key when there is none.
    pub fn id(&self) -> &str {
        self.job_id.as_deref().unwrap_or(&self.idempotency_key)
    }

    /// Every rule the job breaks, with the field it concerns; empty when it may be sent.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        check_common(
            &mut problems,
            Some(self.version),
            self.job_id.as_deref(),
            Some(&self.idempotency_key),
            Some(&self.account),
            &self.metadata,
        );
        fn optional(v: &Option<String>) -> Got<&str> {
            v.as_deref().map_or(Got::Absent, Got::Ok)
        }
        check_sms(
            &mut problems,
            &SmsFields {
                to: Some(&self.to),
                from: optional(&self.from),
                messaging_service_sid: optional(&self.messaging_service_sid),
                body: optional(&self.body),
                media_urls: Got::Ok(self.media_urls.iter().map(|u| Some(u.as_str())).collect()),
                status_callback: self.status_callback.as_deref(),
                validity_period: self.validity_period.map(i128::from),
            },
        );
        sort_problems(&mut problems, SMS_FIELDS);
        problems
    }
}

/// Look a number up with Twilio's Lookup API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupJob {
    /// Contract version, `1`.
    pub version: u32,
    /// As for [`SendSmsJob::job_id`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// As for [`SendSmsJob::idempotency_key`].
    pub idempotency_key: String,
    /// Whose Twilio account pays for the lookup.
    pub account: AccountRef,
    /// The number, E.164.
    pub number: String,
    /// Which API and what to ask it.
    pub api: LookupApi,
    /// Copied into every event of the job. At most 16 KiB.
    #[serde(default, skip_serializing_if = "Json::is_null")]
    pub metadata: Json,
}

/// Lookup v1 (`{"v1": {"types": ["carrier"]}}`) or v2 (`{"v2": {"fields": ["caller_name"]}}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LookupApi {
    /// Maintenance mode at Twilio; `types` from [`LOOKUP_V1_TYPES`]. An unknown number is
    /// answered `completed` with `result.found: false`.
    V1 {
        #[serde(default)]
        types: Vec<String>,
    },
    /// `fields` from [`LOOKUP_V2_FIELDS`]; none means basic validation only (free).
    V2 {
        #[serde(default)]
        fields: Vec<String>,
    },
}

impl LookupJob {
    /// The job id events carry: `job_id`, or the idempotency key when there is none.
    pub fn id(&self) -> &str {
        self.job_id.as_deref().unwrap_or(&self.idempotency_key)
    }

    /// Every rule the job breaks, with the field it concerns; empty when it may be run.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        check_common(
            &mut problems,
            Some(self.version),
            self.job_id.as_deref(),
            Some(&self.idempotency_key),
            Some(&self.account),
            &self.metadata,
        );
        let (v2, names) = match &self.api {
            LookupApi::V1 { types } => (false, types),
            LookupApi::V2 { fields } => (true, fields),
        };
        let names: Vec<Option<&str>> = names.iter().map(|n| Some(n.as_str())).collect();
        check_lookup(&mut problems, Some(&self.number), Some((v2, &names)));
        sort_problems(&mut problems, LOOKUP_FIELDS);
        problems
    }
}

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The job is valid and the outbound service has taken it on.
    Accepted,
    /// SMS: Twilio created the message (`twilio_sid`); delivery follows as `status` events.
    Sent,
    /// Lookup: the answer is in `result`.
    Completed,
    /// The job will not be done: invalid, unknown account, or a permanent Twilio error.
    Failed,
    /// Transient failures outlasted the attempts; the job is in the dead-letter stream.
    DeadLettered,
    /// SMS: a delivery status from Twilio's status callback (`status`, maybe `error`).
    Status,
}

impl EventKind {
    /// The last token of the event subject.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Accepted => "accepted",
            EventKind::Sent => "sent",
            EventKind::Completed => "completed",
            EventKind::Failed => "failed",
            EventKind::DeadLettered => "dead_lettered",
            EventKind::Status => "status",
        }
    }

    /// True for the outcome a job ends with (sent to the `Switchboard-Reply-To` subject).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            EventKind::Sent | EventKind::Completed | EventKind::Failed | EventKind::DeadLettered
        )
    }
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// A Twilio error code as a decimal string (`"21211"`), or one of [`codes`].
    pub code: String,
    /// Human-readable; for `invalid_job`, every problem joined by `; `.
    pub message: String,
    /// Twilio's documentation link for its codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more_info: Option<String>,
    /// The job field at fault (the first, when there are several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `invalid_job`: every problem found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

/// One event of a job's life, published on [`JobSubjects::event`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// Event version, `1`.
    pub version: u32,
    /// The job's id ([`SendSmsJob::id`]); the correlation key of all its events.
    pub job_id: String,
    /// Which kind of job.
    pub job: JobType,
    /// What happened.
    pub kind: EventKind,
    /// When, RFC 3339 in UTC.
    pub at: String,
    /// Attempts made so far (0 before the first call to Twilio).
    pub attempt: u32,
    /// The Twilio message SID, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio_sid: Option<String>,
    /// Twilio's message status (`queued`, `delivered`, …) on `sent` and `status` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// On `failed`, `dead_lettered`, and `status` events that carry a Twilio error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// On lookup `completed`: `{"found": bool, "lookup": <Twilio's answer or null>}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Json>,
    /// The job's `metadata`, as published.
    #[serde(default, skip_serializing_if = "Json::is_null")]
    pub metadata: Json,
}

/// A job that cannot be run as published: the `failed` event to answer it with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} job rejected: {}", .job.as_str(), .error.message)]
pub struct Rejected {
    pub job: JobType,
    /// The job's id if one could be found: `job_id`, else `idempotency_key`, else the
    /// `Nats-Msg-Id` header.
    pub job_id: Option<String>,
    /// `metadata` if it could be read, for the event.
    pub metadata: Json,
    pub error: JobError,
}

impl Rejected {
    fn new(
        job: JobType,
        doc: Option<&Json>,
        msg_id: Option<&str>,
        code: &str,
        problems: Vec<Problem>,
    ) -> Box<Rejected> {
        let text = |name: &str| {
            doc.and_then(|d| d.get(name))
                .and_then(Json::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let message = problems
            .iter()
            .map(Problem::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Box::new(Rejected {
            job,
            job_id: text("job_id")
                .or_else(|| text("idempotency_key"))
                .or_else(|| msg_id.filter(|id| !id.is_empty()).map(str::to_owned)),
            metadata: doc
                .and_then(|d| d.get("metadata"))
                .cloned()
                .unwrap_or(Json::Null),
            error: JobError {
                code: code.to_owned(),
                message,
                more_info: None,
                field: problems
                    .first()
                    .map(|p| p.field.clone())
                    .filter(|f| !f.is_empty()),
                problems,
            },
        })
    }

    /// The `failed` event. `fallback_id` stands in for a job id neither the document nor the
    /// headers yielded (`seq:<stream sequence>`).
    pub fn to_event(&self, fallback_id: &str, at: &str) -> JobEvent {
        JobEvent {
            version: EVENT_VERSION,
            job_id: self
                .job_id
                .clone()
                .unwrap_or_else(|| fallback_id.to_owned()),
            job: self.job,
            kind: EventKind::Failed,
            at: at.to_owned(),
            attempt: 0,
            twilio_sid: None,
            status: None,
            error: Some(self.error.clone()),
            result: None,
            metadata: self.metadata.clone(),
        }
    }
}

/// The fields of a [`SendSmsJob`], in the order of the contract's tables (`docs/jobs.md`):
/// the order in which problems are reported.
const SMS_FIELDS: &[&str] = &[
    "version",
    "job_id",
    "idempotency_key",
    "account",
    "metadata",
    "to",
    "from",
    "messaging_service_sid",
    "body",
    "media_urls",
    "status_callback",
    "validity_period",
];

/// The fields of a [`LookupJob`], in the contract's order.
const LOOKUP_FIELDS: &[&str] = &[
    "version",
    "job_id",
    "idempotency_key",
    "account",
    "metadata",
    "number",
    "api",
];

/// Reads a send-SMS job as delivered, with its `Nats-Msg-Id` header: JSON, a known `version`,
/// then every field of that version: unknown fields, missing required fields, values of the
/// wrong type, every rule of [`SendSmsJob::validate`] that can be checked on the fields that
/// were read, and [`check_msg_id`]. All problems are reported together, each with its path,
/// unknown fields first, then in the order of the contract's fields. Every way to fail gives a
/// [`Rejected`] to answer with a `failed` event, never a silent drop.
pub fn decode_send_sms(bytes: &[u8], msg_id: Option<&str>) -> Result<SendSmsJob, Box<Rejected>> {
    let (doc, version) = decode_job(JobType::SmsSend, bytes, msg_id)?;
    let object = doc.as_object().expect("decode_job answers objects");
    let mut read = Reader::new(object, "");
    if version.is_none() {
        read.problem("version", "required");
    }
    read.unknown_fields(SMS_FIELDS);
    let job_id = read.string("job_id", false);
    let idempotency_key = read.string("idempotency_key", true);
    let account = read.account();
    let metadata = read.any("metadata");
    let to = read.string("to", true);
    let from = read.string("from", false);
    let messaging_service_sid = read.string("messaging_service_sid", false);
    let body = read.string("body", false);
    let media_urls = read.strings("media_urls", false);
    let status_callback = read.string("status_callback", false);
    let validity_period = read.integer("validity_period", false);
    let mut problems = read.problems;
    check_common(
        &mut problems,
        version,
        job_id.as_deref().ok(),
        idempotency_key.as_deref().ok(),
        account.as_ref().ok(),
        &metadata,
    );
    check_sms(
        &mut problems,
        &SmsFields {
            to: to.as_deref().ok(),
            from: from.as_deref(),
            messaging_service_sid: messaging_service_sid.as_deref(),
            body: body.as_deref(),
            media_urls: media_urls
                .as_ref()
                .map(|urls| urls.iter().map(Option::as_deref).collect()),
            status_callback: status_callback.as_deref().ok(),
            validity_period: validity_period.as_ref().ok().copied(),
        },
    );
    if let Got::Ok(key) = &idempotency_key {
        problems.extend(check_msg_id(msg_id, key).err());
    }
    finish(JobType::SmsSend, &doc, msg_id, problems, SMS_FIELDS)?;
    let (
        Some(version),
        Got::Ok(idempotency_key),
        Got::Ok(account),
        Got::Ok(to),
        Some(validity_period),
    ) = (
        version,
        idempotency_key,
        account,
        to,
        validity_period
            .optional()
            .map(|v| v.map(|v| u32::try_from(v).expect("checked by the rules"))),
    )
    else {
        unreachable!("a field that is missing or unusable is a problem");
    };
    Ok(SendSmsJob {
        version,
        job_id: job_id.optional().expect("no problem"),
        idempotency_key,
        account,
        to,
        from: from.optional().expect("no problem"),
        messaging_service_sid: messaging_service_sid.optional().expect("no problem"),
        body: body.optional().expect("no problem"),
        media_urls: media_urls
            .optional()
            .expect("no problem")
            .map(|urls| complete(urls).expect("no problem"))
            .unwrap_or_default(),
        status_callback: status_callback.optional().expect("no problem"),
        validity_period,
        metadata,
    })
}

/// As [`decode_send_sms`], for lookup jobs.
pub fn decode_lookup(bytes: &[u8], msg_id: Option<&str>) -> Result<LookupJob, Box<Rejected>> {
    let (doc, version) = decode_job(JobType::Lookup, bytes, msg_id)?;
    let object = doc.as_object().expect("decode_job answers objects");
    let mut read = Reader::new(object, "");
    if version.is_none() {
        read.problem("version", "required");
    }
    read.unknown_fields(LOOKUP_FIELDS);
    let job_id = read.string("job_id", false);
    let idempotency_key = read.string("idempotency_key", true);
    let account = read.account();
    let metadata = read.any("metadata");
    let number = read.string("number", true);
    let api = read.lookup_api();
    let mut problems = read.problems;
    check_common(
        &mut problems,
        version,
        job_id.as_deref().ok(),
        idempotency_key.as_deref().ok(),
        account.as_ref().ok(),
        &metadata,
    );
    let names: Option<(bool, Vec<Option<&str>>)> = api
        .as_ref()
        .ok()
        .map(|(v2, names)| (*v2, names.iter().map(Option::as_deref).collect()));
    check_lookup(
        &mut problems,
        number.as_deref().ok(),
        names.as_ref().map(|(v2, names)| (*v2, names.as_slice())),
    );
    if let Got::Ok(key) = &idempotency_key {
        problems.extend(check_msg_id(msg_id, key).err());
    }
    finish(JobType::Lookup, &doc, msg_id, problems, LOOKUP_FIELDS)?;
    let (Some(version), Got::Ok(idempotency_key), Got::Ok(account), Got::Ok(number), Got::Ok(api)) =
        (version, idempotency_key, account, number, api)
    else {
        unreachable!("a field that is missing or unusable is a problem");
    };
    let (v2, names) = api;
    let names = complete(names).expect("no problem");
    Ok(LookupJob {
        version,
        job_id: job_id.optional().expect("no problem"),
        idempotency_key,
        account,
        number,
        api: if v2 {
            LookupApi::V2 { fields: names }
        } else {
            LookupApi::V1 { types: names }
        },
        metadata,
    })
}

/// The `Nats-Msg-Id` rule: absent is allowed (no JetStream de-duplication then), present must
/// equal the idempotency key.
pub fn check_msg_id(header: Option<&str>, idempotency_key: &str) -> Result<(), Problem> {
    match header {
        Some(id) if id != idempotency_key => Err(Problem::new(
            "idempotency_key",
            format!("differs from the {HEADER_MSG_ID} header; they must be equal"),
        )),
        _ => Ok(()),
    }
}

/// The `Switchboard-Reply-To` rule: absent is allowed; present must be a subject one can publish
/// to (tokens without spaces or wildcards) that starts with one of `prefixes` and goes on after
/// it, so that a job cannot make the outbound service publish anywhere but to a reply inbox.
pub fn check_reply_to<S: AsRef<str>>(header: Option<&str>, prefixes: &[S]) -> Result<(), Problem> {
    let Some(subject) = header else {
        return Ok(());
    };
    let problem = |why: String| Err(Problem::new(HEADER_REPLY_TO, why));
    let shown: String = subject
        .chars()
        .take(MAX_ID_LEN)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let bad_token = subject.split('.').any(|token| {
        token.is_empty()
            || token == "*"
            || token == ">"
            || token.chars().any(|c| c.is_whitespace() || c.is_control())
    });
    if bad_token || subject.len() > MAX_URL_LEN {
        return problem(format!(
            "'{shown}' is not a subject to publish to (dot-separated tokens without spaces or wildcards)"
        ));
    }
    if prefixes
        .iter()
        .map(AsRef::as_ref)
        .any(|p| subject.len() > p.len() && subject.starts_with(p))
    {
        return Ok(());
    }
    let allowed: Vec<String> = prefixes
        .iter()
        .map(|p| format!("'{}'", p.as_ref()))
        .collect();
    problem(format!(
        "'{shown}' is not under {}: the final event goes only to a reply inbox",
        allowed.join(" or ")
    ))
}

/// `decoded` (the job as [`decode_send_sms`] or [`decode_lookup`] read it) checked against the
/// `Switchboard-Reply-To` rule ([`check_reply_to`]): a job breaking it is rejected as
/// `invalid_job`, the header's problem first, then the body's when it has some too.
pub fn check_job_reply_to<T, S: AsRef<str>>(
    decoded: Result<T, Box<Rejected>>,
    job: JobType,
    bytes: &[u8],
    msg_id: Option<&str>,
    reply_to: Option<&str>,
    prefixes: &[S],
) -> Result<T, Box<Rejected>> {
    let Err(problem) = check_reply_to(reply_to, prefixes) else {
        return decoded;
    };
    let mut problems = vec![problem];
    if let Err(rejected) = decoded {
        problems.extend(rejected.error.problems);
    }
    let doc: Option<Json> = serde_json::from_slice(bytes).ok();
    Err(Rejected::new(
        job,
        doc.as_ref(),
        msg_id,
        codes::INVALID_JOB,
        problems,
    ))
}

/// The document as a JSON object, and its `version` (`None` when it has none, which is one of
/// its problems). Not JSON, not an object, or a version this service does not read: rejected at
/// once (the fields of another version mean other things).
fn decode_job(
    job: JobType,
    bytes: &[u8],
    msg_id: Option<&str>,
) -> Result<(Json, Option<u32>), Box<Rejected>> {
    let doc: Json = serde_json::from_slice(bytes).map_err(|e| {
        Rejected::new(
            job,
            None,
            msg_id,
            codes::INVALID_JOB,
            vec![Problem::new("", format!("not JSON: {e}"))],
        )
    })?;
    if !doc.is_object() {
        return Err(Rejected::new(
            job,
            None,
            msg_id,
            codes::INVALID_JOB,
            vec![Problem::new("", "a job is a JSON object")],
        ));
    }
    match doc.get("version") {
        Some(v) if v.as_u64() == Some(u64::from(JOB_VERSION)) => Ok((doc, Some(JOB_VERSION))),
        Some(v) => Err(Rejected::new(
            job,
            Some(&doc),
            msg_id,
            codes::UNSUPPORTED_VERSION,
            vec![Problem::new(
                "version",
                format!("version {v} is not supported; this service reads version {JOB_VERSION}"),
            )],
        )),
        None => Ok((doc, None)),
    }
}

fn finish(
    job: JobType,
    doc: &Json,
    msg_id: Option<&str>,
    mut problems: Vec<Problem>,
    order: &[&str],
) -> Result<(), Box<Rejected>> {
    if problems.is_empty() {
        return Ok(());
    }
    sort_problems(&mut problems, order);
    Err(Rejected::new(
        job,
        Some(doc),
        msg_id,
        codes::INVALID_JOB,
        problems,
    ))
}

/// Puts problems in a stable order: the whole document and unknown fields first (as found),
/// then by the field's place in `order` (the contract's), a field before its elements
/// (`media_urls` before `media_urls[0]`), elements by index; otherwise as found.
fn sort_problems(problems: &mut [Problem], order: &[&str]) {
    problems.sort_by_key(|p| {
        let top = p.field.split(['.', '[']).next().unwrap_or_default();
        let rank = order.iter().position(|f| *f == top).map_or(0, |i| i + 1);
        let index = p
            .field
            .rsplit_once('[')
            .and_then(|(_, rest)| rest.strip_suffix(']')?.parse::<usize>().ok())
            .map_or(0, |i| i + 1);
        (rank, index)
    });
}

/// A field of a document as read: absent (or `null` where the field is optional), present but
/// unusable (its problem is recorded), or its value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Got<T> {
    Absent,
    Bad,
    Ok(T),
}

impl<T> Got<T> {
    pub(crate) fn as_ref(&self) -> Got<&T> {
        match self {
            Got::Absent => Got::Absent,
            Got::Bad => Got::Bad,
            Got::Ok(v) => Got::Ok(v),
        }
    }

    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Got<U> {
        match self {
            Got::Absent => Got::Absent,
            Got::Bad => Got::Bad,
            Got::Ok(v) => Got::Ok(f(v)),
        }
    }

    /// The value, if it was read.
    pub(crate) fn ok(self) -> Option<T> {
        match self {
            Got::Ok(v) => Some(v),
            _ => None,
        }
    }

    /// An optional field: `Some(None)` when absent, `None` when unusable.
    pub(crate) fn optional(self) -> Option<Option<T>> {
        match self {
            Got::Absent => Some(None),
            Got::Bad => None,
            Got::Ok(v) => Some(Some(v)),
        }
    }
}

impl Got<String> {
    fn as_deref(&self) -> Got<&str> {
        self.as_ref().map(String::as_str)
    }
}

/// The strings of an array read by [`Reader::strings`], if every element was one.
fn complete(items: Vec<Option<String>>) -> Option<Vec<String>> {
    items.into_iter().collect()
}

/// What a JSON value is, for messages (`not a number`).
fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Reads the fields of a JSON object one by one, recording every problem with its path instead
/// of stopping at the first (as deserializing with serde does).
pub(crate) struct Reader<'a> {
    object: &'a serde_json::Map<String, Json>,
    /// Path of the object (`account.`, `api.v1.`; empty for the document).
    prefix: String,
    pub(crate) problems: Vec<Problem>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(object: &'a serde_json::Map<String, Json>, prefix: &str) -> Reader<'a> {
        Reader {
            object,
            prefix: prefix.to_owned(),
            problems: Vec::new(),
        }
    }

    pub(crate) fn problem(&mut self, name: &str, message: impl Into<String>) {
        let field = format!("{}{name}", self.prefix);
        self.problems.push(Problem::new(field, message));
    }

    /// Each field that is not one of `known`.
    pub(crate) fn unknown_fields(&mut self, known: &[&str]) {
        let expected = known
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let unknown: Vec<&String> = self
            .object
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .collect();
        for name in unknown {
            self.problem(
                name,
                format!("unknown field `{name}`, expected one of {expected}"),
            );
        }
    }

    /// The value of a field; a required one that is missing is a problem. `null` counts as
    /// missing for optional fields (as serde reads an `Option`).
    fn value(&mut self, name: &str, required: bool) -> Option<&'a Json> {
        match self.object.get(name) {
            None => {
                if required {
                    self.problem(name, "required");
                }
                None
            }
            Some(Json::Null) if !required => None,
            Some(v) => Some(v),
        }
    }

    pub(crate) fn string(&mut self, name: &str, required: bool) -> Got<String> {
        match self.value(name, required) {
            None => Got::Absent,
            Some(Json::String(s)) => Got::Ok(s.clone()),
            Some(v) => {
                self.problem(name, format!("must be a string, not {}", kind(v)));
                Got::Bad
            }
        }
    }

    /// A whole number (any size JSON allows); the caller checks its range.
    pub(crate) fn integer(&mut self, name: &str, required: bool) -> Got<i128> {
        match self.value(name, required) {
            None => Got::Absent,
            Some(v) => match v.as_i64().map(i128::from).or(v.as_u64().map(i128::from)) {
                Some(n) => Got::Ok(n),
                None => {
                    let what = if v.is_number() {
                        format!("{v}")
                    } else {
                        kind(v).to_owned()
                    };
                    self.problem(name, format!("must be a whole number, not {what}"));
                    Got::Bad
                }
            },
        }
    }

    pub(crate) fn boolean(&mut self, name: &str, required: bool) -> Got<bool> {
        match self.value(name, required) {
            None => Got::Absent,
            Some(Json::Bool(b)) => Got::Ok(*b),
            Some(v) => {
                self.problem(name, format!("must be true or false, not {}", kind(v)));
                Got::Bad
            }
        }
    }

    /// An array of strings; each element that is not a string is a problem of its own
    /// (`media_urls[2]`) and `None` in the answer, so the rules still check the others. `null`
    /// is not an array.
    pub(crate) fn strings(&mut self, name: &str, required: bool) -> Got<Vec<Option<String>>> {
        let v = match self.object.get(name) {
            None if required => {
                self.problem(name, "required");
                return Got::Absent;
            }
            None => return Got::Absent,
            Some(v) => v,
        };
        let Some(items) = v.as_array() else {
            self.problem(
                name,
                format!("must be an array of strings, not {}", kind(v)),
            );
            return Got::Bad;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Json::String(s) => out.push(Some(s.clone())),
                other => {
                    self.problem(
                        &format!("{name}[{i}]"),
                        format!("must be a string, not {}", kind(other)),
                    );
                    out.push(None);
                }
            }
        }
        Got::Ok(out)
    }

    /// An array of `[name, value]` pairs of strings (HTTP headers); absent or `null`: none.
    pub(crate) fn pairs(&mut self, name: &str) -> Got<Vec<(String, String)>> {
        let Some(v) = self.value(name, false) else {
            return Got::Absent;
        };
        let Some(items) = v.as_array() else {
            self.problem(
                name,
                format!("must be an array of [name, value] pairs, not {}", kind(v)),
            );
            return Got::Bad;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut bad = false;
        for (i, item) in items.iter().enumerate() {
            match item.as_array().map(Vec::as_slice) {
                Some([Json::String(n), Json::String(v)]) => out.push((n.clone(), v.clone())),
                _ => {
                    self.problem(
                        &format!("{name}[{i}]"),
                        format!("must be a [name, value] pair of strings, not {item}"),
                    );
                    bad = true;
                }
            }
        }
        if bad { Got::Bad } else { Got::Ok(out) }
    }

    /// Any JSON; `Null` when absent.
    pub(crate) fn any(&mut self, name: &str) -> Json {
        self.object.get(name).cloned().unwrap_or(Json::Null)
    }

    /// A nested object, read with its own path prefix; its problems become this reader's.
    fn nested<T>(
        &mut self,
        name: &str,
        value: &'a Json,
        expected: &str,
        read: impl FnOnce(&mut Reader<'a>) -> Got<T>,
    ) -> Got<T> {
        let Some(object) = value.as_object() else {
            self.problem(name, format!("must be {expected}, not {}", kind(value)));
            return Got::Bad;
        };
        let mut inner = Reader::new(object, &format!("{}{name}.", self.prefix));
        let got = read(&mut inner);
        self.problems.append(&mut inner.problems);
        got
    }

    /// `account`: `{"id": 42}` or `{"name": "acme"}`.
    pub(crate) fn account(&mut self) -> Got<AccountRef> {
        let Some(value) = self.value("account", true) else {
            return Got::Absent;
        };
        let prefix = self.prefix.clone();
        self.nested(
            "account",
            value,
            r#"{"id": <number>} or {"name": <text>}"#,
            |r| {
                r.unknown_fields(&["id", "name"]);
                let id = r.integer("id", false);
                let name = r.string("name", false);
                match (id, name) {
                    (Got::Ok(id), Got::Absent) => match i64::try_from(id) {
                        Ok(id) => Got::Ok(AccountRef::Id(id)),
                        Err(_) => {
                            r.problem("id", "must be positive");
                            Got::Bad
                        }
                    },
                    (Got::Absent, Got::Ok(name)) => Got::Ok(AccountRef::Name(name)),
                    (Got::Absent, Got::Absent) => {
                        r.problems
                            .push(Problem::new(format!("{prefix}account"), "give id or name"));
                        Got::Bad
                    }
                    (Got::Bad, _) | (_, Got::Bad) => Got::Bad,
                    (Got::Ok(_), Got::Ok(_)) => {
                        r.problems.push(Problem::new(
                            format!("{prefix}account"),
                            "give either id or name, not both",
                        ));
                        Got::Bad
                    }
                }
            },
        )
    }

    /// `api`: `{"v1": {"types": [...]}}` or `{"v2": {"fields": [...]}}`, as whether it is v2
    /// and the names listed (`None` for an element that is not a string).
    pub(crate) fn lookup_api(&mut self) -> Got<(bool, Vec<Option<String>>)> {
        let Some(value) = self.value("api", true) else {
            return Got::Absent;
        };
        let prefix = self.prefix.clone();
        let expected = r#"{"v1": {"types": [...]}} or {"v2": {"fields": [...]}}"#;
        self.nested("api", value, expected, |r| {
            r.unknown_fields(&["v1", "v2"]);
            let list = |r: &mut Reader<'a>, version: &str, name: &str| {
                let value = r.object.get(version)?;
                Some(
                    r.nested(version, value, &format!(r#"{{"{name}": [...]}}"#), |v| {
                        v.unknown_fields(&[name]);
                        let got = v.strings(name, false);
                        match got {
                            Got::Absent => Got::Ok(Vec::new()),
                            other => other,
                        }
                    }),
                )
            };
            let v1 = list(r, "v1", "types");
            let v2 = list(r, "v2", "fields");
            match (v1, v2) {
                (Some(types), None) => types.map(|types| (false, types)),
                (None, Some(fields)) => fields.map(|fields| (true, fields)),
                (None, None) => {
                    r.problems
                        .push(Problem::new(format!("{prefix}api"), "give v1 or v2"));
                    Got::Bad
                }
                (Some(_), Some(_)) => {
                    r.problems.push(Problem::new(
                        format!("{prefix}api"),
                        "give either v1 or v2, not both",
                    ));
                    Got::Bad
                }
            }
        })
    }
}

/// The rules of the fields every job has; `None` for a field that is missing or unusable (its
/// problem is already recorded).
fn check_common(
    problems: &mut Vec<Problem>,
    version: Option<u32>,
    job_id: Option<&str>,
    idempotency_key: Option<&str>,
    account: Option<&AccountRef>,
    metadata: &Json,
) {
    if let Some(version) = version
        && version != JOB_VERSION
    {
        problems.push(Problem::new(
            "version",
            format!("version {version} is not supported; this service reads version {JOB_VERSION}"),
        ));
    }
    if let Some(id) = job_id {
        let ok = (1..=MAX_ID_LEN).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
        if !ok {
            problems.push(Problem::new(
                "job_id",
                format!("1 to {MAX_ID_LEN} characters of A-Z a-z 0-9 . _ : -"),
            ));
        }
    }
    if let Some(key) = idempotency_key {
        let key_ok =
            (1..=MAX_ID_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic());
        if !key_ok {
            problems.push(Problem::new(
                "idempotency_key",
                format!("1 to {MAX_ID_LEN} printable ASCII characters without spaces"),
            ));
        }
    }
    match account {
        Some(AccountRef::Id(id)) if *id <= 0 => {
            problems.push(Problem::new("account.id", "must be positive"))
        }
        Some(AccountRef::Name(name)) if name.trim().is_empty() || name.chars().count() > 128 => {
            problems.push(Problem::new("account.name", "1 to 128 characters"))
        }
        _ => {}
    }
    let size = serde_json::to_vec(metadata).map_or(0, |v| v.len());
    if size > MAX_METADATA_BYTES {
        problems.push(Problem::new(
            "metadata",
            format!("{size} bytes as JSON; at most {MAX_METADATA_BYTES}"),
        ));
    }
}

/// The fields of a send-SMS job as far as they could be read, for [`check_sms`].
struct SmsFields<'a> {
    to: Option<&'a str>,
    from: Got<&'a str>,
    messaging_service_sid: Got<&'a str>,
    body: Got<&'a str>,
    /// The elements that are strings, `None` for the others.
    media_urls: Got<Vec<Option<&'a str>>>,
    status_callback: Option<&'a str>,
    validity_period: Option<i128>,
}

/// The rules of a send-SMS job. A rule between two fields is checked only when neither is
/// unusable (a `from` that is not a string does not also make "from or messaging_service_sid
/// is required").
fn check_sms(problems: &mut Vec<Problem>, f: &SmsFields<'_>) {
    if let Some(to) = f.to
        && let Err(e) = check_e164(to)
    {
        problems.push(Problem::new("to", e));
    }
    match (&f.from, &f.messaging_service_sid) {
        (Got::Ok(_), Got::Ok(_)) => problems.push(Problem::new(
            "messaging_service_sid",
            "give either from or messaging_service_sid, not both",
        )),
        (Got::Absent, Got::Absent) => problems.push(Problem::new(
            "from",
            "from or messaging_service_sid is required",
        )),
        (from, sid) => {
            if let Got::Ok(from) = from
                && let Err(e) = check_sender(from)
            {
                problems.push(Problem::new("from", e));
            }
            if let Got::Ok(sid) = sid
                && !is_sid(sid, "MG")
            {
                problems.push(Problem::new(
                    "messaging_service_sid",
                    "must be MG followed by 32 hex digits",
                ));
            }
        }
    }
    let no_body = match f.body {
        Got::Absent => Some(true),
        Got::Ok(body) => Some(body.is_empty()),
        Got::Bad => None,
    };
    let no_media = match &f.media_urls {
        Got::Absent => Some(true),
        Got::Ok(urls) => Some(urls.is_empty()),
        Got::Bad => None,
    };
    if no_body == Some(true) && no_media == Some(true) {
        problems.push(Problem::new("body", "body or media_urls is required"));
    }
    if let Got::Ok(body) = f.body {
        let chars = body.chars().count();
        if chars > MAX_BODY_CHARS {
            problems.push(Problem::new(
                "body",
                format!("{chars} characters; at most {MAX_BODY_CHARS}"),
            ));
        }
    }
    if let Got::Ok(urls) = &f.media_urls {
        if urls.len() > MAX_MEDIA_URLS {
            problems.push(Problem::new(
                "media_urls",
                format!("{} URLs; at most {MAX_MEDIA_URLS}", urls.len()),
            ));
        }
        for (i, url) in urls.iter().enumerate() {
            if let Some(url) = url
                && let Err(e) = check_http_url(url)
            {
                problems.push(Problem::new(format!("media_urls[{i}]"), e));
            }
        }
    }
    if let Some(url) = f.status_callback {
        match check_http_url(url) {
            Err(e) => problems.push(Problem::new("status_callback", e)),
            Ok(host) if host.contains('_') => problems.push(Problem::new(
                "status_callback",
                "the host name must not contain '_' (Twilio rejects it)",
            )),
            Ok(_) => {}
        }
    }
    if let Some(seconds) = f.validity_period
        && !(1..=36000).contains(&seconds)
    {
        problems.push(Problem::new(
            "validity_period",
            format!("{seconds} is outside 1..=36000 seconds"),
        ));
    }
}

/// The rules of a lookup job, on the fields that could be read: `api` as whether it is v2 and
/// the names it lists (`None` for an element that is not a string).
fn check_lookup(
    problems: &mut Vec<Problem>,
    number: Option<&str>,
    api: Option<(bool, &[Option<&str>])>,
) {
    if let Some(number) = number
        && let Err(e) = check_e164(number)
    {
        problems.push(Problem::new("number", e));
    }
    let Some((v2, names)) = api else { return };
    let (path, allowed) = if v2 {
        ("api.v2.fields", LOOKUP_V2_FIELDS)
    } else {
        ("api.v1.types", LOOKUP_V1_TYPES)
    };
    for (i, name) in names.iter().enumerate() {
        let Some(name) = name else { continue };
        if !allowed.contains(name) {
            problems.push(Problem::new(
                format!("{path}[{i}]"),
                format!("unknown {name:?}; one of {}", allowed.join(", ")),
            ));
        } else if names[..i].contains(&Some(*name)) {
            problems.push(Problem::new(
                format!("{path}[{i}]"),
                format!("{name:?} is listed twice"),
            ));
        }
    }
}

/// `+` and 8 to 15 digits, the first not zero (the same rule as `switchboard_twilio::E164`,
/// restated so the contract crate stays free of the Twilio client's dependencies).
fn check_e164(s: &str) -> Result<(), String> {
    let Some(digits) = s.strip_prefix('+') else {
        return Err("must be E.164: '+' then 8 to 15 digits".into());
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must be E.164: only digits after '+', no separators".into());
    }
    if digits.starts_with('0') || !(8..=15).contains(&digits.len()) {
        return Err("must be E.164: 8 to 15 digits, the first not 0".into());
    }
    Ok(())
}

/// An E.164 number, or an alphanumeric sender ID (1 to 11 of A-Z a-z 0-9 and space, at least
/// one letter).
fn check_sender(s: &str) -> Result<(), String> {
    if s.starts_with('+') {
        return check_e164(s);
    }
    let ok = (1..=11).contains(&s.chars().count())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ')
        && s.chars().any(|c| c.is_ascii_alphabetic());
    if ok {
        Ok(())
    } else {
        Err("must be an E.164 number or an alphanumeric sender ID (1 to 11 letters, digits, spaces; one letter at least)".into())
    }
}

fn is_sid(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Checks an absolute http(s) URL and returns its host.
fn check_http_url(url: &str) -> Result<&str, String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("longer than {MAX_URL_LEN} characters"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    let rest = ["https://", "http://"]
        .iter()
        .find_map(|scheme| {
            url.get(..scheme.len())
                .filter(|s| s.eq_ignore_ascii_case(scheme))
                .map(|_| &url[scheme.len()..])
        })
        .ok_or("must be an absolute http:// or https:// URL")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("must not carry credentials".into());
    }
    let host = if authority.starts_with('[') {
        let end = authority.find(']').ok_or("unterminated IPv6 address")?;
        let port = &authority[end + 1..];
        if !(port.is_empty() || port.strip_prefix(':').is_some_and(is_port)) {
            return Err("invalid port".into());
        }
        &authority[..=end]
    } else {
        let (host, port) = authority.split_once(':').unwrap_or((authority, ""));
        if authority.contains(':') && !is_port(port) {
            return Err("invalid port".into());
        }
        host
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    Ok(host)
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sms() -> SendSmsJob {
        SendSmsJob {
            version: 1,
            job_id: Some("j-1".into()),
            idempotency_key: "k-1".into(),
            account: AccountRef::Name("acme".into()),
            to: "+14155551234".into(),
            from: Some("+15005550006".into()),
            messaging_service_sid: None,
            body: Some("Hello".into()),
            media_urls: Vec::new(),
            status_callback: None,
            validity_period: None,
            metadata: Json::Null,
        }
    }

    fn fields(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.field.as_str()).collect()
    }

    #[test]
    fn subjects_and_streams_live_under_the_prefix() {
        let s = JobSubjects::from(&Subjects::new("t-1.a."));
        assert_eq!(s.sms_send(), "t-1.a.jobs.sms.send");
        assert_eq!(s.lookup(), "t-1.a.jobs.lookup");
        assert_eq!(s.job(JobType::Lookup), s.lookup());
        assert_eq!(s.jobs_wildcard(), "t-1.a.jobs.>");
        assert_eq!(
            s.event(JobType::SmsSend, EventKind::DeadLettered),
            "t-1.a.events.sms.dead_lettered"
        );
        assert_eq!(
            s.event(JobType::Lookup, EventKind::Completed),
            "t-1.a.events.lookup.completed"
        );
        assert_eq!(
            s.events_wildcards(),
            ["t-1.a.events.sms.>", "t-1.a.events.lookup.>"]
        );
        assert_eq!(s.dead_letter(JobType::SmsSend), "t-1.a.dlq.jobs.sms.send");
        assert_eq!(s.dead_letter_wildcard(), "t-1.a.dlq.jobs.>");
        assert_eq!(
            (s.job_stream(), s.dead_letter_stream(), s.event_stream()),
            (
                "T_1_A_JOBS".to_owned(),
                "T_1_A_JOBS_DLQ".to_owned(),
                "T_1_A_JOB_EVENTS".to_owned()
            )
        );
        assert_eq!(
            JobSubjects::from(&Subjects::default()).job_stream(),
            "SWITCHBOARD_JOBS"
        );
        // The job wildcard must not capture the events, nor the dead letters.
        assert!(
            !s.event(JobType::SmsSend, EventKind::Sent)
                .starts_with("t-1.a.jobs.")
        );
        assert!(!s.dead_letter(JobType::Lookup).starts_with("t-1.a.jobs."));
    }

    #[test]
    fn a_valid_job_has_no_problems_and_its_id_defaults_to_the_key() {
        let mut job = sms();
        assert_eq!(job.validate(), []);
        assert_eq!(job.id(), "j-1");
        job.job_id = None;
        assert_eq!(job.id(), "k-1");
        job.from = None;
        job.messaging_service_sid = Some("MG0123456789abcdef0123456789abcdef".into());
        job.body = None;
        job.media_urls = vec!["HTTPS://cdn.example.com:8443/a.png?x=1".into(); 10];
        job.status_callback = Some("http://[::1]:8080/status".into());
        job.validity_period = Some(36000);
        job.metadata = json!({"a": [1, 2, 3]});
        assert_eq!(job.validate(), []);
        job.from = Some("ACME Shop".into());
        job.messaging_service_sid = None;
        assert_eq!(job.validate(), []);
    }

    #[test]
    fn validate_reports_every_problem_with_its_field() {
        let job = SendSmsJob {
            version: 1,
            job_id: Some("has space".into()),
            idempotency_key: String::new(),
            account: AccountRef::Id(0),
            to: "+1 415 555 1234".into(),
            from: None,
            messaging_service_sid: None,
            body: Some("x".repeat(1601)),
            media_urls: vec!["https://ok.example/a".into(); 11]
                .into_iter()
                .chain(["mailto:a@b.c".to_owned()])
                .collect(),
            status_callback: Some("https://under_score.example.com/cb".into()),
            validity_period: Some(0),
            metadata: json!({"blob": "x".repeat(MAX_METADATA_BYTES)}),
        };
        let problems = job.validate();
        assert_eq!(
            fields(&problems),
            [
                "job_id",
                "idempotency_key",
                "account.id",
                "metadata",
                "to",
                "from",
                "body",
                "media_urls",
                "media_urls[11]",
                "status_callback",
                "validity_period"
            ],
            "{problems:#?}"
        );
        assert_eq!(problems[6].message, "1601 characters; at most 1600");
    }

    #[test]
    fn sender_and_content_rules() {
        let check = |f: &dyn Fn(&mut SendSmsJob)| {
            let mut job = sms();
            f(&mut job);
            job.validate()
        };
        let both =
            check(&|j| j.messaging_service_sid = Some("MG0123456789abcdef0123456789abcdef".into()));
        assert_eq!(fields(&both), ["messaging_service_sid"]);
        let bad_mg = check(&|j| {
            j.from = None;
            j.messaging_service_sid = Some("MG123".into());
        });
        assert_eq!(fields(&bad_mg), ["messaging_service_sid"]);
        for sender in ["", "TwelveChars1", "12345", "Shop!", "+0123456789"] {
            let p = check(&|j| j.from = Some(sender.into()));
            assert_eq!(fields(&p), ["from"], "{sender:?}");
        }
        let empty_body = check(&|j| j.body = Some(String::new()));
        assert_eq!(fields(&empty_body), ["body"]);
        assert_eq!(
            check(&|j| j.body = Some("é".repeat(1600))),
            [],
            "characters, not bytes"
        );
        for url in [
            "http://",
            "https:///x",
            "https://user:pw@example.com/",
            "https://example.com:port/",
            "https://exa mple.com/",
            "//example.com/a",
        ] {
            let p = check(&|j| j.media_urls = vec![url.into()]);
            assert_eq!(fields(&p), ["media_urls[0]"], "{url:?}");
        }
        // Underscores are fine in the path of a status callback, not in its host.
        assert_eq!(
            check(&|j| j.status_callback = Some("https://a.example/x_y".into())),
            []
        );
        for id in [Some("x".repeat(129)), Some(String::new())] {
            assert_eq!(fields(&check(&|j| j.job_id = id.clone())), ["job_id"]);
        }
        let named = check(&|j| j.account = AccountRef::Name(" ".into()));
        assert_eq!(fields(&named), ["account.name"]);
        assert_eq!(fields(&check(&|j| j.version = 2)), ["version"]);
    }

    #[test]
    fn lookup_rules() {
        let mut job = LookupJob {
            version: 1,
            job_id: None,
            idempotency_key: "k".into(),
            account: AccountRef::Id(7),
            number: "+14155551234".into(),
            api: LookupApi::V2 { fields: vec![] },
            metadata: Json::Null,
        };
        assert_eq!(job.validate(), []);
        assert_eq!(job.id(), "k");
        job.api = LookupApi::V1 {
            types: vec!["carrier".into(), "caller-name".into()],
        };
        assert_eq!(job.validate(), []);
        job.number = "4155551234".into();
        job.api = LookupApi::V2 {
            fields: vec!["caller_name".into(), "carrier".into(), "caller_name".into()],
        };
        assert_eq!(
            fields(&job.validate()),
            ["number", "api.v2.fields[1]", "api.v2.fields[2]"]
        );
        let v1: LookupJob = serde_json::from_value(json!({
            "version": 1, "idempotency_key": "k", "account": {"id": 1},
            "number": "+14155551234", "api": {"v1": {}}
        }))
        .unwrap();
        assert_eq!(v1.api, LookupApi::V1 { types: vec![] });
        for api in [
            json!({"v3": {}}),
            json!({"v1": {"fields": []}}),
            json!({"v1": {}, "v2": {}}),
        ] {
            let doc = json!({
                "version": 1, "idempotency_key": "k", "account": {"id": 1},
                "number": "+14155551234", "api": api
            });
            assert!(serde_json::from_value::<LookupJob>(doc).is_err(), "{api}");
        }
    }

    #[test]
    fn account_is_an_id_or_a_name() {
        let parse = |v: Json| serde_json::from_value::<AccountRef>(v);
        assert_eq!(parse(json!({"id": 42})).unwrap(), AccountRef::Id(42));
        assert_eq!(
            parse(json!({"name": "acme"})).unwrap(),
            AccountRef::Name("acme".into())
        );
        for bad in [
            json!({"id": 1, "name": "acme"}),
            json!({}),
            json!({"slug": "acme"}),
            json!("acme"),
            json!({"id": "42"}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::to_value(AccountRef::Id(3)).unwrap(),
            json!({"id": 3})
        );
    }

    #[test]
    fn decode_rejects_with_a_failed_event_and_never_drops() {
        let reject = |doc: &str| decode_send_sms(doc.as_bytes(), None).unwrap_err();

        let r = reject("{nope");
        assert_eq!(
            (r.error.code.as_str(), r.error.field.as_deref()),
            ("invalid_job", None)
        );
        assert!(
            r.error.message.starts_with("not JSON"),
            "{}",
            r.error.message
        );
        let event = r.to_event("seq:17", "2026-01-01T00:00:00Z");
        assert_eq!(
            (event.job_id.as_str(), event.kind),
            ("seq:17", EventKind::Failed)
        );

        let r = reject("[1]");
        assert_eq!(r.error.message, "a job is a JSON object");

        let r = reject(
            r#"{"version": 2, "idempotency_key": "k9", "whatever": true, "metadata": {"m": 1}}"#,
        );
        assert_eq!(r.error.code, codes::UNSUPPORTED_VERSION);
        assert_eq!(r.error.field.as_deref(), Some("version"));
        let event = r.to_event("ignored", "t");
        assert_eq!(
            event.job_id, "k9",
            "the idempotency key stands in for a missing job_id"
        );
        assert_eq!(event.metadata, json!({"m": 1}));
        assert_eq!(event.job, JobType::SmsSend);

        let r = reject(r#"{"job_id": "j", "idempotency_key": "k"}"#);
        assert_eq!(
            (
                r.error.code.as_str(),
                r.error.field.as_deref(),
                r.job_id.as_deref()
            ),
            ("invalid_job", Some("version"), Some("j"))
        );

        let r = reject(
            r#"{"version": 1, "idempotency_key": "k", "account": {"id": 1}, "to": "+14155551234", "from": "+15005550006", "media_url": ["https://a.example/x.png"]}"#,
        );
        assert_eq!(
            r.error.field.as_deref(),
            Some("media_url"),
            "{}",
            r.error.message
        );
        assert!(
            r.error.problems[0]
                .message
                .starts_with("unknown field `media_url`")
        );

        let r = reject(r#"{"version": 1, "idempotency_key": "k", "account": {"id": 1}}"#);
        assert_eq!(r.error.field.as_deref(), Some("to"));
        assert_eq!(fields(&r.error.problems), ["to", "from", "body"]);

        let r = reject(
            r#"{"version": 1, "idempotency_key": "k", "account": {"id": 1}, "to": 4155551234}"#,
        );
        assert_eq!(
            r.error.field.as_deref(),
            Some("to"),
            "a wrong type names its field"
        );
        assert!(
            r.error
                .message
                .starts_with("to: must be a string, not a number"),
            "{}",
            r.error.message
        );

        let r = reject(
            r#"{"version": 1, "idempotency_key": "k", "account": {"id": 1}, "to": "+14155551234"}"#,
        );
        assert_eq!(fields(&r.error.problems), ["from", "body"]);
        assert_eq!(
            r.error.message,
            "from: from or messaging_service_sid is required; body: body or media_urls is required"
        );

        let ok = decode_send_sms(br#"{"version": 1, "idempotency_key": "k", "account": {"id": 1}, "to": "+14155551234", "from": "ACME", "body": "hi"}"#, Some("k")).unwrap();
        assert_eq!(ok.id(), "k");
        assert!(decode_lookup(br#"{"version": 1, "idempotency_key": "k", "account": {"id": 1}, "number": "+14155551234", "api": {"v2": {"fields": ["nope"]}}}"#, None).is_err());
    }

    /// Every field missing at once is reported, not only the first serde meets, in the
    /// contract's order, with the rules the other fields break.
    #[test]
    fn every_missing_field_is_reported() {
        let reject = |doc: &str| decode_send_sms(doc.as_bytes(), None).unwrap_err();
        let r = reject(r#"{"version": 1}"#);
        assert_eq!(r.error.code, codes::INVALID_JOB);
        assert_eq!(
            fields(&r.error.problems),
            ["idempotency_key", "account", "to", "from", "body"],
            "{:#?}",
            r.error.problems
        );
        assert_eq!(
            r.error.message,
            "idempotency_key: required; account: required; to: required; from: from or messaging_service_sid is required; body: body or media_urls is required"
        );
        assert_eq!(r.error.field.as_deref(), Some("idempotency_key"));

        // No account and no to: both (the defect reported only `account`).
        let r = reject(
            r#"{"version": 1, "idempotency_key": "k", "from": "+15005550006", "body": "hi"}"#,
        );
        assert_eq!(fields(&r.error.problems), ["account", "to"]);
        assert_eq!(r.error.message, "account: required; to: required");

        // Without a version, too: the version is one problem among the others.
        let r = reject(r#"{"job_id": "j", "to": "+14155551234", "from": "ACME", "body": "x"}"#);
        assert_eq!(
            fields(&r.error.problems),
            ["version", "idempotency_key", "account"]
        );
        assert_eq!(r.job_id.as_deref(), Some("j"));

        let lookup = decode_lookup(br#"{"version": 1, "job_id": "l-1"}"#, None).unwrap_err();
        assert_eq!(
            fields(&lookup.error.problems),
            ["idempotency_key", "account", "number", "api"]
        );
    }

    /// Missing fields, unknown fields, wrong types and broken rules come back together, each
    /// with its path, in a stable order: the whole document and unknown fields first, then the
    /// contract's fields in the order of its tables, a field before its elements.
    #[test]
    fn missing_unknown_mistyped_and_invalid_fields_are_reported_together() {
        let doc = r#"{
            "validity_period": 1.5, "media_url": [], "version": 1, "job_id": "has space",
            "account": {"id": "42", "slug": "x"}, "to": "555-1234", "from": 12,
            "messaging_service_sid": "MG0123456789abcdef0123456789abcdef",
            "media_urls": ["ftp://a.example/x.png", 7, "https://a.example/ok.png"],
            "status_callback": "https://my_host.example.com/cb", "metadata": {"m": 1}
        }"#;
        let r = decode_send_sms(doc.as_bytes(), Some("k-1")).unwrap_err();
        let got: Vec<(&str, &str)> = r
            .error
            .problems
            .iter()
            .map(|p| (p.field.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "media_url",
                    "unknown field `media_url`, expected one of `version`, `job_id`, `idempotency_key`, `account`, `metadata`, `to`, `from`, `messaging_service_sid`, `body`, `media_urls`, `status_callback`, `validity_period`"
                ),
                ("job_id", "1 to 128 characters of A-Z a-z 0-9 . _ : -"),
                ("idempotency_key", "required"),
                (
                    "account.slug",
                    "unknown field `slug`, expected one of `id`, `name`"
                ),
                ("account.id", "must be a whole number, not a string"),
                ("to", "must be E.164: '+' then 8 to 15 digits"),
                ("from", "must be a string, not a number"),
                (
                    "media_urls[0]",
                    "must be an absolute http:// or https:// URL"
                ),
                ("media_urls[1]", "must be a string, not a number"),
                (
                    "status_callback",
                    "the host name must not contain '_' (Twilio rejects it)"
                ),
                ("validity_period", "must be a whole number, not 1.5"),
            ],
        );
        assert_eq!(r.error.field.as_deref(), Some("media_url"));
        assert_eq!(r.job_id.as_deref(), Some("has space"));
        assert_eq!(
            r.metadata,
            json!({"m": 1}),
            "the metadata still reaches the event"
        );
        // The same document decodes to the same problems every time.
        let again = decode_send_sms(doc.as_bytes(), Some("k-1")).unwrap_err();
        assert_eq!(again.error, r.error);
        // With a key, the Nats-Msg-Id rule joins the others at the key's place.
        let keyed = doc.replace(
            r#""version": 1,"#,
            r#""version": 1, "idempotency_key": "k-2","#,
        );
        let r = decode_send_sms(keyed.as_bytes(), Some("k-1")).unwrap_err();
        assert_eq!(
            fields(&r.error.problems)[..3],
            ["media_url", "job_id", "idempotency_key"]
        );
        assert!(r.error.problems[2].message.contains("Nats-Msg-Id"));

        // Accounts and lookup APIs name the part at fault.
        let account = |a: &str| {
            let doc = format!(
                r#"{{"version": 1, "idempotency_key": "k", "account": {a}, "to": "+14155551234", "from": "ACME", "body": "x"}}"#
            );
            let r = decode_send_sms(doc.as_bytes(), None).unwrap_err();
            r.error
                .problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            account(r#""acme""#),
            ["account: must be {\"id\": <number>} or {\"name\": <text>}, not a string"]
        );
        assert_eq!(account("{}"), ["account: give id or name"]);
        assert_eq!(
            account(r#"{"id": 1, "name": "a"}"#),
            ["account: give either id or name, not both"]
        );
        assert_eq!(account(r#"{"id": 0}"#), ["account.id: must be positive"]);
        assert_eq!(
            account(r#"{"name": 5}"#),
            ["account.name: must be a string, not a number"]
        );
        let lookup = |api: &str| {
            let doc = format!(
                r#"{{"version": 1, "idempotency_key": "k", "account": {{"id": 1}}, "number": "+14155551234", "api": {api}}}"#
            );
            let r = decode_lookup(doc.as_bytes(), None).unwrap_err();
            fields(&r.error.problems)
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(lookup(r#"{"v3": {}}"#), ["api.v3", "api"]);
        assert_eq!(lookup(r#"{"v1": {}, "v2": {}}"#), ["api"]);
        assert_eq!(lookup(r#"{"v1": {"fields": []}}"#), ["api.v1.fields"]);
        assert_eq!(
            lookup(r#"{"v2": {"fields": "caller_name"}}"#),
            ["api.v2.fields"]
        );
        assert_eq!(
            lookup(r#"{"v2": {"fields": [1, "nope", "caller_name", "caller_name"]}}"#),
            ["api.v2.fields[0]", "api.v2.fields[1]", "api.v2.fields[3]"]
        );
        let r = decode_lookup(
            br#"{"version": 1, "idempotency_key": 7, "account": {"name": "a"}, "number": "555", "api": {"v1": {"types": ["carrier", "x"]}}}"#,
            None,
        )
        .unwrap_err();
        assert_eq!(
            fields(&r.error.problems),
            ["idempotency_key", "number", "api.v1.types[1]"]
        );
    }

    /// What decodes is exactly what serde reads, defaults included.
    #[test]
    fn decoding_agrees_with_serde_on_valid_jobs() {
        for doc in [
            json!({"version": 1, "idempotency_key": "k", "account": {"id": 1}, "to": "+14155551234", "from": "ACME", "body": "hi"}),
            json!({"version": 1, "job_id": null, "idempotency_key": "k", "account": {"name": "acme"}, "to": "+14155551234", "messaging_service_sid": "MG0123456789abcdef0123456789abcdef", "media_urls": ["https://a.example/x.png"], "status_callback": "https://a.example/cb", "validity_period": 36000, "metadata": {"a": [1]}}),
        ] {
            let decoded = decode_send_sms(&crate::encode(&doc), None).unwrap();
            assert_eq!(decoded, serde_json::from_value::<SendSmsJob>(doc).unwrap());
        }
        for doc in [
            json!({"version": 1, "idempotency_key": "k", "account": {"id": 1}, "number": "+14155551234", "api": {"v1": {}}}),
            json!({"version": 1, "idempotency_key": "k", "account": {"id": 1}, "number": "+14155551234", "api": {"v2": {"fields": ["caller_name"]}}, "metadata": 3}),
        ] {
            let decoded = decode_lookup(&crate::encode(&doc), None).unwrap();
            assert_eq!(decoded, serde_json::from_value::<LookupJob>(doc).unwrap());
        }
    }

    #[test]
    fn reply_to_must_be_under_an_allowed_prefix() {
        let inbox = [REPLY_TO_PREFIX];
        assert_eq!(check_reply_to(None, &inbox), Ok(()));
        assert_eq!(check_reply_to(Some("_INBOX.abc"), &inbox), Ok(()));
        assert_eq!(check_reply_to(Some("_INBOX.app.order-7"), &inbox), Ok(()));
        let refused = |subject: &str, prefixes: &[&str]| {
            let problem = check_reply_to(Some(subject), prefixes).unwrap_err();
            assert_eq!(problem.field, HEADER_REPLY_TO);
            problem.message
        };
        assert_eq!(
            refused("switchboard.jobs.sms.send", &inbox),
            "'switchboard.jobs.sms.send' is not under '_INBOX.': the final event goes only to a reply inbox"
        );
        // A service's own inbox (`_INBOX_ingress`) is not under `_INBOX.`.
        for subject in ["_INBOX_ingress.x.1", "_INBOX", "$JS.API.STREAM.DELETE.X"] {
            assert!(
                refused(subject, &inbox).contains("is not under '_INBOX.'"),
                "{subject}"
            );
        }
        for subject in [
            "_INBOX.",
            "_INBOX.>",
            "_INBOX.*",
            "_INBOX..x",
            "_INBOX.a b",
            "_INBOX.a\r\nPUB x",
        ] {
            assert!(
                refused(subject, &inbox).contains("is not a subject to publish to"),
                "{subject:?}"
            );
        }
        assert_eq!(
            refused("other.x", &["_INBOX.", "app.replies."]),
            "'other.x' is not under '_INBOX.' or 'app.replies.': the final event goes only to a reply inbox"
        );
        assert_eq!(
            check_reply_to(Some("app.replies.7"), &["_INBOX.", "app.replies."]),
            Ok(())
        );

        // On a job: rejected whatever its body, named by its id, the body's problems after.
        let body = serde_json::to_vec(&sms()).unwrap();
        let decoded = decode_send_sms(&body, Some("k-1"));
        assert!(decoded.is_ok());
        let kept = check_job_reply_to(decoded, JobType::SmsSend, &body, Some("k-1"), None, &inbox);
        assert!(kept.is_ok());
        let rejected = check_job_reply_to(
            decode_send_sms(&body, Some("k-1")),
            JobType::SmsSend,
            &body,
            Some("k-1"),
            Some("switchboard.webhook.request"),
            &inbox,
        )
        .unwrap_err();
        assert_eq!(rejected.job_id.as_deref(), Some("j-1"));
        assert_eq!(rejected.error.code, codes::INVALID_JOB);
        assert_eq!(rejected.error.field.as_deref(), Some(HEADER_REPLY_TO));
        assert_eq!(
            rejected.error.message,
            "Switchboard-Reply-To: 'switchboard.webhook.request' is not under '_INBOX.': the final event goes only to a reply inbox"
        );
        let bad_body = br#"{"version":1,"idempotency_key":"k-2","account":{"id":1}}"#;
        let both = check_job_reply_to(
            decode_lookup(bad_body, None),
            JobType::Lookup,
            bad_body,
            None,
            Some("elsewhere"),
            &inbox,
        )
        .unwrap_err();
        assert_eq!(both.job_id.as_deref(), Some("k-2"));
        assert_eq!(both.error.problems[0].field, HEADER_REPLY_TO);
        assert!(both.error.problems.len() > 1, "{:?}", both.error.problems);
    }

    #[test]
    fn msg_id_must_match_the_key() {
        assert_eq!(check_msg_id(None, "k"), Ok(()));
        assert_eq!(check_msg_id(Some("k"), "k"), Ok(()));
        assert_eq!(
            check_msg_id(Some("other"), "k").unwrap_err().field,
            "idempotency_key"
        );
        let job = br#"{"version": 1, "idempotency_key": "k", "account": {"id": 1}, "to": "+14155551234", "from": "ACME", "body": "hi"}"#;
        assert!(decode_send_sms(job, None).is_ok());
        let r = decode_send_sms(job, Some("other")).unwrap_err();
        assert_eq!(fields(&r.error.problems), ["idempotency_key"]);
        // With no id in the document, the header names the job in its failed event.
        let r = decode_lookup(b"[]", Some("m-1")).unwrap_err();
        assert_eq!(r.to_event("seq:1", "t").job_id, "m-1");
        let r = decode_lookup(b"[]", None).unwrap_err();
        assert_eq!(r.to_event("seq:1", "t").job_id, "seq:1");
    }

    #[test]
    fn events_round_trip_and_tolerate_new_fields() {
        let event = JobEvent {
            version: EVENT_VERSION,
            job_id: "j".into(),
            job: JobType::SmsSend,
            kind: EventKind::Status,
            at: "2026-11-25T19:00:00Z".into(),
            attempt: 1,
            twilio_sid: Some("SM0123456789abcdef0123456789abcdef".into()),
            status: Some("undelivered".into()),
            error: Some(JobError {
                code: "30007".into(),
                message: "Carrier violation".into(),
                more_info: Some("https://www.twilio.com/docs/errors/30007".into()),
                field: None,
                problems: vec![],
            }),
            result: None,
            metadata: json!({"order": 1}),
        };
        let bytes = crate::encode(&event);
        assert_eq!(crate::decode::<JobEvent>(&bytes).unwrap(), event);
        let mut doc: Json = serde_json::from_slice(&bytes).unwrap();
        doc["added_in_a_later_release"] = json!(true);
        assert_eq!(serde_json::from_value::<JobEvent>(doc).unwrap(), event);
        assert!(EventKind::Sent.is_final() && !EventKind::Status.is_final());
        assert!(!EventKind::Accepted.is_final());
        for kind in [
            EventKind::Accepted,
            EventKind::Sent,
            EventKind::Completed,
            EventKind::Failed,
            EventKind::DeadLettered,
            EventKind::Status,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
        }
    }

    /// `docs/jobs.md` and `docs/schemas/` against the types: each schema is well-formed and
    /// describes exactly the struct's fields, and each documented example deserializes,
    /// validates, and matches its schema.
    mod docs {
        use super::*;
        use std::path::PathBuf;

        fn docs_dir() -> PathBuf {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
        }

        fn schema(name: &str) -> Json {
            let path = docs_dir().join("schemas").join(name);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
        }

        /// The fenced blocks of jobs.md as (info string, content).
        fn blocks() -> Vec<(String, String)> {
            let text = std::fs::read_to_string(docs_dir().join("jobs.md")).unwrap();
            let mut out = Vec::new();
            let mut current: Option<(String, String)> = None;
            for line in text.lines() {
                match (&mut current, line.strip_prefix("```")) {
                    (None, Some(info)) => current = Some((info.trim().to_owned(), String::new())),
                    (Some(_), Some(_)) => out.push(current.take().unwrap()),
                    (Some((_, body)), None) => {
                        body.push_str(line);
                        body.push('\n');
                    }
                    (None, None) => {}
                }
            }
            assert!(current.is_none(), "unterminated code block");
            out
        }

        fn examples(tag: &str) -> Vec<Json> {
            let found: Vec<Json> = blocks()
                .into_iter()
                .filter(|(info, _)| info == &format!("json {tag}"))
                .map(|(_, body)| {
                    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{tag}: {e}\n{body}"))
                })
                .collect();
            assert!(!found.is_empty(), "no `json {tag}` example in jobs.md");
            found
        }

        #[test]
        fn schemas_are_draft_2020_12_and_use_only_checked_keywords() {
            for name in [
                "send-sms-job.v1.json",
                "lookup-job.v1.json",
                "job-event.v1.json",
            ] {
                let s = schema(name);
                assert_eq!(
                    s["$schema"], "https://json-schema.org/draft/2020-12/schema",
                    "{name}"
                );
                assert!(
                    s["$id"].as_str().is_some_and(|id| id.ends_with(":v1")),
                    "{name}"
                );
                assert_eq!(s["type"], "object", "{name}");
                assert_eq!(s["properties"]["version"]["const"], 1, "{name}");
                check_keywords(&s, name);
            }
        }

        /// The schema's properties are the struct's fields: a field added on one side only fails.
        #[test]
        fn schemas_describe_exactly_the_rust_fields() {
            let keys = |v: Json| {
                let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
                k.sort();
                k
            };
            let props = |name: &str| keys(schema(name)["properties"].clone());
            let required = |name: &str| {
                let mut r: Vec<String> = schema(name)["required"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect();
                r.sort();
                r
            };
            let mut full = sms();
            full.messaging_service_sid = Some("MG0123456789abcdef0123456789abcdef".into());
            full.media_urls = vec!["https://a.example/x".into()];
            full.status_callback = Some("https://a.example/cb".into());
            full.validity_period = Some(60);
            full.metadata = json!({});
            assert_eq!(
                keys(serde_json::to_value(&full).unwrap()),
                props("send-sms-job.v1.json")
            );
            let minimal = SendSmsJob {
                job_id: None,
                from: None,
                body: None,
                metadata: Json::Null,
                ..sms()
            };
            assert_eq!(
                keys(serde_json::to_value(&minimal).unwrap()),
                required("send-sms-job.v1.json")
            );
            assert_eq!(
                schema("send-sms-job.v1.json")["additionalProperties"],
                false
            );

            let lookup = LookupJob {
                version: 1,
                job_id: Some("j".into()),
                idempotency_key: "k".into(),
                account: AccountRef::Id(1),
                number: "+14155551234".into(),
                api: LookupApi::V1 { types: vec![] },
                metadata: json!({}),
            };
            assert_eq!(
                keys(serde_json::to_value(&lookup).unwrap()),
                props("lookup-job.v1.json")
            );
            let minimal = LookupJob {
                job_id: None,
                metadata: Json::Null,
                ..lookup
            };
            assert_eq!(
                keys(serde_json::to_value(&minimal).unwrap()),
                required("lookup-job.v1.json")
            );
            assert_eq!(schema("lookup-job.v1.json")["additionalProperties"], false);

            let event = JobEvent {
                version: 1,
                job_id: "j".into(),
                job: JobType::Lookup,
                kind: EventKind::Completed,
                at: "t".into(),
                attempt: 1,
                twilio_sid: Some("SM".into()),
                status: Some("queued".into()),
                error: Some(JobError {
                    code: "1".into(),
                    message: "m".into(),
                    more_info: Some("u".into()),
                    field: Some("f".into()),
                    problems: vec![Problem::new("f", "m")],
                }),
                result: Some(json!({})),
                metadata: json!({}),
            };
            let value = serde_json::to_value(&event).unwrap();
            assert_eq!(keys(value.clone()), props("job-event.v1.json"));
            assert_eq!(
                keys(value["error"].clone()),
                keys(schema("job-event.v1.json")["properties"]["error"]["properties"].clone())
            );
            let bare = JobEvent {
                twilio_sid: None,
                status: None,
                error: None,
                result: None,
                metadata: Json::Null,
                ..event
            };
            assert_eq!(
                keys(serde_json::to_value(&bare).unwrap()),
                required("job-event.v1.json")
            );
            // The enumerations agree too.
            let kinds: Vec<Json> = schema("job-event.v1.json")["properties"]["kind"]["enum"]
                .as_array()
                .unwrap()
                .clone();
            assert_eq!(kinds.len(), 6);
            for kind in kinds {
                serde_json::from_value::<EventKind>(kind).unwrap();
            }
            let lookup_schema = schema("lookup-job.v1.json");
            let v2 = &lookup_schema["properties"]["api"]["oneOf"][1]["properties"]["v2"]["properties"]
                ["fields"]["items"]["enum"];
            assert_eq!(*v2, json!(LOOKUP_V2_FIELDS));
            let v1 = &lookup_schema["properties"]["api"]["oneOf"][0]["properties"]["v1"]["properties"]
                ["types"]["items"]["enum"];
            assert_eq!(*v1, json!(LOOKUP_V1_TYPES));
        }

        #[test]
        fn documented_jobs_decode_validate_and_match_their_schemas() {
            let sms_schema = schema("send-sms-job.v1.json");
            for doc in examples("send-sms-job") {
                let job = decode_send_sms(&crate::encode(&doc), None)
                    .unwrap_or_else(|r| panic!("{r}\n{doc}"));
                assert_eq!(
                    schema_errors(&sms_schema, &doc),
                    Vec::<String>::new(),
                    "{doc}"
                );
                assert_eq!(serde_json::to_value(&job).unwrap(), doc, "round trip");
            }
            let lookup_schema = schema("lookup-job.v1.json");
            for doc in examples("lookup-job") {
                let job = decode_lookup(&crate::encode(&doc), None)
                    .unwrap_or_else(|r| panic!("{r}\n{doc}"));
                assert_eq!(
                    schema_errors(&lookup_schema, &doc),
                    Vec::<String>::new(),
                    "{doc}"
                );
                assert_eq!(serde_json::to_value(&job).unwrap(), doc, "round trip");
            }
            let event_schema = schema("job-event.v1.json");
            for doc in examples("job-event") {
                let event: JobEvent = serde_json::from_value(doc.clone()).unwrap();
                assert_eq!(
                    schema_errors(&event_schema, &doc),
                    Vec::<String>::new(),
                    "{doc}"
                );
                assert_eq!(serde_json::to_value(&event).unwrap(), doc, "round trip");
            }
        }

        #[test]
        fn the_documented_invalid_job_gets_the_documented_event() {
            let [invalid] = &examples("send-sms-job-invalid")[..] else {
                panic!("one invalid example")
            };
            let [expected] = &examples("job-event-for-invalid")[..] else {
                panic!("one event for it")
            };
            assert!(!schema_errors(&schema("send-sms-job.v1.json"), invalid).is_empty());
            let rejected = decode_send_sms(&crate::encode(invalid), Some("bad-1")).unwrap_err();
            let event = rejected.to_event("unused", expected["at"].as_str().unwrap());
            assert_eq!(serde_json::to_value(&event).unwrap(), *expected);
            assert!(schema_errors(&schema("job-event.v1.json"), expected).is_empty());
        }

        /// Every `nats pub`/`nats req` command publishes a job that is valid for its subject and
        /// carries a `Nats-Msg-Id` equal to its key.
        #[test]
        fn cli_examples_publish_valid_jobs() {
            let mut seen = 0;
            for (info, body) in blocks() {
                if info != "sh" {
                    continue;
                }
                for line in body.lines() {
                    let Some(rest) = line
                        .strip_prefix("nats req ")
                        .or(line.strip_prefix("nats pub "))
                    else {
                        continue;
                    };
                    let subject = rest.split_whitespace().next().unwrap();
                    let payload = &rest[rest.find('\'').unwrap() + 1..rest.rfind('\'').unwrap()];
                    let msg_id = rest
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("Nats-Msg-Id:"));
                    let key = match subject {
                        "switchboard.jobs.sms.send" => {
                            decode_send_sms(payload.as_bytes(), msg_id)
                                .unwrap_or_else(|r| panic!("{r}: {line}"))
                                .idempotency_key
                        }
                        "switchboard.jobs.lookup" => {
                            decode_lookup(payload.as_bytes(), msg_id)
                                .unwrap_or_else(|r| panic!("{r}: {line}"))
                                .idempotency_key
                        }
                        // Request/reply subjects (no JetStream, no Nats-Msg-Id): checked by
                        // `crate::tests::request_reply_examples_in_jobs_md_decode`.
                        "switchboard.outbound.http" | "switchboard.behavior.run" => continue,
                        other => panic!("unknown subject {other}"),
                    };
                    assert_eq!(check_msg_id(msg_id, &key), Ok(()), "{line}");
                    assert!(msg_id.is_some(), "{line}");
                    seen += 1;
                }
            }
            assert!(seen >= 3, "{seen} CLI examples");
        }

        #[test]
        fn the_schema_checker_catches_what_the_contract_forbids() {
            let s = schema("send-sms-job.v1.json");
            let good = json!({"version": 1, "idempotency_key": "k", "account": {"id": 1}, "to": "+14155551234", "from": "Shop", "body": "hi"});
            assert_eq!(schema_errors(&s, &good), Vec::<String>::new());
            let broken = |f: &dyn Fn(&mut Json)| {
                let mut doc = good.clone();
                f(&mut doc);
                schema_errors(&s, &doc)
            };
            let cases: Vec<(&str, Vec<String>)> = vec![
                ("unknown field", broken(&|d| d["media_url"] = json!([]))),
                ("version 2", broken(&|d| d["version"] = json!(2))),
                (
                    "both senders",
                    broken(&|d| {
                        d["messaging_service_sid"] = json!("MG0123456789abcdef0123456789abcdef")
                    }),
                ),
                (
                    "no sender",
                    broken(&|d| {
                        d.as_object_mut().unwrap().remove("from");
                    }),
                ),
                (
                    "no content",
                    broken(&|d| {
                        d.as_object_mut().unwrap().remove("body");
                    }),
                ),
                ("empty body", broken(&|d| d["body"] = json!(""))),
                (
                    "long body",
                    broken(&|d| d["body"] = json!("x".repeat(1601))),
                ),
                ("bad to", broken(&|d| d["to"] = json!("+0123"))),
                (
                    "long sender id",
                    broken(&|d| d["from"] = json!("TwelveChars1")),
                ),
                (
                    "digits-only sender id",
                    broken(&|d| d["from"] = json!("12345")),
                ),
                (
                    "11 media",
                    broken(&|d| d["media_urls"] = json!(vec!["https://a.example/x"; 11])),
                ),
                (
                    "ftp media",
                    broken(&|d| d["media_urls"] = json!(["ftp://a.example/x"])),
                ),
                (
                    "underscore host",
                    broken(&|d| d["status_callback"] = json!("https://a_b.example/x")),
                ),
                (
                    "account both",
                    broken(&|d| d["account"] = json!({"id": 1, "name": "a"})),
                ),
                ("validity", broken(&|d| d["validity_period"] = json!(36001))),
            ];
            for (case, errors) in cases {
                assert!(!errors.is_empty(), "{case}");
            }
            // What the schema allows, the Rust checks allow too, and the other way round.
            assert_eq!(
                broken(&|d| d["status_callback"] = json!("https://a.example/x_y")),
                Vec::<String>::new()
            );
            let l = schema("lookup-job.v1.json");
            let lookup = json!({"version": 1, "idempotency_key": "k", "account": {"name": "a"}, "number": "+14155551234", "api": {"v1": {"types": ["carrier", "carrier"]}}});
            assert!(!schema_errors(&l, &lookup).is_empty(), "duplicates");
            assert!(decode_lookup(&crate::encode(&lookup), None).is_err());
        }

        const KEYWORDS: &[&str] = &[
            "$schema",
            "$id",
            "$defs",
            "$ref",
            "title",
            "description",
            "format",
            "type",
            "const",
            "enum",
            "required",
            "properties",
            "additionalProperties",
            "items",
            "minItems",
            "maxItems",
            "uniqueItems",
            "minLength",
            "maxLength",
            "pattern",
            "minimum",
            "maximum",
            "allOf",
            "anyOf",
            "oneOf",
            "not",
        ];

        /// Fails on a keyword [`schema_errors`] would silently ignore.
        fn check_keywords(schema: &Json, at: &str) {
            let Some(object) = schema.as_object() else {
                return;
            };
            for (key, value) in object {
                assert!(
                    KEYWORDS.contains(&key.as_str()),
                    "{at}: unchecked keyword {key}"
                );
                match key.as_str() {
                    "properties" | "$defs" => {
                        for (name, sub) in value.as_object().unwrap() {
                            check_keywords(sub, &format!("{at}/{key}/{name}"));
                        }
                    }
                    "allOf" | "anyOf" | "oneOf" => {
                        for (i, sub) in value.as_array().unwrap().iter().enumerate() {
                            check_keywords(sub, &format!("{at}/{key}/{i}"));
                        }
                    }
                    "items" | "not" => check_keywords(value, &format!("{at}/{key}")),
                    _ => {}
                }
            }
        }

        /// A JSON Schema checker for the keywords in [`KEYWORDS`] (enough for these schemas).
        fn schema_errors(schema: &Json, value: &Json) -> Vec<String> {
            let mut errors = Vec::new();
            check(schema, schema, value, "", &mut errors);
            errors
        }

        fn check(root: &Json, schema: &Json, value: &Json, at: &str, errors: &mut Vec<String>) {
            let Some(s) = schema.as_object() else {
                return;
            };
            if let Some(reference) = s.get("$ref").and_then(Json::as_str) {
                let name = reference.strip_prefix("#/$defs/").expect("local $ref");
                check(root, &root["$defs"][name], value, at, errors);
            }
            let mut out = Vec::new();
            let mut fail = |msg: String| out.push(format!("{at}: {msg}"));
            if let Some(t) = s.get("type") {
                let types: Vec<&str> = match t {
                    Json::Array(a) => a.iter().filter_map(Json::as_str).collect(),
                    other => vec![other.as_str().unwrap()],
                };
                let matches = |t: &str| match t {
                    "object" => value.is_object(),
                    "array" => value.is_array(),
                    "string" => value.is_string(),
                    "integer" => value.is_i64() || value.is_u64(),
                    "number" => value.is_number(),
                    "boolean" => value.is_boolean(),
                    "null" => value.is_null(),
                    other => panic!("type {other}"),
                };
                if !types.iter().any(|t| matches(t)) {
                    fail(format!("not of type {t}"));
                }
            }
            if let Some(c) = s.get("const")
                && c != value
            {
                fail(format!("is not {c}"));
            }
            if let Some(e) = s.get("enum")
                && !e.as_array().unwrap().contains(value)
            {
                fail(format!("not one of {e}"));
            }
            if let Some(text) = value.as_str() {
                let chars = text.chars().count() as u64;
                if s.get("minLength")
                    .and_then(Json::as_u64)
                    .is_some_and(|m| chars < m)
                {
                    fail("too short".into());
                }
                if s.get("maxLength")
                    .and_then(Json::as_u64)
                    .is_some_and(|m| chars > m)
                {
                    fail("too long".into());
                }
                if let Some(p) = s.get("pattern").and_then(Json::as_str)
                    && !regex::Regex::new(p).unwrap().is_match(text)
                {
                    fail(format!("does not match {p}"));
                }
            }
            if let Some(n) = value.as_f64() {
                if s.get("minimum")
                    .and_then(Json::as_f64)
                    .is_some_and(|m| n < m)
                {
                    fail("below the minimum".into());
                }
                if s.get("maximum")
                    .and_then(Json::as_f64)
                    .is_some_and(|m| n > m)
                {
                    fail("above the maximum".into());
                }
            }
            if let Some(items) = value.as_array() {
                let n = items.len() as u64;
                if s.get("minItems")
                    .and_then(Json::as_u64)
                    .is_some_and(|m| n < m)
                {
                    fail("too few items".into());
                }
                if s.get("maxItems")
                    .and_then(Json::as_u64)
                    .is_some_and(|m| n > m)
                {
                    fail("too many items".into());
                }
                if s.get("uniqueItems") == Some(&Json::Bool(true))
                    && items
                        .iter()
                        .enumerate()
                        .any(|(i, v)| items[..i].contains(v))
                {
                    fail("items are not unique".into());
                }
            }
            if let Some(object) = value.as_object() {
                if let Some(required) = s.get("required").and_then(Json::as_array) {
                    for name in required.iter().filter_map(Json::as_str) {
                        if !object.contains_key(name) {
                            fail(format!("{name} is required"));
                        }
                    }
                }
                let props = s.get("properties").and_then(Json::as_object);
                if s.get("additionalProperties") == Some(&Json::Bool(false)) {
                    for key in object.keys() {
                        if !props.is_some_and(|p| p.contains_key(key)) {
                            fail(format!("{key} is not allowed"));
                        }
                    }
                }
            }
            errors.append(&mut out);
            if let (Some(object), Some(props)) = (
                value.as_object(),
                s.get("properties").and_then(Json::as_object),
            ) {
                for (key, sub) in props {
                    if let Some(v) = object.get(key) {
                        check(root, sub, v, &format!("{at}/{key}"), errors);
                    }
                }
            }
            if let (Some(items), Some(sub)) = (value.as_array(), s.get("items")) {
                for (i, v) in items.iter().enumerate() {
                    check(root, sub, v, &format!("{at}/{i}"), errors);
                }
            }
            let passes = |sub: &Json| schema_errors_at(root, sub, value, at).is_empty();
            if let Some(all) = s.get("allOf").and_then(Json::as_array) {
                for sub in all {
                    check(root, sub, value, at, errors);
                }
            }
            if let Some(any) = s.get("anyOf").and_then(Json::as_array)
                && !any.iter().any(passes)
            {
                errors.push(format!("{at}: matches none of anyOf"));
            }
            if let Some(one) = s.get("oneOf").and_then(Json::as_array) {
                let n = one.iter().filter(|sub| passes(sub)).count();
                if n != 1 {
                    errors.push(format!("{at}: matches {n} of oneOf, not exactly 1"));
                }
            }
            if let Some(not) = s.get("not")
                && passes(not)
            {
                errors.push(format!("{at}: matches `not`"));
            }
        }

        fn schema_errors_at(root: &Json, schema: &Json, value: &Json, at: &str) -> Vec<String> {
            let mut errors = Vec::new();
            check(root, schema, value, at, &mut errors);
            errors
        }
    }
}
