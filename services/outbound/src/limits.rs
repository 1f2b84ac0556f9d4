//! Outbound limits: a per-sender rate in message segments per second, kept in PostgreSQL so
//! that every replica shares it (`switchboard_store::limits`), and a cap on the Twilio requests
//! one replica has in flight per account.
//!
//! How a job gets its turn: it counts its segments (GSM-7 or UCS-2, [`job_segments`]), reserves
//! `segments / rate` seconds of its sender's schedule in one atomic statement (virtual
//! scheduling: the slot starts at the sender's next free time, or now, or the end of a
//! throttling pause, whichever is latest), and waits for its slot *inside* the job, while the
//! job's progress acks keep JetStream from redelivering it (a wait never has to fit in the ack
//! wait). A waiting job holds its in-flight slot, so with every slot taken by jobs of one slow
//! sender, jobs of other senders wait behind them (raise `OUTBOUND_MAX_IN_FLIGHT` if that
//! matters). At shutdown a waiting job is NAKed with the delay until its slot and keeps its
//! reservation: the redelivery (on this or another replica) finds and uses it. A reservation
//! whose slot passed unused (the job crashed) is not reused, since later jobs hold the time
//! after it; the redelivery reserves a fresh slot.
//!
//! When Twilio answers 429/20429 or 21611 (queue full), the sender is paused for `Retry-After`
//! (or the configured pause): jobs whose slot falls in the pause do not call Twilio, they are
//! NAKed until it ends and then reserve again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_store::Store;
use switchboard_store::limits::SlotRequest;
use switchboard_twilio::segments;
use switchboard_wire::outbound::SendSmsJob;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// A reservation whose slot passed longer ago than this is not reused.
const STALE_AFTER: Duration = Duration::from_secs(1);

/// The kinds of sender, each with its default rate (docs/twilio.md §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenderClass {
    /// A US/Canada long code (+1, not toll-free): 1 segment/s.
    LongCode,
    /// A US/Canada toll-free number (+1 800/833/844/855/866/877/888): 3 segments/s.
    TollFree,
    /// A short code (5 or 6 digits): 100 segments/s.
    ShortCode,
    /// A Messaging Service (`MG…`): its rate depends on its sender pool; configured.
    MessagingService,
    /// Anything else (numbers outside +1, alphanumeric sender IDs): configured.
    Other,
}

const TOLL_FREE_PREFIXES: [&str; 7] = ["800", "833", "844", "855", "866", "877", "888"];

/// The class of a sender (`from`, or a Messaging Service SID).
pub fn classify(sender: &str) -> SenderClass {
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if sender.starts_with("MG") && switchboard_twilio::MessagingServiceSid::parse(sender).is_ok() {
        return SenderClass::MessagingService;
    }
    if (5..=6).contains(&sender.len()) && all_digits(sender) {
        return SenderClass::ShortCode;
    }
    if let Some(national) = sender.strip_prefix("+1")
        && national.len() == 10
        && all_digits(national)
    {
        return if TOLL_FREE_PREFIXES.contains(&&national[..3]) {
            SenderClass::TollFree
        } else {
            SenderClass::LongCode
        };
    }
    SenderClass::Other
}

/// The limits' settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    /// Off: no per-sender rates and no account concurrency cap (benchmarks, or accounts whose
    /// throughput is left to Twilio's queue). Suppression is not a limit: it always applies.
    pub enabled: bool,
    /// Segments per second by sender class.
    pub long_code: f64,
    pub toll_free: f64,
    pub short_code: f64,
    pub messaging_service: f64,
    pub other: f64,
    /// Per-sender rates that win over the class defaults (any account's sender of that name).
    pub sender_rates: SenderRates,
    /// How long a sender pauses after 429/20429 or 21611 without `Retry-After`.
    pub throttle_pause: Duration,
    /// Twilio requests one replica has in flight per account; 0: no cap.
    pub account_max_concurrent: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            enabled: true,
            long_code: 1.0,
            toll_free: 3.0,
            short_code: 100.0,
            messaging_service: 1.0,
            other: 1.0,
            sender_rates: SenderRates::default(),
            throttle_pause: Duration::from_secs(1),
            account_max_concurrent: 10,
        }
    }
}

impl LimitsConfig {
    /// Every limit off.
    pub fn off() -> LimitsConfig {
        LimitsConfig {
            enabled: false,
            ..LimitsConfig::default()
        }
    }

    /// The sender's rate in segments per second.
    pub fn rate(&self, sender: &str) -> f64 {
        if let Some(rate) = self.sender_rates.get(sender) {
            return rate;
        }
        match classify(sender) {
            SenderClass::LongCode => self.long_code,
            SenderClass::TollFree => self.toll_free,
            SenderClass::ShortCode => self.short_code,
            SenderClass::MessagingService => self.messaging_service,
            SenderClass::Other => self.other,
        }
    }

    /// The share of the sender's time `segments` take: `segments / rate`.
    pub fn cost(&self, sender: &str, segments: u32) -> Duration {
        cost(segments, self.rate(sender))
    }
}

/// `segments / rate` seconds (a rate that is not positive and finite costs nothing).
pub fn cost(segments: u32, rate: f64) -> Duration {
    if !(rate.is_finite() && rate > 0.0) {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(f64::from(segments) / rate).unwrap_or(Duration::MAX)
}

/// Per-sender rates: `SENDER=RATE` pairs separated by commas
/// (`+15005550006=5,MG0123456789abcdef0123456789abcdef=10`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SenderRates(Vec<(String, f64)>);

impl SenderRates {
    pub fn get(&self, sender: &str) -> Option<f64> {
        self.0.iter().find(|(s, _)| s == sender).map(|(_, r)| *r)
    }

    /// Adds or replaces one sender's rate.
    pub fn set(&mut self, sender: &str, rate: f64) {
        self.0.retain(|(s, _)| s != sender);
        self.0.push((sender.to_owned(), rate));
    }
}

impl std::str::FromStr for SenderRates {
    type Err = String;

    fn from_str(s: &str) -> Result<SenderRates, String> {
        let mut rates = SenderRates::default();
        for (i, entry) in s.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let Some((sender, rate)) = entry.split_once('=') else {
                return Err(format!(
                    "entry {} '{entry}': expected SENDER=RATE (e.g. +15005550006=5)",
                    i + 1
                ));
            };
            let sender = sender.trim();
            let e164 = sender.len() > 1
                && sender.starts_with('+')
                && sender[1..].bytes().all(|b| b.is_ascii_digit());
            let sender_id = (1..=11).contains(&sender.len())
                && sender
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b' ');
            let valid_sender = e164 || sender_id || classify(sender) != SenderClass::Other;
            if !valid_sender {
                return Err(format!(
                    "entry {} '{entry}': '{sender}' is not an E.164 number, short code, sender ID or MG… SID",
                    i + 1
                ));
            }
            let rate =
                parse_rate(rate.trim()).map_err(|e| format!("entry {} '{entry}': {e}", i + 1))?;
            if rates.get(sender).is_some() {
                return Err(format!(
                    "entry {} '{entry}': {sender} is given twice",
                    i + 1
                ));
            }
            rates.set(sender, rate);
        }
        Ok(rates)
    }
}

/// A rate in segments per second: a positive, finite number.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "'{s}' is not a rate: give segments per second, a number above 0"
        )),
    }
}

/// The segments a job takes of its sender's rate: the body's SMS segments (GSM-7 or UCS-2), at
/// least 1; an MMS (media) is one message whatever its text.
pub fn job_segments(job: &SendSmsJob) -> u32 {
    if !job.media_urls.is_empty() {
        return 1;
    }
    let n = job
        .body
        .as_deref()
        .map_or(0, |b| segments::count(b).segments);
    u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

/// The job's sender: its `from`, else its Messaging Service.
pub fn job_sender(job: &SendSmsJob) -> Option<&str> {
    job.from.as_deref().or(job.messaging_service_sid.as_deref())
}

/// What the schedule said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// The slot came: create now.
    Go,
    /// Not now: NAK with this delay (shutdown while waiting, or the sender is paused).
    Later(Duration),
}

/// The limits of one replica: the configuration and the account semaphores.
pub struct Limits {
    pub config: LimitsConfig,
    accounts: Mutex<HashMap<i64, Arc<Semaphore>>>,
}

impl Limits {
    pub fn new(config: LimitsConfig) -> Limits {
        Limits {
            config,
            accounts: Mutex::default(),
        }
    }

    /// Waits for the job's turn to create a message from `sender`.
    #[allow(clippy::too_many_arguments)]
    pub async fn wait_turn(
        &self,
        store: &Store,
        job: &SendSmsJob,
        attempt: u32,
        account_id: i64,
        stop: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<Turn> {
        let Some(sender) = job_sender(job).filter(|_| self.config.enabled) else {
            return Ok(Turn::Go);
        };
        let segments = job_segments(job);
        let request = SlotRequest {
            idempotency_key: &job.idempotency_key,
            attempt,
            account_id,
            sender,
            segments,
            cost: self.config.cost(sender, segments),
            stale_after: STALE_AFTER,
        };
        let slot = store.rate_reserve(&request).await?;
        let wait = slot.wait();
        tracing::debug!(
            sender,
            segments,
            wait_ms = wait.as_millis() as u64,
            reused = slot.reused,
            "send slot reserved"
        );
        if !wait.is_zero() {
            let started = tokio::time::Instant::now();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = crate::consume::stopped(stop) => {
                    // Keep the reservation: the redelivery finds it.
                    return Ok(Turn::Later(wait.saturating_sub(started.elapsed())));
                }
            }
        }
        let state = store
            .rate_take_slot(&job.idempotency_key, account_id, sender)
            .await?;
        if let Some(pause) = state.paused_for() {
            tracing::info!(
                sender,
                pause_ms = pause.as_millis() as u64,
                "sender paused after Twilio throttled it; job retried after the pause"
            );
            return Ok(Turn::Later(pause + Duration::from_millis(10)));
        }
        Ok(Turn::Go)
    }

    /// Twilio throttled a create from the job's sender: pause the sender.
    pub async fn throttled(
        &self,
        store: &Store,
        job: &SendSmsJob,
        account_id: i64,
        retry_after: Option<Duration>,
    ) -> anyhow::Result<()> {
        let Some(sender) = job_sender(job).filter(|_| self.config.enabled) else {
            return Ok(());
        };
        let pause = retry_after.unwrap_or(self.config.throttle_pause);
        let until = store.rate_pause(account_id, sender, pause).await?;
        tracing::warn!(sender, pause_ms = pause.as_millis() as u64, until = %until, "Twilio throttled the sender; it pauses");
        Ok(())
    }

    /// A permit for one Twilio request of the account (none needed when there is no cap).
    pub async fn account_permit(&self, account_id: i64) -> Option<OwnedSemaphorePermit> {
        if !self.config.enabled || self.config.account_max_concurrent == 0 {
            return None;
        }
        let semaphore = self
            .accounts
            .lock()
            .unwrap()
            .entry(account_id)
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.account_max_concurrent)))
            .clone();
        semaphore.acquire_owned().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_are_classified_like_twilio_prices_their_throughput() {
        assert_eq!(classify("+15005550006"), SenderClass::LongCode);
        assert_eq!(classify("+14165550100"), SenderClass::LongCode, "Canada");
        for tf in ["800", "833", "844", "855", "866", "877", "888"] {
            assert_eq!(
                classify(&format!("+1{tf}5550100")),
                SenderClass::TollFree,
                "{tf}"
            );
        }
        assert_eq!(
            classify("+18225550100"),
            SenderClass::LongCode,
            "822 is not toll-free"
        );
        assert_eq!(classify("12345"), SenderClass::ShortCode);
        assert_eq!(classify("123456"), SenderClass::ShortCode);
        assert_eq!(classify("1234"), SenderClass::Other);
        assert_eq!(classify("1234567"), SenderClass::Other);
        assert_eq!(
            classify("MG0123456789abcdef0123456789abcdef"),
            SenderClass::MessagingService
        );
        assert_eq!(classify("MG123"), SenderClass::Other);
        assert_eq!(classify("+447700900123"), SenderClass::Other);
        assert_eq!(
            classify("+1500555000"),
            SenderClass::Other,
            "9 digits after +1"
        );
        assert_eq!(classify("Acme"), SenderClass::Other);
    }

    #[test]
    fn rates_come_from_overrides_then_the_class() {
        let mut config = LimitsConfig {
            messaging_service: 7.0,
            ..LimitsConfig::default()
        };
        config.sender_rates = "+15005550006=5, MG0123456789abcdef0123456789abcdef=10"
            .parse()
            .unwrap();
        assert_eq!(config.rate("+15005550006"), 5.0);
        assert_eq!(config.rate("+15005550007"), 1.0);
        assert_eq!(config.rate("+18005550100"), 3.0);
        assert_eq!(config.rate("55555"), 100.0);
        assert_eq!(config.rate("MG0123456789abcdef0123456789abcdef"), 10.0);
        assert_eq!(config.rate("MGffffffffffffffffffffffffffffffff"), 7.0);
        assert_eq!(config.rate("Acme"), 1.0);
    }

    #[test]
    fn bad_sender_rates_are_refused_naming_the_entry() {
        assert_eq!("".parse::<SenderRates>().unwrap(), SenderRates::default());
        for (bad, says) in [
            ("+15005550006", "expected SENDER=RATE"),
            ("+15005550006=0", "above 0"),
            ("+15005550006=-1", "above 0"),
            ("+15005550006=fast", "'fast' is not a rate"),
            ("+15005550006=inf", "above 0"),
            ("+1500x=2", "is not an E.164 number"),
            ("+15005550006=1,+15005550006=2", "given twice"),
            ("12345=3,bad sender id!=1", "entry 2"),
        ] {
            let e = bad.parse::<SenderRates>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_schedule_charges_segments_over_the_rate() {
        assert_eq!(cost(1, 1.0), Duration::from_secs(1));
        assert_eq!(cost(3, 3.0), Duration::from_secs(1));
        assert_eq!(cost(2, 4.0), Duration::from_millis(500));
        assert_eq!(cost(1, 100.0), Duration::from_millis(10));
        assert_eq!(cost(5, 0.5), Duration::from_secs(10));
        assert_eq!(cost(1, 0.0), Duration::ZERO);
        assert_eq!(cost(1, f64::NAN), Duration::ZERO);
        let config = LimitsConfig::default();
        // A 3-segment message from a long code takes 3 s of it; from a toll-free number 1 s.
        assert_eq!(config.cost("+15005550006", 3), Duration::from_secs(3));
        assert_eq!(config.cost("+18885550100", 3), Duration::from_secs(1));
    }

    fn job(body: Option<&str>, media: bool) -> SendSmsJob {
        let mut doc = serde_json::json!({
            "version": 1, "idempotency_key": "k", "account": {"id": 1},
            "to": "+14155551234", "from": "+15005550006",
        });
        if let Some(body) = body {
            doc["body"] = body.into();
        }
        if media {
            doc["media_urls"] = serde_json::json!(["https://example.com/a.png"]);
        }
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn jobs_count_their_segments() {
        assert_eq!(job_segments(&job(Some("hi"), false)), 1);
        assert_eq!(
            job_segments(&job(Some(&"a".repeat(161)), false)),
            2,
            "GSM-7"
        );
        assert_eq!(job_segments(&job(Some(&"á".repeat(71)), false)), 2, "UCS-2");
        assert_eq!(
            job_segments(&job(Some(&"€".repeat(81)), false)),
            2,
            "escapes"
        );
        assert_eq!(job_segments(&job(Some(&"a".repeat(400)), true)), 1, "MMS");
        assert_eq!(job_segments(&job(None, true)), 1);
        assert_eq!(job_sender(&job(None, true)), Some("+15005550006"));
    }
}
