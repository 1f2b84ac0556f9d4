//! Fuzzes runtime Twig templates: arbitrary source rendered against arbitrary `http_params`, as a
//! behavior renders an inbound SMS; errors are fine, panics and runaway work are not.
//!
//! Input format (so that seeds and the dictionary stay readable): the template source, then
//! optionally a NUL byte and `key=value` lines that become `http_params`.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use switchboard_twig::{Dialect, Limits, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(data) = std::str::from_utf8(data) else {
        return;
    };
    let (source, params) = data.split_once('\0').unwrap_or((data, ""));
    let http_params: BTreeMap<String, Value> = params
        .split('\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (k, v) = line.split_once('=').unwrap_or((line, ""));
            (k.to_owned(), Value::from(v))
        })
        .collect();
    let ctx = Value::from(BTreeMap::from([(
        "http_params".to_owned(),
        Value::from(http_params),
    )]));

    let limits = Limits::default();
    let env = switchboard_twig::environment(Dialect::Runtime, &limits);
    if let Ok(output) = switchboard_twig::render_str(&env, source, &ctx, &limits) {
        assert!(
            output.len() <= limits.max_output_bytes,
            "output limit not enforced"
        );
    }
});
