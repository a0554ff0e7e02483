//! The prediction cache: `recommend` answers in memory, keyed by model, active version, user,
//! k and options. An entry is never served stale with respect to the two events that change
//! the answer: a new active version (entries carry the version they were computed for, and a
//! model's entries go when another version is seen) and new rows for the user in a table the
//! model was trained from (`Store` tells the cache about every write). TTL and size are
//! settings (`tastedb.cache_ttl_seconds`, `tastedb.cache_max_entries`).

use crate::schema::TableDef;
use crate::storage::WrittenBatch;
use datafusion::arrow::array::Array;
use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What identifies one answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Model name.
    pub model: String,
    /// User id as text.
    pub user: String,
    /// Rows asked for.
    pub k: usize,
    /// Options that change the answer (filter, exact), as text.
    pub options: String,
}

/// How a model's answers depend on tables.
#[derive(Debug, Clone)]
pub struct ModelSource {
    /// The version the cached answers were computed with: its number and creation time (a
    /// model dropped and trained again starts at version 1 again).
    pub version: (u32, i64),
    /// Tables the model was trained from.
    pub tables: HashSet<String>,
    /// The user-id column in those tables.
    pub user_column: String,
}

struct Entry<V> {
    value: V,
    stored: Instant,
    last_used: u64,
}

struct Inner<V> {
    entries: HashMap<CacheKey, Entry<V>>,
    models: HashMap<String, ModelSource>,
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
    /// on a miss. Entries of other versions of the model are dropped first; `source` describes
    /// the model when the cache sees this version for the first time.
    pub fn get(
        &self,
        key: &CacheKey,
        version: (u32, i64),
        source: impl FnOnce() -> ModelSource,
        ttl: Duration,
    ) -> (Option<V>, Ticket) {
        let mut inner = self.lock();
        self.switch_version(&mut inner, &key.model, version, source);
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

    /// Drops the answers of users with new rows in `table` (rows shaped like `def`), for
    /// every model trained from it.
    pub fn rows_written(&self, def: &TableDef, batches: &[WrittenBatch]) {
        let mut inner = self.lock();
        let affected: Vec<(String, usize)> = inner
            .models
            .iter()
            .filter(|(_, s)| s.tables.contains(&def.name))
            .filter_map(|(model, s)| {
                let column = def.columns.iter().position(|c| c.name == s.user_column)?;
                Some((model.clone(), column))
            })
            .collect();
        for (model, column) in affected {
            let mut users = HashSet::new();
            for batch in batches {
                let Some(values) = batch.columns.get(column) else {
                    continue;
                };
                let Ok(text) = cast(values, &DataType::Utf8) else {
                    continue;
                };
                let text = text.as_string::<i32>();
                for row in 0..text.len() {
                    if text.is_valid(row) {
                        users.insert(text.value(row).to_string());
                    }
                }
            }
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
    }

    /// Entries now held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn switch_version(
        &self,
        inner: &mut Inner<V>,
        model: &str,
        version: (u32, i64),
        source: impl FnOnce() -> ModelSource,
    ) {
        let current = inner.models.get(model).map(|s| s.version);
        if current == Some(version) {
            return;
        }
        if current.is_some() {
            let before = inner.entries.len();
            inner.entries.retain(|key, _| key.model != model);
            let dropped = (before - inner.entries.len()) as u64;
            self.stats
                .invalidations
                .fetch_add(dropped, Ordering::Relaxed);
            inner.epoch += 1;
        }
        let mut source = source();
        source.version = version;
        inner.models.insert(model.to_string(), source);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
