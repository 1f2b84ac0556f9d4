//! Fuzzes runtime Twig templates: arbitrary source rendered against arbitrary `http_params`, as a
//! behavior renders an inbound SMS; errors are fine, panics and runaway work are not.

#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use switchboard_twig::{Dialect, Limits, Value};

#[derive(Arbitrary, Debug)]
struct Input {
    source: String,
    http_params: BTreeMap<String, String>,
}

fuzz_target!(|input: Input| {
    let limits = Limits::default();
    let env = switchboard_twig::environment(Dialect::Runtime, &limits);
    let params: BTreeMap<String, Value> =
        input.http_params.into_iter().map(|(k, v)| (k, Value::from(v))).collect();
    let ctx = Value::from(BTreeMap::from([("http_params".to_owned(), Value::from(params))]));
    if let Ok(output) = switchboard_twig::render_str(&env, &input.source, &ctx, &limits) {
        assert!(output.len() <= limits.max_output_bytes, "output limit not enforced");
    }
});
