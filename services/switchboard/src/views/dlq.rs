//! `switchboard dlq list|show|replay`: the dead-letter stream (`{PREFIX}_JOBS_DLQ`, subjects
//! `{prefix}.dlq.jobs.>`), where the outbound service copies every job that failed or ran out
//! of retries, byte for byte with its headers plus `Switchboard-Error-Code`,
//! `Switchboard-Attempts` and `Switchboard-Error-Message` (docs/jobs.md). Read with ephemeral
//! ordered consumers and by sequence (NATS 2.9 features only); `replay` publishes a job again to
//! its original subject.

use std::time::Duration;

use anyhow::{Context as _, bail};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use clap::{Args, Subcommand, ValueEnum};
use futures::StreamExt as _;
use serde_json::{Value, json};
use switchboard_store::Store;
use switchboard_wire::outbound::{
    DUPLICATE_WINDOW_SECS, EventKind, HEADER_DEAD_LETTER_ATTEMPTS, HEADER_DEAD_LETTER_CODE,
    HEADER_MSG_ID, HEADER_REPLY_TO, JobSubjects, JobType, MAX_ID_LEN,
};
use time::OffsetDateTime;

use super::{
    HIDDEN, PageArgs, Table, WindowArgs, is_sensitive, json_time, or_dash, print_list, rfc3339,
    short_time, time_and_age,
};

/// The outbound service's header with the last error's message (one line).
pub const HEADER_DEAD_LETTER_MESSAGE: &str = "Switchboard-Error-Message";

/// The headers the outbound service adds to a dead-letter copy; a replay leaves them out.
const DEAD_LETTER_HEADERS: &[&str] = &[
    HEADER_DEAD_LETTER_CODE,
    HEADER_DEAD_LETTER_ATTEMPTS,
    HEADER_DEAD_LETTER_MESSAGE,
];

/// Most messages one `dlq list` reads looking for matches.
const MAX_SCAN: u64 = 200_000;

/// How long reading the stream may stall before the command gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The dead-letter stream.
#[derive(Debug, Subcommand)]
pub enum DlqCmd {
    /// List dead-lettered jobs, newest first: the stream sequence, when, the subject the job
    /// was published to, the error code (a Twilio code such as 21211, or retries_exhausted,
    /// outcome_unknown, invalid_job, unknown_account, suppressed, credentials_unreadable), the
    /// attempts and the idempotency key.
    List(DlqList),
    /// Show one dead-lettered job: its headers and its payload (the job as it was published).
    Show {
        /// The stream sequence (from `dlq list`).
        seq: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Publish a dead-lettered job again to its original subject, for the outbound service to
    /// process.
    ///
    /// Under its own idempotency key (the default) the replay is the same job: JetStream drops
    /// it as a duplicate when that key was published to the job stream within its 24 h
    /// duplicate window, and the outbound service acknowledges a send job whose row has ended
    /// (sent, failed or dead) without calling Twilio; the command recognises both (the second
    /// one before publishing, with DATABASE_URL), says so and exits 1. A lookup job, or a
    /// send job the service never recorded (an invalid job), is processed again. With
    /// --new-key the job gets a new idempotency key (a fresh `replay-…` one, or
    /// --new-key=KEY; its job_id too when it was the old key) and is processed as a new job:
    /// sent or looked up again. The key used is printed.
    Replay(DlqReplay),
}

/// The kinds of job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobKind {
    /// Send-SMS jobs.
    #[value(name = "sms.send")]
    SmsSend,
    /// Lookup jobs.
    Lookup,
}

impl From<JobKind> for JobType {
    fn from(k: JobKind) -> JobType {
        match k {
            JobKind::SmsSend => JobType::SmsSend,
            JobKind::Lookup => JobType::Lookup,
        }
    }
}

#[derive(Debug, Args)]
pub struct DlqList {
    /// Only jobs of this type.
    #[arg(long, value_enum)]
    pub job: Option<JobKind>,
    /// Only jobs dead-lettered with this error code (Switchboard-Error-Code).
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,
    #[command(flatten)]
    pub window: WindowArgs,
    /// The next page: jobs before this stream sequence (as the previous page ended).
    #[arg(long, value_name = "SEQ")]
    pub before: Option<u64>,
    #[command(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, Args)]
pub struct DlqReplay {
    /// The stream sequence (from `dlq list`).
    pub seq: u64,
    /// Publish under a new idempotency key: a fresh one (`replay-` and a UUID), or KEY with
    /// --new-key=KEY (1 to 128 printable ASCII characters, no spaces).
    #[arg(long, value_name = "KEY", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    pub new_key: Option<String>,
    /// Wait for the replayed job's outcome and print it (exit 1 when it failed again).
    #[arg(long)]
    pub wait: bool,
    /// Seconds to wait with --wait.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What the dead-letter commands need.
pub struct DlqEnv {
    pub nats: async_nats::Client,
    pub subjects: JobSubjects,
    /// To recognise a job the outbound service already finished (`replay`); optional.
    pub store: Option<Store>,
}

impl DlqEnv {
    fn js(&self) -> jetstream::Context {
        jetstream::new(self.nats.clone())
    }

    async fn stream(&self) -> anyhow::Result<stream::Stream> {
        let name = self.subjects.dead_letter_stream();
        self.js().get_stream(&name).await.map_err(|e| {
            anyhow::anyhow!(
                "the dead-letter stream {name} cannot be read ({e}); the outbound service creates it at start: is it running, and is SWITCHBOARD_SUBJECT_PREFIX the same?"
            )
        })
    }
}

/// One message of the dead-letter stream.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub time: OffsetDateTime,
    /// `{prefix}.dlq.jobs.{type}`.
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Vec<u8>,
}

impl Entry {
    fn from_stream_message(m: jetstream::message::StreamMessage) -> Entry {
        Entry {
            seq: m.sequence,
            time: m.time,
            subject: m.subject.to_string(),
            headers: m.headers,
            payload: m.payload.to_vec(),
        }
    }

    fn from_delivery(m: &jetstream::Message) -> anyhow::Result<Entry> {
        let info = m
            .info()
            .map_err(|e| anyhow::anyhow!("not a JetStream delivery: {e}"))?;
        Ok(Entry {
            seq: info.stream_sequence,
            time: info.published,
            subject: m.subject.to_string(),
            headers: m.headers.clone().unwrap_or_default(),
            payload: m.payload.to_vec(),
        })
    }

    /// The first value of a header, when not empty.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The job type, from the dead-letter subject.
    pub fn job_type(&self, subjects: &JobSubjects) -> Option<JobType> {
        [JobType::SmsSend, JobType::Lookup]
            .into_iter()
            .find(|t| subjects.dead_letter(*t) == self.subject)
    }

    /// The subject the job was published to.
    pub fn original_subject(&self, subjects: &JobSubjects) -> Option<String> {
        self.job_type(subjects).map(|t| subjects.job(t))
    }

    /// The payload as a JSON object, when it is one.
    pub fn doc(&self) -> Option<serde_json::Map<String, Value>> {
        match serde_json::from_slice(&self.payload) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        }
    }

    /// The `Nats-Msg-Id` the job was published with; the outbound service names a copy of a
    /// job published without one `seq:<n>`, which is not a key.
    pub fn published_msg_id(&self) -> Option<&str> {
        self.header(HEADER_MSG_ID)
            .filter(|id| !id.starts_with("seq:"))
    }

    /// The job's own idempotency key: the `Nats-Msg-Id` it was published with, else its
    /// payload's `idempotency_key`.
    pub fn own_key(&self) -> Option<String> {
        self.published_msg_id().map(str::to_owned).or_else(|| {
            self.doc()
                .and_then(|d| {
                    d.get("idempotency_key")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .filter(|k| !k.is_empty())
        })
    }

    fn doc_text(&self, field: &str) -> Option<String> {
        self.doc()
            .and_then(|d| d.get(field).and_then(Value::as_str).map(str::to_owned))
    }

    /// The headers, sorted by name, secrets hidden.
    fn header_list(&self) -> Vec<(String, String)> {
        let mut list: Vec<(String, String)> = self
            .headers
            .iter()
            .flat_map(|(name, values)| {
                let name = name.to_string();
                values.iter().map(move |v| {
                    let value = if is_sensitive(&name) {
                        HIDDEN.to_owned()
                    } else {
                        v.as_str().to_owned()
                    };
                    (name.clone(), value)
                })
            })
            .collect();
        list.sort();
        list
    }

    fn summary_json(&self, subjects: &JobSubjects) -> Value {
        json!({
            "seq": self.seq,
            "time": json_time(Some(self.time)),
            "subject": self.subject,
            "original_subject": self.original_subject(subjects),
            "job": self.job_type(subjects).map(JobType::as_str),
            "error_code": self.header(HEADER_DEAD_LETTER_CODE),
            "error_message": self.header(HEADER_DEAD_LETTER_MESSAGE),
            "attempts": self.header(HEADER_DEAD_LETTER_ATTEMPTS).and_then(|a| a.parse::<u64>().ok()),
            "idempotency_key": self.own_key(),
            "msg_id": self.header(HEADER_MSG_ID),
            "job_id": self.doc_text("job_id"),
        })
    }
}

pub async fn run(env: &DlqEnv, cmd: DlqCmd) -> anyhow::Result<()> {
    match cmd {
        DlqCmd::List(args) => list(env, args).await,
        DlqCmd::Show { seq, json } => show(env, seq, json).await,
        DlqCmd::Replay(args) => replay(env, args).await,
    }
}

/// Reads `stream` with an ephemeral ordered consumer from `start` (only `filter`'s subject when
/// not empty), giving each message to `visit` until it answers false or the stream has no more.
pub async fn scan(
    stream: &stream::Stream,
    start: consumer::DeliverPolicy,
    filter: String,
    mut visit: impl FnMut(&jetstream::Message) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: start,
            filter_subject: filter,
            ..Default::default()
        })
        .await
        .context("creating an ordered consumer on the stream")?;
    if consumer.cached_info().num_pending == 0 {
        return Ok(());
    }
    let mut messages = consumer.messages().await.context("reading the stream")?;
    loop {
        let next = tokio::time::timeout(READ_TIMEOUT, messages.next())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "reading the stream stalled for {} s",
                    READ_TIMEOUT.as_secs()
                )
            })?;
        let Some(message) = next else { return Ok(()) };
        let message = message.map_err(|e| anyhow::anyhow!("reading the stream: {e}"))?;
        let pending = message.info().map(|i| i.pending).unwrap_or(0);
        if !visit(&message)? || pending == 0 {
            return Ok(());
        }
    }
}

async fn list(env: &DlqEnv, args: DlqList) -> anyhow::Result<()> {
    let window = args.window.window()?;
    let mut stream = env.stream().await?;
    let state = stream
        .info()
        .await
        .context("reading the dead-letter stream's state")?
        .state
        .clone();
    let want = args.page.limit as usize + 1;
    let filter = args
        .job
        .map(|j| env.subjects.dead_letter(j.into()))
        .unwrap_or_default();
    let code = args.code.as_deref().map(str::trim);
    // Newest first: read windows of sequences backwards from the cursor until the page is full.
    let mut found: Vec<Entry> = Vec::new();
    let mut end = args.before.map_or(state.last_sequence, |b| {
        b.saturating_sub(1).min(state.last_sequence)
    });
    let mut span = (want as u64 * 2).max(64);
    let mut scanned = 0u64;
    let mut cut_short = None;
    while state.messages > 0 && end >= state.first_sequence && end > 0 && found.len() < want {
        if scanned >= MAX_SCAN {
            cut_short = Some(end + 1);
            break;
        }
        let start = end
            .saturating_sub(span - 1)
            .max(state.first_sequence)
            .max(1);
        let mut batch = Vec::new();
        scan(
            &stream,
            consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            filter.clone(),
            |m| {
                let entry = Entry::from_delivery(m)?;
                if entry.seq > end {
                    return Ok(false);
                }
                let last = entry.seq == end;
                batch.push(entry);
                Ok(!last)
            },
        )
        .await?;
        scanned += end - start + 1;
        let mut older_than_since = false;
        for entry in batch.into_iter().rev() {
            if window.since.is_some_and(|since| entry.time < since) {
                older_than_since = true;
                break;
            }
            if window.until.is_some_and(|until| entry.time >= until) {
                continue;
            }
            if code.is_some_and(|c| entry.header(HEADER_DEAD_LETTER_CODE) != Some(c)) {
                continue;
            }
            found.push(entry);
        }
        if older_than_since || start <= state.first_sequence {
            break;
        }
        end = start - 1;
        span = span.saturating_mul(2).min(20_000);
    }
    let next = if found.len() > args.page.limit as usize {
        found.truncate(args.page.limit as usize);
        found.last().map(|e| e.seq.to_string())
    } else {
        None
    };
    if let Some(before) = cut_short {
        eprintln!(
            "note: stopped after reading {scanned} messages; older ones were not searched (go on with --before {before})"
        );
    }
    let mut table = Table::new(&[
        ("SEQ", 10),
        ("TIME", 20),
        ("SUBJECT", 40),
        ("CODE", 22),
        ("ATTEMPTS", 8),
        ("KEY", 40),
        ("ERROR", 48),
    ]);
    for e in &found {
        table.row(vec![
            e.seq.to_string(),
            short_time(e.time),
            e.original_subject(&env.subjects)
                .unwrap_or_else(|| e.subject.clone()),
            or_dash(e.header(HEADER_DEAD_LETTER_CODE)),
            or_dash(e.header(HEADER_DEAD_LETTER_ATTEMPTS)),
            or_dash(e.own_key()),
            or_dash(e.header(HEADER_DEAD_LETTER_MESSAGE)),
        ]);
    }
    let items = found
        .iter()
        .map(|e| e.summary_json(&env.subjects))
        .collect();
    print_list(args.page.json, items, &table, "dead-lettered jobs", next)
}

/// One message by sequence (`STREAM.MSG.GET`).
async fn get(env: &DlqEnv, seq: u64) -> anyhow::Result<Entry> {
    let stream = env.stream().await?;
    match stream.get_raw_message(seq).await {
        Ok(message) => Ok(Entry::from_stream_message(message)),
        Err(e) => bail!(
            "no dead letter #{seq} in {} ({e}; see `switchboard dlq list`)",
            env.subjects.dead_letter_stream()
        ),
    }
}

async fn show(env: &DlqEnv, seq: u64, json: bool) -> anyhow::Result<()> {
    let e = get(env, seq).await?;
    let payload_text = String::from_utf8(e.payload.clone()).ok();
    let payload_json: Option<Value> = serde_json::from_slice(&e.payload).ok();
    if json {
        let mut doc = e.summary_json(&env.subjects);
        doc["stream"] = json!(env.subjects.dead_letter_stream());
        let mut headers = serde_json::Map::new();
        for (name, value) in e.header_list() {
            match headers.get_mut(&name) {
                Some(Value::Array(values)) => values.push(Value::String(value)),
                _ => {
                    headers.insert(name, json!([value]));
                }
            }
        }
        doc["headers"] = Value::Object(headers);
        doc["payload"] = match (&payload_json, &payload_text) {
            (Some(v), _) => v.clone(),
            (None, Some(text)) => Value::String(text.clone()),
            (None, None) => Value::Null,
        };
        doc["payload_format"] = json!(match (&payload_json, &payload_text) {
            (Some(_), _) => "json",
            (None, Some(_)) => "text",
            (None, None) => "binary",
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let mut out = format!(
        "Dead letter #{} ({})\n",
        e.seq,
        env.subjects.dead_letter_stream()
    );
    out.push_str(&format!("  time       {}\n", time_and_age(e.time)));
    out.push_str(&format!(
        "  subject    {} (published to {})\n",
        e.subject,
        e.original_subject(&env.subjects)
            .as_deref()
            .unwrap_or("an unknown subject")
    ));
    out.push_str(&format!(
        "  error      {}: {}\n",
        or_dash(e.header(HEADER_DEAD_LETTER_CODE)),
        or_dash(e.header(HEADER_DEAD_LETTER_MESSAGE))
    ));
    out.push_str(&format!(
        "  attempts   {}\n",
        or_dash(e.header(HEADER_DEAD_LETTER_ATTEMPTS))
    ));
    out.push_str(&format!("  key        {}\n", or_dash(e.own_key())));
    out.push_str(&format!("  job id     {}\n", or_dash(e.doc_text("job_id"))));
    out.push_str("\n== Headers ==\n");
    for (name, value) in e.header_list() {
        out.push_str(&format!("{name}: {value}\n"));
    }
    out.push_str("\n== Payload ==\n");
    match (&payload_json, &payload_text) {
        (Some(v), _) => out.push_str(&serde_json::to_string_pretty(v)?),
        (None, Some(text)) => out.push_str(text),
        (None, None) => out.push_str(&format!(
            "({} bytes, not UTF-8; --json shows none of it)",
            e.payload.len()
        )),
    }
    out.push('\n');
    print!("{out}");
    Ok(())
}

/// What a replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replayed {
    /// Stored in the job stream: the outbound service processes it.
    Published,
    /// JetStream had the key within its duplicate window: not stored, nothing happens.
    Duplicate,
    /// Not published: the outbound service already finished this key.
    AlreadyFinished,
}

impl Replayed {
    fn as_str(self) -> &'static str {
        match self {
            Replayed::Published => "published",
            Replayed::Duplicate => "duplicate",
            Replayed::AlreadyFinished => "already_finished",
        }
    }
}

/// A key as the job contract allows it.
fn check_key(key: &str) -> Result<(), String> {
    let ok = (1..=MAX_ID_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{key}' is not an idempotency key: 1 to {MAX_ID_LEN} printable ASCII characters without spaces"
        ))
    }
}

async fn replay(env: &DlqEnv, args: DlqReplay) -> anyhow::Result<()> {
    let seq = args.seq;
    let entry = get(env, seq).await?;
    let Some(job_type) = entry.job_type(&env.subjects) else {
        bail!(
            "dead letter #{seq} is on {}, not a dead-lettered job subject of this prefix ({}); it cannot be replayed",
            entry.subject,
            env.subjects.dead_letter_wildcard()
        );
    };
    let subject = env.subjects.job(job_type);
    let own_key = entry.own_key();
    // The job's headers as it was published: without the dead-letter additions, the key set
    // below, and the old reply subject when this command waits on its own.
    let mut headers = HeaderMap::new();
    for (name, values) in entry.headers.iter() {
        let text = name.to_string();
        let dropped = DEAD_LETTER_HEADERS
            .iter()
            .chain(&[HEADER_MSG_ID])
            .any(|h| h.eq_ignore_ascii_case(&text))
            || (args.wait && text.eq_ignore_ascii_case(HEADER_REPLY_TO));
        if !dropped {
            for value in values {
                headers.append(name.clone(), value.clone());
            }
        }
    }
    let (key, payload, new_key) = match args.new_key.as_deref() {
        None => (own_key.clone(), entry.payload.clone(), false),
        Some(given) => {
            let key = if given.is_empty() {
                format!("replay-{}", uuid::Uuid::new_v4())
            } else {
                given.to_owned()
            };
            check_key(&key).map_err(|e| anyhow::anyhow!("--new-key: {e}"))?;
            if own_key.as_deref() == Some(key.as_str()) {
                bail!(
                    "--new-key {key}: that is the job's own key; leave --new-key out to replay under it"
                );
            }
            let Some(mut doc) = entry.doc() else {
                bail!(
                    "--new-key: dead letter #{seq} is not a JSON job ({}), so its key cannot be changed; replay it as it is, without --new-key",
                    or_dash(entry.header(HEADER_DEAD_LETTER_MESSAGE))
                );
            };
            let old_job_id = doc.get("job_id").and_then(Value::as_str).map(str::to_owned);
            if old_job_id.is_some() && old_job_id == own_key {
                doc.insert("job_id".into(), Value::String(key.clone()));
            }
            doc.insert("idempotency_key".into(), Value::String(key.clone()));
            (Some(key), serde_json::to_vec(&Value::Object(doc))?, true)
        }
    };
    if let Some(key) = &key {
        headers.insert(HEADER_MSG_ID, key.as_str());
    }
    let key_text = key.clone().unwrap_or_default();
    let job_id = serde_json::from_slice::<Value>(&payload)
        .ok()
        .and_then(|d| d["job_id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| key_text.clone());

    // A send job whose row has ended is acknowledged without calling Twilio: say so rather than
    // publish for nothing.
    let mut notes = Vec::new();
    let mut finished = None;
    match (&env.store, &key, job_type) {
        (Some(store), Some(key), JobType::SmsSend) => {
            match store.outbound_job(key).await? {
                Some(row) if new_key => bail!(
                    "--new-key {key}: the outbound service already has a job with this key ({}); choose another",
                    row.state.as_str()
                ),
                Some(row) if row.state.is_final() => finished = Some(row),
                _ => {}
            }
        }
        (None, Some(_), JobType::SmsSend) if !new_key => notes.push(
            "DATABASE_URL is not set, so whether the outbound service already finished this key was not checked: if it did, it acknowledges the replay without calling Twilio".to_owned(),
        ),
        _ => {}
    }
    if key.is_none() {
        notes.push(
            "the job has no idempotency key: it is published without Nats-Msg-Id, so JetStream cannot de-duplicate it".to_owned(),
        );
    }

    let what = if new_key {
        format!(
            "under the new key {key_text} (its own was {})",
            or_dash(own_key.as_deref())
        )
    } else {
        format!("under its own key {}", or_dash(key.as_deref()))
    };
    let mut result = json!({
        "seq": seq,
        "job": job_type.as_str(),
        "subject": subject,
        "idempotency_key": key,
        "previous_key": own_key,
        "new_key": new_key,
    });
    let mut text = String::new();
    let outcome_kind;
    let mut outcome = None;
    if let Some(row) = &finished {
        outcome_kind = Replayed::AlreadyFinished;
        let since = row
            .finished_at
            .map(|t| format!(" at {}", rfc3339(t)))
            .unwrap_or_default();
        let error = match (&row.last_error_code, &row.last_error_message) {
            (Some(code), Some(message)) => format!("; {code}: {message}"),
            (Some(code), None) => format!("; {code}"),
            _ => String::new(),
        };
        text.push_str(&format!(
            "not replayed: the outbound service already finished job {key_text} ({}{since}{error}). A replay under its own key would be acknowledged without calling Twilio, so nothing was published. To send it again: switchboard dlq replay {seq} --new-key\n",
            row.state.as_str()
        ));
        result["job_state"] = json!(row.state.as_str());
    } else {
        let wait = args.wait.then(|| Duration::from_secs(args.timeout.max(1)));
        let published = crate::jobs::publish(
            &env.nats,
            crate::jobs::Publication {
                subject: &subject,
                headers,
                payload,
                job_id: &job_id,
                key: &key_text,
                wait_for_duplicate: false,
            },
            wait,
        )
        .await?;
        let p = &published.published;
        result["published"] = json!({"stream": p.stream, "seq": p.seq, "duplicate": p.duplicate});
        if p.duplicate {
            outcome_kind = Replayed::Duplicate;
            text.push_str(&format!(
                "not stored: the job stream {} already had a job with Nats-Msg-Id {key_text} within its {} h duplicate window, so JetStream dropped the replay and the outbound service never sees it; nothing happens. To run the job again: switchboard dlq replay {seq} --new-key\n",
                p.stream,
                DUPLICATE_WINDOW_SECS / 3600
            ));
        } else {
            outcome_kind = Replayed::Published;
            text.push_str(&format!(
                "replayed dead letter #{seq} to {subject} {what}: stored as {} #{}\n",
                p.stream, p.seq
            ));
            if published.event.is_none() {
                text.push_str(&match job_type {
                    JobType::SmsSend => format!(
                        "the outbound service processes it as job {job_id} (`switchboard jobs show {key_text}` follows it)\n"
                    ),
                    JobType::Lookup => format!(
                        "the outbound service looks the number up again (job {job_id}); its outcome goes to the events stream\n"
                    ),
                });
            }
        }
        outcome = published.event.clone();
        result["event"] = serde_json::to_value(&published.event)?;
        if published.event.is_some() {
            text.push_str(&crate::jobs::render_text(&published));
        }
    }
    result["outcome"] = json!(outcome_kind.as_str());
    result["notes"] = json!(notes);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{text}");
        for note in &notes {
            println!("note: {note}");
        }
    }
    match outcome_kind {
        Replayed::Published => match &outcome {
            Some(event) if !matches!(event.kind, EventKind::Sent | EventKind::Completed) => {
                Err(crate::jobs::Unsuccessful(event.kind.as_str().to_owned()).into())
            }
            _ => Ok(()),
        },
        other => Err(crate::jobs::Unsuccessful(other.as_str().to_owned()).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(subject: &str, headers: &[(&str, &str)], payload: &str) -> Entry {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(*k, *v);
        }
        Entry {
            seq: 1,
            time: OffsetDateTime::UNIX_EPOCH,
            subject: subject.into(),
            headers: map,
            payload: payload.as_bytes().to_vec(),
        }
    }

    #[test]
    fn dead_letters_know_their_job_and_key() {
        let subjects = JobSubjects::new("sb");
        let e = entry(
            "sb.dlq.jobs.sms.send",
            &[("Nats-Msg-Id", "k1"), ("Switchboard-Error-Code", "21211")],
            r#"{"version":1,"idempotency_key":"k1","job_id":"j1"}"#,
        );
        assert_eq!(e.job_type(&subjects), Some(JobType::SmsSend));
        assert_eq!(
            e.original_subject(&subjects).as_deref(),
            Some("sb.jobs.sms.send")
        );
        assert_eq!(e.own_key().as_deref(), Some("k1"));
        assert_eq!(e.summary_json(&subjects)["error_code"], "21211");
        // Published without Nats-Msg-Id: the copy's `seq:` id is not a key; the payload's is.
        let e = entry(
            "sb.dlq.jobs.lookup",
            &[("Nats-Msg-Id", "seq:7")],
            r#"{"idempotency_key":"k2"}"#,
        );
        assert_eq!(e.job_type(&subjects), Some(JobType::Lookup));
        assert_eq!(e.own_key().as_deref(), Some("k2"));
        let e = entry(
            "sb.dlq.jobs.sms.send",
            &[("Nats-Msg-Id", "seq:8")],
            "not json",
        );
        assert_eq!(e.own_key(), None);
        assert_eq!(e.doc(), None);
        assert_eq!(entry("other.subject", &[], "").job_type(&subjects), None);
    }

    #[test]
    fn keys_follow_the_contract() {
        assert!(check_key("replay-1").is_ok());
        assert!(check_key("order:1234/shipped").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key("has space").is_err());
        assert!(check_key(&"k".repeat(129)).is_err());
        assert!(check_key("é").is_err());
    }
}
