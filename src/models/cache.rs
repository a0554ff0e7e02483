//! The prediction cache: `recommend` answers in memory, keyed by model, active version, user,
//! k and options. An answer is never served after a write that would change it: a new active
//! version (entries carry the version they were computed for, and a model's entries go when
//! another version is seen), and new events of the user in the model's live source (the live
//! delta tells the cache which users a write changed, before the write is acknowledged, or
//! that it changed an item the version was not trained with, which any answer may hold). TTL
//! and size are settings (`tastedb.cache_ttl_seconds`, `tastedb.cache_max_entries`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What identifies one answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Model name.
    pub model: String,
    /// The alias served (`active` for the active version).
    pub pin: String,
    /// User id as text.
    pub user: String,
    /// Rows asked for.
    pub k: usize,
    /// Options that change the answer (filter, exact), as text.
    pub options: String,
}

struct Entry<V> {
    value: V,
    stored: Instant,
    last_used: u64,
}

struct Inner<V> {
    entries: HashMap<CacheKey, Entry<V>>,
    /// The version each (model, alias)'s entries were computed with: number and creation
    /// time (a model dropped and trained again starts at version 1 again).
    models: HashMap<(String, String), (u32, i64)>,
    clock: u64,
    /// Counts invalidations: an answer computed before one is not stored after it.
    epoch: u64,
}

/// What [`PredictionCache::get`] saw, to hand to [`PredictionCache::put`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    epoch: u64,
}

/// Counters shown by `tastedb_cache_stats`.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Answers served from the cache.
    pub hits: AtomicU64,
    /// Answers computed.
    pub misses: AtomicU64,
    /// Entries dropped for size or age.
    pub evictions: AtomicU64,
    /// Entries dropped because a new version or new events made them stale.
    pub invalidations: AtomicU64,
}

/// The cache of one engine.
pub struct PredictionCache<V> {
    inner: Mutex<Inner<V>>,
    /// Counters.
    pub stats: CacheStats,
}

impl<V> std::fmt::Debug for PredictionCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PredictionCache").finish()
    }
}

impl<V: Clone> Default for PredictionCache<V> {
    fn default() -> Self {
        PredictionCache {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                models: HashMap::new(),
                clock: 0,
                epoch: 0,
            }),
            stats: CacheStats::default(),
        }
    }
}

impl<V: Clone> PredictionCache<V> {
    /// The cached answer for `key` computed with `version` (number, creation time), if
    /// fresh within `ttl`; the ticket goes to [`PredictionCache::put`] with the answer computed
    /// on a miss. Entries of other versions of the model are dropped first.
    pub fn get(&self, key: &CacheKey, version: (u32, i64), ttl: Duration) -> (Option<V>, Ticket) {
        let mut inner = self.lock();
        self.switch_version(&mut inner, key, version);
        let ticket = Ticket { epoch: inner.epoch };
        inner.clock += 1;
        let clock = inner.clock;
        let found = match inner.entries.get_mut(key) {
            Some(entry) if entry.stored.elapsed() <= ttl => {
                entry.last_used = clock;
                Some(entry.value.clone())
            }
            Some(_) => {
                inner.entries.remove(key);
                self.stats.evictions.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => None,
        };
        let counter = match found {
            Some(_) => &self.stats.hits,
            None => &self.stats.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        (found, ticket)
    }

    /// Keeps `value` for `key`, evicting the least recently used entries beyond `max_entries`;
    /// nothing when entries were invalidated since `ticket` was taken (the answer may be
    /// older than what invalidated them).
    pub fn put(&self, key: CacheKey, value: V, ticket: Ticket, max_entries: usize) {
        let mut inner = self.lock();
        if inner.epoch != ticket.epoch || max_entries == 0 {
            return;
        }
        if inner.entries.len() >= max_entries {
            // The least recently used tenth (at least one) goes at once, so that a full
            // cache does not scan every entry on every insert.
            let mut ages: Vec<u64> = inner.entries.values().map(|e| e.last_used).collect();
            let cut = (ages.len() / 10).max(ages.len() + 1 - max_entries.min(ages.len()));
            let (_, &mut newest_dropped, _) = ages.select_nth_unstable(cut.saturating_sub(1));
            let before = inner.entries.len();
            inner.entries.retain(|_, e| e.last_used > newest_dropped);
            let dropped = (before - inner.entries.len()) as u64;
            self.stats.evictions.fetch_add(dropped, Ordering::Relaxed);
        }
        inner.clock += 1;
        let last_used = inner.clock;
        inner.entries.insert(
            key,
            Entry {
                value,
                stored: Instant::now(),
                last_used,
            },
        );
    }

    /// Drops `model`'s answers for `users`, whose events changed.
    pub fn users_changed(&self, model: &str, users: &HashSet<String>) {
        let mut inner = self.lock();
        let before = inner.entries.len();
        inner
            .entries
            .retain(|key, _| key.model != model || !users.contains(&key.user));
        let dropped = (before - inner.entries.len()) as u64;
        self.stats
            .invalidations
            .fetch_add(dropped, Ordering::Relaxed);
        inner.epoch += 1;
    }

    /// Drops all of `model`'s answers: a write changed what any user may be recommended.
    pub fn model_changed(&self, model: &str) {
        self.drop_model(&mut self.lock(), model);
    }

    /// Entries now held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn switch_version(&self, inner: &mut Inner<V>, key: &CacheKey, version: (u32, i64)) {
        let served = (key.model.clone(), key.pin.clone());
        let current = inner.models.get(&served).copied();
        if current == Some(version) {
            return;
        }
        if current.is_some() {
            self.drop_where(inner, |k| k.model == key.model && k.pin == key.pin);
        }
        inner.models.insert(served, version);
    }

    /// Drops `model`'s entries as invalidated.
    fn drop_model(&self, inner: &mut Inner<V>, model: &str) {
        self.drop_where(inner, |key| key.model == model);
    }

    /// Drops the entries `stale` picks as invalidated.
    fn drop_where(&self, inner: &mut Inner<V>, stale: impl Fn(&CacheKey) -> bool) {
        let before = inner.entries.len();
        inner.entries.retain(|key, _| !stale(key));
        let dropped = (before - inner.entries.len()) as u64;
        self.stats
            .invalidations
            .fetch_add(dropped, Ordering::Relaxed);
        inner.epoch += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
