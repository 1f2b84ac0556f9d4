//! Bot keys: Cerb's per-bot key-value store of `_set_key` and `_get_key` (docs/semantics.md
//! §4.5; Cerb 9.6 `DAO_BotDatastore`, `features/cerberusweb.core/api/dao/bot_datastore.php`).
//! The engine asks its [`Host`](crate::Host) for the values; [`MemoryBotKeys`] is the store of
//! hosts that keep them in memory (the simulator, tests).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use switchboard_package::RecordId;

/// Longest key, in characters: Cerb's `bot_datastore.data_key` is a `varchar(255)`.
pub const MAX_KEY_CHARS: usize = 255;

/// A `_set_key` a run made, as listed in its output (the simulator shows them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BotKeyWrite {
    pub bot_id: RecordId,
    pub key: String,
    /// The value stored; empty when the key was deleted (Cerb deletes a key set to `""`).
    pub value: String,
    /// When the value stops being returned (Unix seconds); `None`: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// Bot keys in memory, with Cerb's rules: a value is returned while `expires_at` is 0 or later
/// than now (`DAO_BotDatastore::get`); an empty value deletes the key (`DAO_BotDatastore::set`).
#[derive(Debug, Default)]
pub struct MemoryBotKeys {
    map: Mutex<HashMap<(RecordId, String), (String, i64)>>,
}

impl MemoryBotKeys {
    /// The value, unless missing or expired at `now` (Unix seconds).
    pub fn get(&self, bot: RecordId, key: &str, now: i64) -> Option<String> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(bot, key.to_string()))
            .filter(|(_, expires_at)| *expires_at == 0 || *expires_at > now)
            .map(|(v, _)| v.clone())
    }

    /// Stores `value` until `expires_at` (0: never), or deletes the key when `value` is empty.
    pub fn set(&self, bot: RecordId, key: &str, value: &str, expires_at: i64) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if value.is_empty() {
            map.remove(&(bot, key.to_string()));
        } else {
            map.insert((bot, key.to_string()), (value.to_string(), expires_at));
        }
    }
}

/// Whether PHP's `empty()` holds for a string (`""` and `"0"`): Cerb neither reads nor writes
/// such a key.
pub(crate) fn php_empty(s: &str) -> bool {
    s.is_empty() || s == "0"
}
