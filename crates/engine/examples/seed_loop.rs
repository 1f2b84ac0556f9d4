//! Runs the seed webhook behavior N times for one input, for instruction counts that do not
//! depend on machine load: `valgrind --tool=callgrind target/release/examples/seed_loop help 10000`
//! (divide the total by N; compare against a run with N=0 to remove set-up).

use switchboard_engine::{OfflineHost, RunOptions, run_webhook};

/// The allocator the behavior-worker runs with (services/behavior-worker/src/main.rs), so that
/// these figures are the worker's: with glibc's malloc, allocation is about a third of a run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../benches/seed_support.rs"]
mod seed_support;

fn main() {
    let mut args = std::env::args().skip(1);
    let body = args.next().unwrap_or_else(|| "help".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let behavior = seed_support::seed_behavior();
    let req = seed_support::twilio_form(&body);
    let opts = RunOptions::real();
    let mut bytes = 0;
    for _ in 0..n {
        bytes += run_webhook(&behavior, &req, &OfflineHost, &opts).body.len();
    }
    println!("{n} runs, {bytes} body bytes");
}
