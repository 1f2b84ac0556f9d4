//! Fault injection: what the admin API can make the fake do wrong, globally (random 429s and
//! 5xx from a seeded generator, latency, accept-then-fail, a lagging message list) or per
//! destination number (a forced error code, latency, accept-then-fail, a lagging list, a failed
//! delivery, lookup answers).

use axum::http::StatusCode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::TwilioError;

/// Faults that apply to every API request (Messages and Lookups).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GlobalFaults {
    /// Re-seed the generator behind the random faults (only acted on when set in a `PUT`).
    pub seed: Option<u64>,
    /// Fraction (0..=1) of API requests answered 429 / 20429.
    pub rate_429: f64,
    /// Fraction (0..=1) of API requests answered with `status_5xx`.
    pub rate_5xx: f64,
    /// The status of the random 5xx answers.
    pub status_5xx: u16,
    /// Random 5xx answers have no body at all (as a load balancer's 503); otherwise Twilio's
    /// JSON error with code 20500 / 20503.
    pub empty_body_5xx: bool,
    /// Seconds for a `Retry-After` header on the random 429s; none when unset.
    pub retry_after: Option<u64>,
    /// Delay before every API answer, in milliseconds.
    pub latency_ms: u64,
    /// Every successful create is then answered with an error, a dropped connection, or an
    /// answer later than the client waits.
    pub accept_then_fail: Option<AcceptThenFail>,
    /// A created message appears in list answers only this many milliseconds after its
    /// creation (Twilio's list is not read-after-write consistent); fetch by SID sees it at
    /// once.
    pub list_lag_ms: u64,
    /// Twilio's REST concurrency limit: an API request arriving while this many are already
    /// in flight is answered 429 / 20429 at once (with `retry_after` when set).
    pub max_concurrent: Option<usize>,
}

impl Default for GlobalFaults {
    fn default() -> Self {
        GlobalFaults {
            seed: None,
            rate_429: 0.0,
            rate_5xx: 0.0,
            status_5xx: 503,
            empty_body_5xx: true,
            retry_after: None,
            latency_ms: 0,
            accept_then_fail: None,
            list_lag_ms: 0,
            max_concurrent: None,
        }
    }
}

/// What to do for one destination number (the `To` of a create, the number of a lookup).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NumberRule {
    /// Refuse creates to this number, and lookups of it, with this error (nothing is created).
    pub error: Option<ForcedError>,
    /// Extra delay for requests about this number, in milliseconds.
    pub latency_ms: Option<u64>,
    /// Create the message, then answer with an error, drop the connection, or answer late.
    pub accept_then_fail: Option<AcceptThenFail>,
    /// Messages to this number appear in list answers only this many milliseconds after their
    /// creation (instead of the global `list_lag_ms`).
    pub list_lag_ms: Option<u64>,
    /// Deliver asynchronously as failed or undelivered, with an error code.
    pub delivery: Option<DeliveryFailure>,
    /// What lookups answer for this number.
    pub lookup: Option<LookupRule>,
}

/// A forced error answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForcedError {
    /// Twilio's error code (21610, 21211, 20429, …).
    pub code: u32,
    /// HTTP status; by default 429 for 20429, 401 for 20003, 404 for 20404, the code itself
    /// when it is 500..=599, else 400.
    #[serde(default)]
    pub status: Option<u16>,
    /// The message; by default Twilio's for the code.
    #[serde(default)]
    pub message: Option<String>,
    /// Answer with no body (e.g. a bare 503).
    #[serde(default)]
    pub empty_body: bool,
    /// Seconds for a `Retry-After` header.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Only the next N requests fail; then the rule's error is removed. Unset: always.
    #[serde(default)]
    pub times: Option<u32>,
}

impl ForcedError {
    /// The HTTP status this error is answered with.
    pub fn http_status(&self) -> u16 {
        self.status.unwrap_or(match self.code {
            20429 => 429,
            20003 => 401,
            20404 => 404,
            code @ 500..=599 => code as u16,
            20500 => 500,
            20503 => 503,
            _ => 400,
        })
    }

    /// The answer.
    pub fn to_error(&self) -> TwilioError {
        let status =
            StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut error = match &self.message {
            Some(message) => TwilioError::with_message(status, self.code, message),
            None => TwilioError::new(status, self.code),
        };
        error.empty_body = self.empty_body;
        error.retry_after = self.retry_after;
        error
    }
}

/// The answer to a create that succeeded on the fake's side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum AcceptThenFail {
    /// An HTTP error status (default 500), with Twilio's JSON error or no body.
    Status {
        #[serde(default = "default_fail_status")]
        status: u16,
        #[serde(default)]
        empty_body: bool,
    },
    /// The connection is closed without any answer.
    Drop,
    /// The 201 answer is held back for `delay_ms` after the message was created: a client that
    /// waits less gives up (a create that timed out, yet went through).
    Slow { delay_ms: u64 },
}

fn default_fail_status() -> u16 {
    500
}

/// The terminal status of a failed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailedStatus {
    /// Twilio could not send it (no `sent` before it).
    Failed,
    /// Sent, but the carrier did not deliver it.
    Undelivered,
}

/// A delivery that ends badly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryFailure {
    /// `failed` or `undelivered`.
    pub status: FailedStatus,
    /// The asynchronous error code (30003 unreachable, 30005 unknown number, 30007 filtered…).
    #[serde(default = "default_delivery_code")]
    pub error_code: u32,
}

fn default_delivery_code() -> u32 {
    30003
}

/// Lookup answers for a number.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LookupRule {
    /// Force the number invalid (v1 404, v2 `valid: false`) or valid.
    pub valid: Option<bool>,
    /// v1 carrier type (`mobile`, `landline`, `voip`); v2 types are accepted too.
    pub line_type: Option<String>,
    /// Carrier name.
    pub carrier_name: Option<String>,
    /// Caller name.
    pub caller_name: Option<String>,
    /// `CONSUMER`, `BUSINESS` or `UNDETERMINED`.
    pub caller_type: Option<String>,
}

/// The random faults' generator and settings.
#[derive(Debug)]
pub struct FaultState {
    /// Current global settings.
    pub global: GlobalFaults,
    rng: StdRng,
    seed: u64,
}

impl FaultState {
    /// No faults; the generator seeded with `seed`.
    pub fn new(seed: u64) -> FaultState {
        FaultState {
            global: GlobalFaults::default(),
            rng: StdRng::seed_from_u64(seed),
            seed,
        }
    }

    /// Replaces the settings; re-seeds when the new settings carry a seed.
    pub fn set(&mut self, global: GlobalFaults) {
        if let Some(seed) = global.seed {
            self.seed = seed;
            self.rng = StdRng::seed_from_u64(seed);
        }
        self.global = global;
    }

    /// Back to no faults and the start of the current seed's sequence.
    pub fn reset(&mut self) {
        self.global = GlobalFaults::default();
        self.rng = StdRng::seed_from_u64(self.seed);
    }

    /// The random fault for the next API request, if one is drawn. One number is drawn per
    /// request whenever a rate is set, so a seed gives the same sequence for the same requests.
    pub fn draw(&mut self) -> Option<(TwilioError, &'static str)> {
        let g = &self.global;
        if g.rate_429 <= 0.0 && g.rate_5xx <= 0.0 {
            return None;
        }
        let x: f64 = self.rng.random();
        if x < g.rate_429 {
            let mut error = TwilioError::new(StatusCode::TOO_MANY_REQUESTS, 20429);
            error.retry_after = g.retry_after;
            Some((error, "rate_429"))
        } else if x < g.rate_429 + g.rate_5xx {
            let status =
                StatusCode::from_u16(g.status_5xx).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let code = if status == StatusCode::SERVICE_UNAVAILABLE {
                20503
            } else {
                20500
            };
            let mut error = TwilioError::new(status, code);
            error.empty_body = g.empty_body_5xx;
            Some((error, "rate_5xx"))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_draws_repeat() {
        let run = |seed| {
            let mut f = FaultState::new(seed);
            f.set(GlobalFaults {
                rate_429: 0.3,
                rate_5xx: 0.1,
                ..GlobalFaults::default()
            });
            (0..200)
                .map(|_| f.draw().map(|(e, _)| e.status.as_u16()))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let draws = run(7);
        let n429 = draws.iter().filter(|d| **d == Some(429)).count();
        let n503 = draws.iter().filter(|d| **d == Some(503)).count();
        assert!((40..=80).contains(&n429), "{n429}");
        assert!((8..=35).contains(&n503), "{n503}");
    }

    #[test]
    fn forced_error_statuses() {
        let e = |code| ForcedError {
            code,
            status: None,
            message: None,
            empty_body: false,
            retry_after: None,
            times: None,
        };
        assert_eq!(e(20429).http_status(), 429);
        assert_eq!(e(21610).http_status(), 400);
        assert_eq!(e(503).http_status(), 503);
        assert_eq!(e(20003).http_status(), 401);
        let rule: NumberRule = serde_json::from_str(
            r#"{"accept_then_fail": {"mode": "drop"}, "delivery": {"status": "undelivered"}}"#,
        )
        .unwrap();
        assert_eq!(rule.accept_then_fail, Some(AcceptThenFail::Drop));
        assert_eq!(rule.delivery.unwrap().error_code, 30003);
        let rule: NumberRule = serde_json::from_str(
            r#"{"accept_then_fail": {"mode": "slow", "delay_ms": 1500}, "list_lag_ms": 800}"#,
        )
        .unwrap();
        assert_eq!(
            rule.accept_then_fail,
            Some(AcceptThenFail::Slow { delay_ms: 1500 })
        );
        assert_eq!(rule.list_lag_ms, Some(800));
        let global: GlobalFaults = serde_json::from_str(r#"{"list_lag_ms": 200}"#).unwrap();
        assert_eq!(global.list_lag_ms, 200);
    }
}
