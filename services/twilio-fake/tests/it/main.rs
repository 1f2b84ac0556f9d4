//! Integration tests of twilio-fake: the real server started with `run` on 127.0.0.1:0 and
//! driven over HTTP with reqwest, as the outbound service's tests will drive it.

mod admin;
mod auth;
mod binary;
mod callbacks;
mod contract;
mod faults;
mod lookups;
mod messages;
mod openapi;
mod support;
mod validation;
