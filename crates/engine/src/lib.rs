//! The Cerb behavior engine: compiles behaviors once and runs them for webhooks and macros,
//! exactly as docs/semantics.md describes, with no IO of its own (HTTP requests and other
//! behaviors and bot keys come from the caller's [`Host`]), so the simulator, the worker and every test
//! share it.

pub mod compile;
pub mod keys;
pub mod ops;
pub mod request;
pub mod run;
mod stack;
pub mod strtotime;
pub mod trace;
pub mod values;

pub use compile::{BotInfo, CompiledBehavior};
pub use keys::{BotKeyWrite, MemoryBotKeys};
pub use request::{NormalizedRequest, WebhookRequest};
pub use run::{
    ConnectedAccount, ExitState, Host, HttpOutcome, HttpRequest, HttpRequestRecord, HttpResponse,
    Mode, OfflineHost, RunError, RunOptions, RunOutput, coerce_variable, run_macro, run_webhook,
    variable_companion,
};
pub use trace::TraceEvent;
