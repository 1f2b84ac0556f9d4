//! Bot keys (`_set_key`, `_get_key`; docs/semantics.md §4.5) in a JetStream key-value bucket,
//! so that answering a webhook keeps needing NATS only (Cerb 9.6 keeps them in the
//! `bot_datastore` table: `DAO_BotDatastore`, `features/cerberusweb.core/api/dao/bot_datastore.php`).
//!
//! The bucket (`SWITCHBOARD_BOT_KEYS` by default) is created by the worker at start if it does
//! not exist: file storage, one value per key (history 1), values up to [`MAX_VALUE_SIZE`]. Only
//! KV features of nats-server 2.9 are used (direct get, no per-message TTL). A bot's key is
//! stored under `<bot id>.<the key's UTF-8 bytes in unpadded base64url>` (KV keys allow only
//! `[-/_=.a-zA-Z0-9]`; the engine caps keys at 255 characters, so at most 1,360 characters);
//! its value is the JSON envelope `Envelope`, whose `expires_at` is checked when it is read: an
//! expired value is missing, and is deleted then (only if nothing replaced it meanwhile).

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, kv};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The default bucket name.
pub const DEFAULT_BUCKET: &str = "SWITCHBOARD_BOT_KEYS";

/// Largest stored value (the JSON envelope): the engine caps a rendered value at 256 KiB
/// (docs/semantics.md, Decision 10), and JSON escaping may grow it; 1 MiB is also nats-server's
/// default `max_payload`.
pub const MAX_VALUE_SIZE: i32 = 1024 * 1024;

/// How long one bucket operation may take before the run records an error.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// Where bot keys are kept.
#[derive(Debug, Clone)]
pub struct BotKeysOptions {
    /// The JetStream key-value bucket (its stream is `KV_<bucket>`).
    pub bucket: String,
    /// Replicas of the bucket when the worker creates it (1 for a single server, 3 for a
    /// cluster); an existing bucket keeps its own.
    pub replicas: usize,
}

impl Default for BotKeysOptions {
    fn default() -> Self {
        BotKeysOptions {
            bucket: DEFAULT_BUCKET.into(),
            replicas: 1,
        }
    }
}

/// A stored value.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// The value (never empty: an empty value deletes the key).
    value: String,
    /// Unix seconds after which the value is gone; 0 or absent: never.
    #[serde(default, skip_serializing_if = "is_zero")]
    expires_at: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The bot keys bucket.
#[derive(Clone)]
pub struct BotKeys {
    kv: kv::Store,
}

impl BotKeys {
    /// Opens the bucket, creating it when it does not exist (idempotent: replicas starting
    /// together create the same configuration).
    pub async fn open(nats: &async_nats::Client, opts: &BotKeysOptions) -> anyhow::Result<BotKeys> {
        let js = jetstream::new(nats.clone());
        // The bucket's stream is created here rather than with `create_key_value`: that asks
        // for the account's JetStream info first, whose nats-server 2.9 answer async-nats 0.51
        // cannot read. The configuration is what `create_key_value` would create.
        let stream = format!("KV_{}", opts.bucket);
        js.get_or_create_stream(jetstream::stream::Config {
            name: stream.clone(),
            description: Some("Switchboard bot keys (_set_key, _get_key)".into()),
            subjects: vec![format!("$KV.{}.>", opts.bucket)],
            max_messages_per_subject: 1,
            max_message_size: MAX_VALUE_SIZE,
            storage: jetstream::stream::StorageType::File,
            num_replicas: opts.replicas.max(1),
            discard: jetstream::stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .with_context(|| {
            format!(
                "creating the bot keys bucket {} (stream {stream})",
                opts.bucket
            )
        })?;
        let kv = js
            .get_key_value(opts.bucket.as_str())
            .await
            .with_context(|| format!("opening the bot keys bucket {}", opts.bucket))?;
        Ok(BotKeys { kv })
    }

    /// [`BotKeys::open`], retried until it succeeds (NATS may not be reachable yet: the worker
    /// waits for it, as for its subscriptions); each failure is logged.
    pub async fn open_retrying(nats: &async_nats::Client, opts: &BotKeysOptions) -> BotKeys {
        let mut pause = Duration::from_millis(250);
        loop {
            match BotKeys::open(nats, opts).await {
                Ok(keys) => return keys,
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "the bot keys bucket is not available yet; retrying"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The value of `bot`'s `key`, unless missing or expired at `now` (Unix seconds).
    pub async fn get(&self, bot: i64, key: &str, now: i64) -> Result<Option<String>, String> {
        let name = kv_key(bot, key);
        let entry = tokio::time::timeout(OPERATION_TIMEOUT, self.kv.entry(name.as_str()))
            .await
            .map_err(|_| "the bot keys bucket did not answer in time".to_string())?
            .map_err(|e| format!("reading the bot keys bucket failed: {e}"))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        let envelope: Envelope = serde_json::from_slice(&entry.value)
            .map_err(|e| format!("a stored bot key is malformed: {e}"))?;
        if envelope.expires_at != 0 && envelope.expires_at <= now {
            // Gone, as Cerb's maintenance would have deleted it; a value set since stays.
            let kv = self.kv.clone();
            tokio::spawn(async move {
                let deleted = kv.delete_expect_revision(name.as_str(), Some(entry.revision));
                if let Ok(Err(e)) = tokio::time::timeout(OPERATION_TIMEOUT, deleted).await {
                    tracing::debug!(error = %e, "an expired bot key was not deleted");
                }
            });
            return Ok(None);
        }
        Ok(Some(envelope.value))
    }

    /// Stores `value` under `bot`'s `key` until `expires_at` (0: never), or deletes the key when
    /// `value` is empty.
    pub async fn set(
        &self,
        bot: i64,
        key: &str,
        value: &str,
        expires_at: i64,
    ) -> Result<(), String> {
        let name = kv_key(bot, key);
        let done = if value.is_empty() {
            tokio::time::timeout(OPERATION_TIMEOUT, self.kv.delete(name.as_str()))
                .await
                .map(|r| r.map_err(|e| e.to_string()))
        } else {
            let envelope = serde_json::to_vec(&Envelope {
                value: value.to_string(),
                expires_at,
            })
            .map_err(|e| e.to_string())?;
            if envelope.len() > MAX_VALUE_SIZE as usize {
                return Err(format!(
                    "the value is too large to store ({} bytes stored, at most {MAX_VALUE_SIZE})",
                    envelope.len()
                ));
            }
            tokio::time::timeout(
                OPERATION_TIMEOUT,
                self.kv.put(name.as_str(), envelope.into()),
            )
            .await
            .map(|r| r.map(|_| ()).map_err(|e| e.to_string()))
        };
        match done {
            Err(_) => Err("the bot keys bucket did not answer in time".into()),
            Ok(Err(e)) => Err(format!("writing the bot keys bucket failed: {e}")),
            Ok(Ok(())) => Ok(()),
        }
    }
}

/// The bucket key of `bot`'s `key`.
fn kv_key(bot: i64, key: &str) -> String {
    format!(
        "{bot}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_keys_are_valid_nats_kv_keys_and_distinct() {
        let keys = [
            "phone:+15551234567",
            "Phone:+15551234567",
            "with space/and.dots*>",
            "ünïcødé ☎",
            &"k".repeat(255),
        ];
        let names: Vec<String> = keys.iter().map(|k| kv_key(42, k)).collect();
        for name in &names {
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b)),
                "{name}"
            );
            assert!(name.starts_with("42.") && !name.ends_with('.'));
        }
        assert!(names[4].len() <= 3 + 340);
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        assert_ne!(kv_key(1, "k"), kv_key(11, "k"));
    }

    #[test]
    fn the_envelope_omits_a_never_expiry() {
        let e = Envelope {
            value: "3".into(),
            expires_at: 0,
        };
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"value":"3"}"#);
        let e: Envelope = serde_json::from_str(r#"{"value":"x","expires_at":5}"#).unwrap();
        assert_eq!((e.value.as_str(), e.expires_at), ("x", 5));
    }
}
