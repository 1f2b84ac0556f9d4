//! Integration tests of the outbound service over a private nats-server, a fresh PostgreSQL
//! database and a real `twilio-fake`, counting what the sandbox received.

mod container;
mod contract;
mod crash;
mod faults;
mod http_account_kinds;
mod http_credentials;
mod http_payload;
mod limits;
mod lookup;
mod metrics;
mod outages;
mod procs;
mod rejects;
mod restart;
mod secrets;
mod send;
mod support;
