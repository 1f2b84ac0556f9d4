//! Macro runs on request (`{prefix}.behavior.run`, [`RunBehaviorRequest`] →
//! [`RunBehaviorReply`]): `switchboard run` and other systems run a bot's `event.macro.bot`
//! behavior now, with variable inputs. The run is a real run (HTTP requests go through the
//! outbound service) and is recorded like a webhook run; the reply carries the variables it
//! set, its errors and the HTTP requests it made (never credentials).

use std::sync::Arc;
use std::time::Instant;

use indexmap::IndexMap;
use switchboard_engine::{RunOptions, RunOutput};
use switchboard_package::EVENT_MACRO;
use switchboard_store::{RunRecord, StoreError};
use switchboard_wire::{
    self as wire, RUN_BEHAVIOR_VERSION, RunBehaviorReply, RunBehaviorRequest, RunBehaviorResult,
};
use tracing::{Instrument as _, field};

use crate::{Worker, WorkerHost};

/// Why a run request was not run: the reply's `code` and `message`.
struct Rejection(&'static str, String);

fn rejected(r: Rejection) -> RunBehaviorReply {
    RunBehaviorReply::Rejected {
        version: RUN_BEHAVIOR_VERSION,
        code: r.0.to_owned(),
        message: r.1,
    }
}

fn internal(e: impl std::fmt::Display) -> Rejection {
    Rejection(
        "internal",
        format!("the worker could not run the behavior: {e}"),
    )
}

impl Worker {
    pub(crate) async fn handle_run(self: Arc<Self>, request: async_nats::service::Request) {
        let span = tracing::info_span!(
            "macro_run",
            bot = field::Empty,
            behavior = field::Empty,
            outcome = field::Empty,
            otel.kind = "consumer",
        );
        switchboard_telemetry::set_parent_from_nats(&span, request.message.headers.as_ref());
        let reply = async {
            match wire::decode::<RunBehaviorRequest>(&request.message.payload) {
                Ok(req) => self.run_requested(req).await.unwrap_or_else(rejected),
                Err(e) => rejected(Rejection(
                    "invalid_request",
                    format!("malformed run request: {e}"),
                )),
            }
        }
        .instrument(span.clone())
        .await;
        match &reply {
            RunBehaviorReply::Completed(r) => span.record("outcome", r.exit_state.as_str()),
            RunBehaviorReply::Rejected { code, message, .. } => {
                tracing::warn!(parent: &span, code, message, "macro run rejected");
                span.record("outcome", code.as_str())
            }
        };
        if let Err(e) = request.respond(Ok(wire::encode(&reply).into())).await {
            tracing::warn!(parent: &span, error = %e, "could not send the run reply");
        }
    }

    async fn run_requested(
        self: &Arc<Self>,
        req: RunBehaviorRequest,
    ) -> Result<RunBehaviorReply, Rejection> {
        if req.version != RUN_BEHAVIOR_VERSION {
            return Err(Rejection(
                "invalid_request",
                format!(
                    "version {} is not supported (this worker speaks version {RUN_BEHAVIOR_VERSION})",
                    req.version
                ),
            ));
        }
        tracing::Span::current().record("bot", req.bot.as_str());
        tracing::Span::current().record("behavior", req.behavior.as_str());
        let bot_id = match self.store.resolve_bot(req.bot.trim()).await {
            Ok(id) => id,
            Err(StoreError::NotFound(_)) => {
                return Err(Rejection(
                    "unknown_bot",
                    format!("no bot has the id or uid '{}'", req.bot),
                ));
            }
            Err(StoreError::Invalid(m)) => return Err(Rejection("unknown_bot", m)),
            Err(e) => return Err(internal(e)),
        };
        let behaviors = self.store.list_behaviors(bot_id).await.map_err(internal)?;
        let wanted = req.behavior.trim();
        let Some(row) = behaviors
            .iter()
            .find(|b| b.id.to_string() == wanted || b.uid == wanted)
        else {
            return Err(Rejection(
                "unknown_behavior",
                format!(
                    "bot {bot_id} has no behavior with the id or uid '{}' (see `switchboard behaviors list --bot {bot_id}`)",
                    req.behavior
                ),
            ));
        };
        if row.event != EVENT_MACRO {
            return Err(Rejection(
                "not_a_macro",
                format!(
                    "behavior {} \"{}\" is an {} behavior; only {EVENT_MACRO} behaviors can be run",
                    row.id, row.title, row.event
                ),
            ));
        }
        let behavior = self
            .compiled_behavior(row.id)
            .await
            .map_err(internal)?
            .ok_or_else(|| internal(format!("behavior {} vanished", row.id)))?;
        if behavior.def.is_disabled {
            return Err(Rejection(
                "disabled",
                format!("behavior {} \"{}\" is disabled", row.id, row.title),
            ));
        }
        if behavior.bot.is_disabled {
            return Err(Rejection(
                "disabled",
                format!("bot {bot_id} \"{}\" is disabled", behavior.bot.name),
            ));
        }
        if let Some(unknown) = req
            .vars
            .keys()
            .find(|k| !behavior.variables().contains_key(*k))
        {
            return Err(Rejection(
                "unknown_variable",
                format!(
                    "behavior {} \"{}\" has no variable '{unknown}' (its variables: {})",
                    row.id,
                    row.title,
                    behavior.variable_list()
                ),
            ));
        }
        let inputs: IndexMap<String, String> = req.vars.into_iter().collect();
        let host = WorkerHost::new(self.clone());
        let started = Instant::now();
        let b = behavior.clone();
        // The host blocks on NATS and the database: keep it off the async workers, in the
        // request's span.
        let output: RunOutput = tokio::task::spawn_blocking(move || {
            let _in = host.span.clone().entered();
            switchboard_engine::run_macro(&b, &inputs, &host, &RunOptions::real())
        })
        .await
        .map_err(|_| internal("the behavior run panicked"))?;
        self.opts.metrics.run("macro", &output, started.elapsed());
        for e in &output.errors {
            tracing::warn!(node_id = e.node_id, error = %e.message, "behavior run error");
        }
        let exit_state = serde_json::to_value(output.exit)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let run = RunRecord {
            behavior_id: row.id,
            listener_id: None,
            message_sid: None,
            request_id: None,
            trace_id: switchboard_telemetry::trace_id(&tracing::Span::current()),
            mode: "real".into(),
            exit_state: exit_state.clone(),
            status: None,
            trace: serde_json::to_value(&output.trace).map_err(internal)?,
            errors: serde_json::to_value(&output.errors).map_err(internal)?,
            duration_us: started.elapsed().as_micros() as i64,
        };
        let run_id = self.store.record_run(&run).await.map_err(internal)?;
        Ok(RunBehaviorReply::Completed(Box::new(RunBehaviorResult {
            version: RUN_BEHAVIOR_VERSION,
            run_id,
            bot_id,
            bot_name: behavior.bot.name.clone(),
            behavior_id: row.id,
            behavior_title: row.title.clone(),
            exit_state,
            vars: output.vars.into_iter().collect(),
            errors: output.errors.into_iter().map(|e| e.message).collect(),
            http_requests: output
                .http_requests
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect(),
        })))
    }
}
