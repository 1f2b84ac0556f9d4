//! The bounded caches behind [`crate::config`], and the memory of recent database failures.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most entries a cache holds: a safety net, since only configuration the operator created
/// (listeners, accounts, behaviors) ever becomes an entry.
pub(crate) const CACHE_MAX_ENTRIES: usize = 10_000;

/// Values cached for at most `ttl` (a safety net behind the change announcements), at most
/// `max` of them: when full, expired entries go first, and if none has expired the new value
/// is not kept (it is served, just not cached).
pub(crate) struct TtlCache<K, V> {
    ttl: Duration,
    max: usize,
    map: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: std::hash::Hash + Eq, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self::bounded(ttl, CACHE_MAX_ENTRIES)
    }
    pub(crate) fn bounded(ttl: Duration, max: usize) -> Self {
        TtlCache {
            ttl,
            max,
            map: Mutex::default(),
        }
    }
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let map = self.map.lock().unwrap();
        map.get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }
    /// The value whatever its age: configuration served while the database cannot refresh it.
    pub(crate) fn get_stale<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.map.lock().unwrap().get(key).map(|(_, v)| v.clone())
    }
    pub(crate) fn insert(&self, key: K, value: V) {
        let mut map = self.map.lock().unwrap();
        if map.len() >= self.max && !map.contains_key(&key) {
            map.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if map.len() >= self.max {
                return;
            }
        }
        map.insert(key, (Instant::now(), value));
    }
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
    pub(crate) fn clear(&self) {
        self.map.lock().unwrap().clear();
    }
}

/// How long after a failed configuration load the database is left alone (cached configuration
/// is served meanwhile).
pub(crate) const DB_RETRY: Duration = Duration::from_secs(2);

/// The database's recent failures to load configuration, and when the use of stale cache
/// entries was last logged.
#[derive(Default)]
pub(crate) struct DbDown {
    until: Mutex<Option<Instant>>,
    logged: Mutex<Option<Instant>>,
}

impl DbDown {
    pub(crate) fn is_down(&self) -> bool {
        self.until
            .lock()
            .unwrap()
            .is_some_and(|until| Instant::now() < until)
    }
    pub(crate) fn down(&self) {
        *self.until.lock().unwrap() = Some(Instant::now() + DB_RETRY);
    }
    pub(crate) fn up(&self) {
        *self.until.lock().unwrap() = None;
    }
    pub(crate) fn note_stale(&self) {
        let mut logged = self.logged.lock().unwrap();
        if logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
            *logged = Some(Instant::now());
            tracing::warn!(
                "the database does not answer: serving listeners, behaviors and account tokens this worker loaded before"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_makes_room_only_from_expired_entries() {
        let cache = TtlCache::bounded(Duration::from_millis(50), 3);
        for i in 0..3 {
            cache.insert(i, i);
        }
        cache.insert(3, 3);
        assert_eq!(cache.len(), 3, "full, nothing expired: not kept");
        assert_eq!(cache.get(&3), None);
        assert_eq!(cache.get(&0), Some(0));
        cache.insert(0, 10);
        assert_eq!(
            cache.get(&0),
            Some(10),
            "an existing key is updated when full"
        );
        std::thread::sleep(Duration::from_millis(60));
        cache.insert(4, 4);
        assert_eq!(cache.len(), 1, "the expired entries made room");
        assert_eq!(cache.get(&4), Some(4));
    }
}
