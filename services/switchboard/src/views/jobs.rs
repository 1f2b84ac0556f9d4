//! `switchboard jobs list|show`: the outbound service's send-SMS jobs (`outbound_jobs`): state,
//! attempts, the Twilio SID, the delivery status Twilio's callbacks reported, the last error;
//! `show` adds the job's events from the events stream when NATS answers.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use switchboard_store::Store;
use switchboard_store::views::{Before, JobFilter, JobRow};
use switchboard_wire::outbound::{HEADER_MSG_ID, JobEvent, JobSubjects};
use time::OffsetDateTime;

use super::{
    PageArgs, Table, WindowArgs, cursor, json_time, or_dash, parse_cursor, print_list, rfc3339,
    short_time, split_page, time_and_age,
};

/// Most event-stream messages `jobs show` reads looking for a job's events.
const MAX_EVENT_SCAN: usize = 100_000;

/// Outbound send-SMS jobs.
#[derive(Debug, Subcommand)]
pub enum JobsCmd {
    /// List send-SMS jobs, newest first: when, the idempotency key, the state (queued, sending,
    /// sent, failed, dead), the creates attempted, the Twilio SID, the delivery status (from
    /// Twilio's status callbacks, else the create's answer), the recipient and the last error.
    /// Lookup jobs keep no row: see the events stream, or `dlq list` for those that failed.
    List(JobsList),
    /// Show one job: its row (times, state, attempts, Twilio SID and statuses, errors) and its
    /// events (accepted, sent, delivery statuses, failures) from the events stream, when NATS
    /// answers.
    Show {
        /// The idempotency key (or the job id, when one job has it).
        key: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobStateArg {
    /// Known, no create in flight.
    Queued,
    /// A create was started and its outcome is not known to have created nothing.
    Sending,
    /// Twilio created the message.
    Sent,
    /// Failed for good (a permanent Twilio error, an unknown account, a suppressed recipient).
    Failed,
    /// Retries or age ran out; dead-lettered.
    Dead,
}

#[derive(Debug, Args)]
pub struct JobsList {
    /// Only jobs in this state.
    #[arg(long, value_enum)]
    pub state: Option<JobStateArg>,
    /// Only jobs to this recipient (the job's `to`, E.164).
    #[arg(long, value_name = "NUMBER")]
    pub number: Option<String>,
    /// Only jobs of this connected account (id or name).
    #[arg(long, value_name = "ACCOUNT")]
    pub account: Option<String>,
    #[command(flatten)]
    pub window: WindowArgs,
    /// The next page: the cursor the previous page ended with (TIME/KEY).
    #[arg(long, value_name = "CURSOR", value_parser = parse_cursor)]
    pub before: Option<Before>,
    #[command(flatten)]
    pub page: PageArgs,
}

pub async fn run(
    store: &Store,
    nats: Option<&async_nats::Client>,
    subjects: &JobSubjects,
    cmd: JobsCmd,
) -> anyhow::Result<()> {
    match cmd {
        JobsCmd::List(args) => list(store, args).await,
        JobsCmd::Show { key, json } => show(store, nats, subjects, key.trim(), json).await,
    }
}

async fn list(store: &Store, args: JobsList) -> anyhow::Result<()> {
    let account_id = match &args.account {
        Some(a) => Some(super::account_id(store, Some(a)).await?),
        None => None,
    };
    let filter = JobFilter {
        state: args
            .state
            .and_then(|s| s.to_possible_value())
            .map(|v| v.get_name().to_owned()),
        recipient: args
            .number
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        account_id,
        window: args.window.window()?,
        before: args.before.clone(),
        limit: i64::from(args.page.limit),
    };
    let rows = store.view_jobs(&filter).await?;
    let (rows, next) = split_page(rows, args.page.limit, |j| {
        cursor(j.created_at, &j.idempotency_key)
    });
    let mut table = Table::new(&[
        ("CREATED", 20),
        ("KEY", 42),
        ("STATE", 7),
        ("ATTEMPTS", 8),
        ("TWILIO SID", 34),
        ("STATUS", 12),
        ("TO", 16),
        ("LAST ERROR", 48),
    ]);
    for j in &rows {
        table.row(vec![
            short_time(j.created_at),
            j.idempotency_key.clone(),
            j.state.clone(),
            j.attempts.to_string(),
            or_dash(j.twilio_sid.as_deref()),
            or_dash(j.status()),
            or_dash(j.recipient.as_deref()),
            last_error(j),
        ]);
    }
    let items = rows.iter().map(job_json).collect();
    print_list(args.page.json, items, &table, "jobs", next)
}

/// The delivery error when Twilio reported one, else the last create's error.
fn last_error(j: &JobRow) -> String {
    let pair = |code: &Option<String>, message: &Option<String>| match (code, message) {
        (Some(c), Some(m)) => Some(format!("{c}: {m}")),
        (Some(c), None) => Some(c.clone()),
        (None, Some(m)) => Some(m.clone()),
        (None, None) => None,
    };
    pair(&j.delivery_error_code, &j.delivery_error_message)
        .or_else(|| pair(&j.last_error_code, &j.last_error_message))
        .unwrap_or_else(|| "-".into())
}

fn job_json(j: &JobRow) -> Value {
    json!({
        "idempotency_key": j.idempotency_key,
        "job_id": j.job_id,
        "job": j.job_type,
        "state": j.state,
        "attempts": j.attempts,
        "twilio_sid": j.twilio_sid,
        "twilio_status": j.twilio_status,
        "delivery_status": j.delivery_status,
        "delivery_error_code": j.delivery_error_code,
        "delivery_error_message": j.delivery_error_message,
        "delivery_updated_at": json_time(j.delivery_updated_at),
        "last_error_code": j.last_error_code,
        "last_error_message": j.last_error_message,
        "account_id": j.account_id,
        "account": j.account_name,
        "to": j.recipient,
        "created_at": json_time(Some(j.created_at)),
        "first_attempt_at": json_time(j.first_attempt_at),
        "updated_at": json_time(Some(j.updated_at)),
        "finished_at": json_time(j.finished_at),
        "lease_until": json_time(j.lease_until),
        "accepted_published": j.accepted_published,
        "final_published": j.final_published,
    })
}

/// The job's events in the events stream: published from its creation on, until a while after
/// its row last changed. `Err` says why they could not be read.
async fn events(
    nats: Option<&async_nats::Client>,
    subjects: &JobSubjects,
    job: &JobRow,
) -> Result<Vec<(OffsetDateTime, JobEvent)>, String> {
    let Some(nats) = nats else {
        return Err("NATS is not reachable".into());
    };
    let js = async_nats::jetstream::new(nats.clone());
    let name = subjects.event_stream();
    let stream = js
        .get_stream(&name)
        .await
        .map_err(|e| format!("the events stream {name} cannot be read: {e}"))?;
    let from = job.created_at - time::Duration::seconds(5);
    let until = job.delivery_updated_at.unwrap_or(job.updated_at) + time::Duration::minutes(2);
    let prefix = format!("{}:", job.idempotency_key);
    // `{prefix}.events.sms.>`: every send-SMS event.
    let [filter, _] = subjects.events_wildcards();
    let mut found = Vec::new();
    let mut seen = 0usize;
    super::dlq::scan(
        &stream,
        async_nats::jetstream::consumer::DeliverPolicy::ByStartTime { start_time: from },
        filter,
        |m| {
            seen += 1;
            let info = m.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            if info.published > until || seen > MAX_EVENT_SCAN {
                return Ok(false);
            }
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get(HEADER_MSG_ID))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            if id.starts_with(&prefix)
                && let Ok(event) = serde_json::from_slice::<JobEvent>(&m.payload)
                && event.job_id == job.job_id
            {
                found.push((info.published, event));
            }
            Ok(true)
        },
    )
    .await
    .map_err(|e| format!("reading {name}: {e}"))?;
    Ok(found)
}

async fn show(
    store: &Store,
    nats: Option<&async_nats::Client>,
    subjects: &JobSubjects,
    key: &str,
    json: bool,
) -> anyhow::Result<()> {
    let Some(j) = store.view_job(key).await? else {
        anyhow::bail!(
            "no outbound job has key (or job id) {key} (see `switchboard jobs list`; lookup jobs keep no row)"
        );
    };
    let events = events(nats, subjects, &j).await;
    if json {
        let mut doc = job_json(&j);
        match &events {
            Ok(list) => {
                doc["events"] = list
                    .iter()
                    .map(|(_, e)| serde_json::to_value(e))
                    .collect::<Result<Vec<_>, _>>()?
                    .into()
            }
            Err(why) => {
                doc["events"] = Value::Null;
                doc["events_unavailable"] = json!(why);
            }
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let mut out = format!("Job {}\n", j.idempotency_key);
    let line = |out: &mut String, label: &str, value: String| {
        out.push_str(&format!("  {label:<17}{value}\n"));
    };
    line(&mut out, "job id", j.job_id.clone());
    line(&mut out, "type", j.job_type.clone());
    line(&mut out, "state", j.state.clone());
    line(&mut out, "attempts", j.attempts.to_string());
    line(
        &mut out,
        "account",
        match (&j.account_name, j.account_id) {
            (Some(name), Some(id)) => format!("{name} (id {id})"),
            (None, Some(id)) => id.to_string(),
            _ => "- (not recorded)".into(),
        },
    );
    line(
        &mut out,
        "to",
        j.recipient
            .clone()
            .unwrap_or_else(|| "- (not recorded)".into()),
    );
    line(&mut out, "twilio sid", or_dash(j.twilio_sid.as_deref()));
    line(
        &mut out,
        "create status",
        or_dash(j.twilio_status.as_deref()),
    );
    let delivery = match (&j.delivery_status, j.delivery_updated_at) {
        (Some(status), Some(at)) => format!("{status} at {}", rfc3339(at)),
        (Some(status), None) => status.clone(),
        _ => "- (no status callback yet)".into(),
    };
    line(&mut out, "delivery status", delivery);
    if j.delivery_error_code.is_some() || j.delivery_error_message.is_some() {
        line(
            &mut out,
            "delivery error",
            format!(
                "{}: {}",
                or_dash(j.delivery_error_code.as_deref()),
                or_dash(j.delivery_error_message.as_deref())
            ),
        );
    }
    if j.last_error_code.is_some() || j.last_error_message.is_some() {
        line(
            &mut out,
            "last error",
            format!(
                "{}: {}",
                or_dash(j.last_error_code.as_deref()),
                or_dash(j.last_error_message.as_deref())
            ),
        );
    }
    line(&mut out, "created", time_and_age(j.created_at));
    if let Some(at) = j.first_attempt_at {
        line(&mut out, "first create", rfc3339(at));
    }
    if let Some(at) = j.finished_at {
        line(&mut out, "finished", rfc3339(at));
    }
    line(&mut out, "updated", rfc3339(j.updated_at));
    if let Some(at) = j.lease_until {
        line(&mut out, "leased until", rfc3339(at));
    }
    line(
        &mut out,
        "events published",
        format!(
            "accepted {}, final {}",
            yes_no(j.accepted_published),
            yes_no(j.final_published)
        ),
    );
    out.push_str("\n== Events ==\n");
    match &events {
        Ok(list) if list.is_empty() => {
            out.push_str("(none in the events stream)\n");
        }
        Ok(list) => {
            let mut table = Table::new(&[
                ("PUBLISHED", 20),
                ("KIND", 14),
                ("ATTEMPT", 7),
                ("STATUS", 12),
                ("TWILIO SID", 34),
                ("ERROR", 60),
            ]);
            for (at, e) in list {
                table.row(vec![
                    short_time(*at),
                    e.kind.as_str().to_owned(),
                    e.attempt.to_string(),
                    or_dash(e.status.as_deref()),
                    or_dash(e.twilio_sid.as_deref()),
                    e.error.as_ref().map_or_else(
                        || "-".into(),
                        |err| format!("{}: {}", err.code, err.message),
                    ),
                ]);
            }
            out.push_str(&table.render());
        }
        Err(why) => out.push_str(&format!("(not read: {why})\n")),
    }
    print!("{out}");
    Ok(())
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
