//! What a run did, step by step: the events behind `switchboard simulate`'s trace (JSON and
//! Cerb-simulator-like text) and the run log the worker stores. Never holds credentials.

use serde::Serialize;
use switchboard_package::RecordId;

/// One step of a run. `depth` is the nesting level for display.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TraceEvent {
    /// A behavior starts (the top-level one, or one called with `_run_behavior`).
    Behavior {
        depth: usize,
        behavior_id: RecordId,
        title: String,
        event_point: String,
    },
    /// A node is entered.
    Enter {
        depth: usize,
        node_id: RecordId,
        node_type: &'static str,
        title: String,
    },
    /// A node is skipped without evaluation (disabled, simulator-only, subroutine).
    Skip {
        depth: usize,
        node_id: RecordId,
        node_type: &'static str,
        title: String,
        reason: String,
    },
    /// A condition group starts.
    Group {
        depth: usize,
        node_id: RecordId,
        any: bool,
    },
    /// One condition with its values and result.
    Condition {
        depth: usize,
        node_id: RecordId,
        condition: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        oper: String,
        /// The value the condition compares against.
        value: String,
        /// The value found in the request or dictionary (`null` when it is an array).
        actual: Option<String>,
        pass: bool,
    },
    /// An outcome's verdict.
    Outcome {
        depth: usize,
        node_id: RecordId,
        title: String,
        used: bool,
    },
    /// An action with its rendered output.
    Action {
        depth: usize,
        node_id: RecordId,
        node_title: String,
        action: String,
        output: String,
    },
    /// A loop iteration begins.
    Iteration {
        depth: usize,
        node_id: RecordId,
        key: String,
        counter: usize,
    },
    /// `_exit` stopped the run.
    Exit {
        depth: usize,
        node_id: RecordId,
        mode: String,
    },
    /// Something failed; the run goes on unless a limit was reached.
    Error {
        depth: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        node_id: Option<RecordId>,
        message: String,
    },
}

impl TraceEvent {
    /// One or more lines of Cerb-simulator-like text.
    pub fn to_text(&self) -> String {
        let pad = |d: &usize| "  ".repeat(*d);
        match self {
            TraceEvent::Behavior {
                depth,
                behavior_id,
                title,
                event_point,
            } => {
                format!(
                    "{}BEHAVIOR :: {title} ({behavior_id}) [{event_point}]",
                    pad(depth)
                )
            }
            TraceEvent::Enter {
                depth,
                node_id,
                node_type,
                title,
            } => {
                format!("{}ENTER {node_type} :: {title} ({node_id})", pad(depth))
            }
            TraceEvent::Skip {
                depth,
                node_id,
                node_type,
                title,
                reason,
            } => {
                format!(
                    "{}SKIP {node_type} :: {title} ({node_id}): {reason}",
                    pad(depth)
                )
            }
            TraceEvent::Group { depth, any, .. } => {
                format!(
                    "{}Conditions are in `{}` group.",
                    pad(depth),
                    if *any { "any" } else { "all" }
                )
            }
            TraceEvent::Condition {
                depth,
                condition,
                name,
                oper,
                value,
                actual,
                pass,
                ..
            } => {
                let p = pad(depth);
                let label = match name {
                    Some(n) => format!("`{condition}` (`{n}`)"),
                    None => format!("`{condition}`"),
                };
                let actual = match actual {
                    Some(a) => format!("`{a}`"),
                    None => "(array)".to_string(),
                };
                format!(
                    "{p}Checking condition {label}...\n{p}Text: {actual} {oper} `{value}`\n{p}... {}",
                    if *pass { "PASS" } else { "FAIL" }
                )
            }
            TraceEvent::Outcome { depth, used, .. } => {
                format!(
                    "{}{}",
                    pad(depth),
                    if *used {
                        "Using this outcome."
                    } else {
                        "Skipping this outcome."
                    }
                )
            }
            TraceEvent::Action {
                depth,
                node_title,
                action,
                output,
                ..
            } => {
                let p = pad(depth);
                let mut s = format!("{p}ACTION {action} ({node_title})");
                for line in output.lines() {
                    s.push('\n');
                    s.push_str(&p);
                    s.push_str("  ");
                    s.push_str(line);
                }
                s
            }
            TraceEvent::Iteration {
                depth,
                key,
                counter,
                ..
            } => {
                format!("{}Loop iteration {counter} (key `{key}`)", pad(depth))
            }
            TraceEvent::Exit { depth, mode, .. } => format!("{}EXIT ({mode})", pad(depth)),
            TraceEvent::Error {
                depth,
                node_id,
                message,
            } => match node_id {
                Some(id) => format!("{}[ERROR] node {id}: {message}", pad(depth)),
                None => format!("{}[ERROR] {message}", pad(depth)),
            },
        }
    }
}
