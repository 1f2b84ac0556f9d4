//! Criterion benchmark: evaluating the seed package's webhook behavior ("Respond to Twilio SMS
//! webhook") for each seed input, the package parsed, planned and compiled once. The input is a
//! realistic Twilio form body (docs/twilio.md §1), so request normalisation is included.
//!
//! Run: `cargo bench -p switchboard-engine --bench seed`

use criterion::{Criterion, criterion_group, criterion_main};
use switchboard_engine::{OfflineHost, RunOptions, run_webhook};

/// The allocator the behavior-worker runs with (services/behavior-worker/src/main.rs), so that
/// these figures are the worker's: with glibc's malloc, allocation is about a third of a run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "seed_support.rs"]
mod seed_support;
use seed_support::{seed_behavior, twilio_form};

fn bench(c: &mut Criterion) {
    let behavior = seed_behavior();
    let opts = RunOptions::real();
    let mut group = c.benchmark_group("seed_webhook");
    for (name, body) in [
        ("help", "help"),
        ("logo", "logo"),
        ("link", "link"),
        ("hi", "hi"),
        ("hostile", "Hi+%26+%3Cbye%3E+%27q%27+%22d%22"),
    ] {
        let req = twilio_form(body);
        group.bench_function(name, |b| {
            b.iter(|| run_webhook(&behavior, &req, &OfflineHost, &opts))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
