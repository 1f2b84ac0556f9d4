//! The `behavior-worker` binary as a container runs it, configured by its environment, over a
//! private nats-server and a fresh PostgreSQL database: readiness, the healthcheck, bounded
//! shutdown, and the master key checks at start.

mod lifecycle;
mod retention;
mod secrets;
