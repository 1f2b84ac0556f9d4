//! `switchboard runs list|show`: behavior runs (`behavior_runs`): every webhook answered and
//! every macro run, with how it ended and its trace, printed as `switchboard simulate` prints
//! one.

use clap::{Args, Subcommand, ValueEnum};
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_engine::{RunError, TraceEvent};
use switchboard_package::{NodeKind, RecordId};
use switchboard_store::Store;
use switchboard_store::views::{RunFilter, RunRow};

use super::{
    PageArgs, Table, WindowArgs, duration_us, json_time, or_dash, print_list, short_time,
    split_page, time_and_age,
};

/// Behavior runs.
#[derive(Debug, Subcommand)]
pub enum RunsCmd {
    /// List behavior runs, newest first: id, when, bot and behavior, the listener and
    /// MessageSid of a webhook run, how it ended (exit state and HTTP status), how long it
    /// took, and how many errors it recorded.
    List(RunsList),
    /// Show one run: its trace as `switchboard simulate` prints it (each node entered, each
    /// condition with its values and PASS/FAIL, each action's output), its errors, its trace
    /// id (OpenTelemetry) and duration.
    Show {
        /// The run id (from `runs list`, `messages show` or `switchboard run`).
        id: i64,
        /// Print one JSON object (the trace as stored: the engine's trace events).
        #[arg(long)]
        json: bool,
    },
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunStatus {
    /// Ran to its end.
    Complete,
    /// Stopped by an `_exit` of mode stop.
    Stop,
    /// Suspended by an `_exit` of mode suspend.
    Suspend,
    /// A run limit was reached.
    Aborted,
    /// Recorded at least one error (whatever its exit state).
    Errors,
}

#[derive(Debug, Args)]
pub struct RunsList {
    /// Only runs of this bot's behaviors (id, or package uid when unique).
    #[arg(long, value_name = "BOT")]
    pub bot: Option<String>,
    /// Only runs of this behavior (id, or package uid when unique).
    #[arg(long, value_name = "BEHAVIOR")]
    pub behavior: Option<String>,
    /// Only webhook runs of this listener (id, name or guid).
    #[arg(long, value_name = "LISTENER")]
    pub listener: Option<String>,
    #[command(flatten)]
    pub window: WindowArgs,
    /// Only runs that ended this way, or (`errors`) that recorded errors.
    #[arg(long, value_enum)]
    pub status: Option<RunStatus>,
    /// The next page: runs older than this run (its id, as the previous page ended).
    #[arg(long, value_name = "RUN_ID")]
    pub before: Option<i64>,
    #[command(flatten)]
    pub page: PageArgs,
}

pub async fn run(store: &Store, cmd: RunsCmd) -> anyhow::Result<()> {
    match cmd {
        RunsCmd::List(args) => list(store, args).await,
        RunsCmd::Show { id, json } => show(store, id, json).await,
    }
}

async fn list(store: &Store, args: RunsList) -> anyhow::Result<()> {
    let mut behavior_ids: Option<Vec<i64>> = None;
    if let Some(bot) = &args.bot {
        let bot_id = store
            .resolve_bot(bot.trim())
            .await
            .map_err(|e| anyhow::anyhow!("--bot {bot}: {e}"))?;
        behavior_ids = Some(store.bot_behavior_ids(bot_id).await?);
    }
    if let Some(behavior) = &args.behavior {
        let id = store
            .resolve_behavior(behavior.trim())
            .await
            .map_err(|e| anyhow::anyhow!("--behavior {behavior}: {e}"))?;
        behavior_ids = Some(match behavior_ids {
            Some(of_bot) => of_bot.into_iter().filter(|b| *b == id).collect(),
            None => vec![id],
        });
    }
    let listener_id = match &args.listener {
        Some(l) => Some(
            store
                .resolve_listener(l)
                .await
                .map_err(|e| anyhow::anyhow!("--listener {l}: {e}"))?,
        ),
        None => None,
    };
    let (exit_state, with_errors) = match args.status {
        None => (None, None),
        Some(RunStatus::Errors) => (None, Some(true)),
        Some(state) => (
            state.to_possible_value().map(|v| v.get_name().to_owned()),
            None,
        ),
    };
    let filter = RunFilter {
        behavior_ids,
        listener_id,
        window: args.window.window()?,
        exit_state,
        with_errors,
        before_id: args.before,
        limit: i64::from(args.page.limit),
    };
    let rows = store.view_runs(&filter).await.map_err(|e| match e {
        switchboard_store::StoreError::NotFound(what) => {
            anyhow::anyhow!("--before {}: no {what}", args.before.unwrap_or_default())
        }
        other => other.into(),
    })?;
    let (rows, next) = split_page(rows, args.page.limit, |r| r.id.to_string());
    let mut table = Table::new(&[
        ("ID", 12),
        ("CREATED", 20),
        ("BOT", 16),
        ("BEHAVIOR", 24),
        ("LISTENER", 18),
        ("MESSAGE SID", 34),
        ("EXIT", 8),
        ("HTTP", 4),
        ("DURATION", 10),
        ("ERRORS", 6),
    ]);
    for r in &rows {
        table.row(vec![
            r.id.to_string(),
            short_time(r.created_at),
            or_dash(r.bot_name.as_deref()),
            r.behavior_title
                .clone()
                .unwrap_or_else(|| r.behavior_id.to_string()),
            or_dash(r.listener_name.as_deref()),
            or_dash(r.message_sid.as_deref()),
            r.exit_state.clone(),
            or_dash(r.status),
            duration_us(r.duration_us),
            error_count(&r.errors).to_string(),
        ]);
    }
    let items = rows.iter().map(run_json).collect();
    print_list(args.page.json, items, &table, "runs", next)
}

fn error_count(errors: &Value) -> usize {
    errors.as_array().map_or(0, Vec::len)
}

fn run_json(r: &RunRow) -> Value {
    let mut doc = json!({
        "id": r.id,
        "created_at": json_time(Some(r.created_at)),
        "bot_id": r.bot_id,
        "bot": r.bot_name,
        "behavior_id": r.behavior_id,
        "behavior": r.behavior_title,
        "listener_id": r.listener_id,
        "listener": r.listener_name,
        "message_sid": r.message_sid,
        "request_id": r.request_id,
        "trace_id": r.trace_id,
        "mode": r.mode,
        "exit_state": r.exit_state,
        "status": r.status,
        "duration_us": r.duration_us,
        "errors": r.errors,
    });
    if let Some(trace) = &r.trace {
        doc["trace"] = trace.clone();
    }
    doc
}

async fn show(store: &Store, id: i64, json: bool) -> anyhow::Result<()> {
    let Some(r) = store.view_run(id).await? else {
        anyhow::bail!("no run {id} (see `switchboard runs list`)");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&run_json(&r))?);
        return Ok(());
    }
    let mut out = format!("Run {}\n", r.id);
    out.push_str(&format!("  created    {}\n", time_and_age(r.created_at)));
    out.push_str(&format!(
        "  behavior   {} (id {})\n",
        r.behavior_title.as_deref().unwrap_or("(deleted)"),
        r.behavior_id
    ));
    if let (Some(bot), Some(bot_id)) = (&r.bot_name, r.bot_id) {
        out.push_str(&format!("  bot        {bot} (id {bot_id})\n"));
    }
    if let Some(listener_id) = r.listener_id {
        out.push_str(&format!(
            "  listener   {} (id {listener_id})\n",
            r.listener_name.as_deref().unwrap_or("(deleted)")
        ));
    }
    if let Some(sid) = &r.message_sid {
        out.push_str(&format!(
            "  message    {sid} (`switchboard messages show {sid}`)\n"
        ));
    }
    out.push_str(&format!("  mode       {}\n", r.mode));
    out.push_str(&format!(
        "  exit       {}{}\n",
        r.exit_state,
        r.status.map(|s| format!(", HTTP {s}")).unwrap_or_default()
    ));
    out.push_str(&format!("  duration   {}\n", duration_us(r.duration_us)));
    out.push_str(&format!(
        "  trace id   {}\n",
        if r.trace_id.is_empty() {
            "- (tracing was off)"
        } else {
            &r.trace_id
        }
    ));
    out.push_str(&format!(
        "  request id {}\n\n",
        or_dash(r.request_id.as_deref())
    ));
    let trace = stored_trace(r.trace.as_ref().unwrap_or(&Value::Null));
    out.push_str(&crate::simulate::render_trace(&trace));
    let errors = stored_errors(&r.errors);
    if errors.is_empty() {
        out.push_str("\nNo errors.\n");
    } else {
        out.push('\n');
        out.push_str(&crate::simulate::render_errors(&errors));
    }
    print!("{out}");
    Ok(())
}

/// A stored trace as the engine's events, for simulate's printer. An event this version cannot
/// read (written by a newer engine) is kept as an error line showing its JSON.
pub fn stored_trace(trace: &Value) -> Vec<TraceEvent> {
    trace
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| match StoredEvent::deserialize(e) {
                    Ok(event) => event.into(),
                    Err(_) => TraceEvent::Error {
                        depth: 0,
                        node_id: None,
                        message: format!("(a stored trace event this version cannot read: {e})"),
                    },
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Stored run errors as the engine's.
pub fn stored_errors(errors: &Value) -> Vec<RunError> {
    errors
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| RunError {
                    node_id: e["node_id"].as_i64(),
                    message: match &e["message"] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    },
                })
                .collect()
        })
        .unwrap_or_default()
}

/// [`TraceEvent`] as the worker stores it (serde's `event`-tagged form). Reading only: the
/// printing is the engine's.
#[derive(Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum StoredEvent {
    Behavior {
        depth: usize,
        behavior_id: RecordId,
        title: String,
        event_point: String,
    },
    Enter {
        depth: usize,
        node_id: RecordId,
        node_type: NodeKind,
        title: String,
    },
    Skip {
        depth: usize,
        node_id: RecordId,
        node_type: NodeKind,
        title: String,
        reason: String,
    },
    Group {
        depth: usize,
        node_id: RecordId,
        any: bool,
    },
    Condition {
        depth: usize,
        node_id: RecordId,
        condition: String,
        #[serde(default)]
        name: Option<String>,
        oper: String,
        value: String,
        actual: Option<String>,
        pass: bool,
    },
    Outcome {
        depth: usize,
        node_id: RecordId,
        title: String,
        used: bool,
    },
    Action {
        depth: usize,
        node_id: RecordId,
        node_title: String,
        action: String,
        output: String,
    },
    Iteration {
        depth: usize,
        node_id: RecordId,
        key: String,
        counter: usize,
    },
    Exit {
        depth: usize,
        node_id: RecordId,
        mode: String,
    },
    Error {
        depth: usize,
        #[serde(default)]
        node_id: Option<RecordId>,
        message: String,
    },
}

impl From<StoredEvent> for TraceEvent {
    fn from(e: StoredEvent) -> TraceEvent {
        match e {
            StoredEvent::Behavior {
                depth,
                behavior_id,
                title,
                event_point,
            } => TraceEvent::Behavior {
                depth,
                behavior_id,
                title,
                event_point,
            },
            StoredEvent::Enter {
                depth,
                node_id,
                node_type,
                title,
            } => TraceEvent::Enter {
                depth,
                node_id,
                node_type: node_type.as_str(),
                title,
            },
            StoredEvent::Skip {
                depth,
                node_id,
                node_type,
                title,
                reason,
            } => TraceEvent::Skip {
                depth,
                node_id,
                node_type: node_type.as_str(),
                title,
                reason,
            },
            StoredEvent::Group {
                depth,
                node_id,
                any,
            } => TraceEvent::Group {
                depth,
                node_id,
                any,
            },
            StoredEvent::Condition {
                depth,
                node_id,
                condition,
                name,
                oper,
                value,
                actual,
                pass,
            } => TraceEvent::Condition {
                depth,
                node_id,
                condition,
                name,
                oper,
                value,
                actual,
                pass,
            },
            StoredEvent::Outcome {
                depth,
                node_id,
                title,
                used,
            } => TraceEvent::Outcome {
                depth,
                node_id,
                title,
                used,
            },
            StoredEvent::Action {
                depth,
                node_id,
                node_title,
                action,
                output,
            } => TraceEvent::Action {
                depth,
                node_id,
                node_title,
                action,
                output,
            },
            StoredEvent::Iteration {
                depth,
                node_id,
                key,
                counter,
            } => TraceEvent::Iteration {
                depth,
                node_id,
                key,
                counter,
            },
            StoredEvent::Exit {
                depth,
                node_id,
                mode,
            } => TraceEvent::Exit {
                depth,
                node_id,
                mode,
            },
            StoredEvent::Error {
                depth,
                node_id,
                message,
            } => TraceEvent::Error {
                depth,
                node_id,
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event the engine writes reads back as the same event, so a stored trace prints
    /// exactly as the live one did.
    #[test]
    fn stored_traces_read_back_as_the_engines_events() {
        let seed = crate::simulate::SimulateRequest {
            package_json: switchboard_test_support::seed_package(),
            behavior_uid: "behavior_43".into(),
            params: ["Body=help", "From=+15551234567"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect(),
            ..Default::default()
        };
        let sim = crate::simulate::simulate(&seed).unwrap();
        let stored = serde_json::to_value(&sim.output.trace).unwrap();
        let read = stored_trace(&stored);
        assert_eq!(read, sim.output.trace);
        assert_eq!(
            crate::simulate::render_trace(&read),
            crate::simulate::render_trace(&sim.output.trace)
        );
        let unknown = stored_trace(&json!([{"event": "teleport", "depth": 0}]));
        assert!(
            unknown[0]
                .to_text()
                .starts_with("[ERROR] (a stored trace event this version cannot read: ")
        );
        let errors = stored_errors(&json!([{"node_id": 7, "message": "boom"}, {"message": "x"}]));
        assert_eq!(
            crate::simulate::render_errors(&errors),
            "== Errors ==\nnode 7: boom\nx\n"
        );
    }
}
