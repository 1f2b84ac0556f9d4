//! End-to-end tests over a real `nats-server` and a real PostgreSQL, with ingress and
//! behavior-worker started through their production `run` functions and the seed package
//! imported through the CLI's import.

mod bot_keys;
mod compose;
mod http;
mod import;
mod kubernetes;
mod lifecycle;
mod master_key;
mod metrics;
mod nats_security;
mod observability;
mod opt_out;
mod runlog;
mod standalone;
mod status;
mod traces;
mod webhook_log;
mod webhooks;
