//! [`SeenKeys`]: the primary keys and unique-index entries one statement has written so far,
//! so that a key written twice is found (23505) however many rows the statement has: held in
//! memory while they fit a budget, then moved to a scratch RocksDB instance of the statement's
//! own ([`Scratch`]).

use crate::error::Result;
use crate::storage::Store;
use crate::storage::scratch::Scratch;
use rocksdb::{Direction, IteratorMode, WriteBatch};
use std::collections::HashSet;

/// Bytes of bookkeeping counted for each key held in memory besides the key itself.
const KEY_OVERHEAD: usize = 48;

/// The keys a statement wrote, for finding the ones it writes twice.
pub struct SeenKeys<'s> {
    store: &'s Store,
    budget: usize,
    memory: HashSet<Vec<u8>>,
    memory_bytes: usize,
    scratch: Option<Scratch>,
    /// The smallest and the largest key moved to the scratch instance: a key outside them is
    /// not looked up there (keys that arrive in order, such as ids, never are).
    spilled_range: Option<(Vec<u8>, Vec<u8>)>,
}

impl<'s> SeenKeys<'s> {
    /// No keys yet; about `budget` bytes of them are held in memory.
    pub fn new(store: &'s Store, budget: usize) -> Self {
        SeenKeys {
            store,
            budget,
            memory: HashSet::new(),
            memory_bytes: 0,
            scratch: None,
            spilled_range: None,
        }
    }

    /// Adds `keys` in order; the position of the first one the statement already wrote (or
    /// that `keys` repeats), after which the set is not to be used again.
    pub fn insert_all<K: AsRef<[u8]>>(&mut self, keys: &[K]) -> Result<Option<usize>> {
        let spilled = self.spilled_among(keys)?;
        for (position, key) in keys.iter().enumerate() {
            let key = key.as_ref();
            if spilled.get(position) == Some(&true) || !self.memory.insert(key.to_vec()) {
                return Ok(Some(position));
            }
            self.memory_bytes += key.len() + KEY_OVERHEAD;
        }
        if self.memory_bytes >= self.budget {
            self.spill()?;
        }
        Ok(None)
    }

    /// For each of `keys`, whether it was moved to the scratch instance (empty when none was).
    fn spilled_among<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<bool>> {
        let (Some(scratch), Some((low, high))) = (&self.scratch, &self.spilled_range) else {
            return Ok(Vec::new());
        };
        let within = |key: &[u8]| low.as_slice() <= key && key <= high.as_slice();
        let asked: Vec<&[u8]> = (keys.iter())
            .map(AsRef::as_ref)
            .filter(|key| within(key))
            .collect();
        let mut found = scratch.db().multi_get(asked).into_iter();
        (keys.iter())
            .map(|key| match within(key.as_ref()) {
                true => Ok(found.next().transpose()?.flatten().is_some()),
                false => Ok(false),
            })
            .collect()
    }

    /// Whether the statement wrote `key`.
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        if self.memory.contains(key) {
            return Ok(true);
        }
        match &self.scratch {
            Some(scratch) => Ok(scratch.db().get_pinned(key)?.is_some()),
            None => Ok(false),
        }
    }

    /// True once some keys were moved out of memory.
    pub fn spilled(&self) -> bool {
        self.scratch.is_some()
    }

    /// The keys held in memory (all of them while none is spilled).
    pub fn in_memory(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.memory.iter()
    }

    /// Calls `visit` with every key that starts with `prefix`, in no particular order.
    pub fn for_each_with_prefix(
        &self,
        prefix: &[u8],
        mut visit: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        for key in self.memory.iter().filter(|key| key.starts_with(prefix)) {
            visit(key)?;
        }
        let Some(scratch) = &self.scratch else {
            return Ok(());
        };
        let mode = IteratorMode::From(prefix, Direction::Forward);
        for entry in scratch.db().iterator(mode) {
            let (key, _) = entry?;
            if !key.starts_with(prefix) {
                break;
            }
            visit(&key)?;
        }
        Ok(())
    }

    /// Moves the keys held in memory to the scratch instance.
    fn spill(&mut self) -> Result<()> {
        let scratch = match self.scratch.take() {
            Some(scratch) => scratch,
            None => Scratch::open(self.store)?,
        };
        let mut batch = WriteBatch::default();
        for key in self.memory.drain() {
            let (low, high) =
                (self.spilled_range).get_or_insert_with(|| (key.clone(), key.clone()));
            if key < *low {
                *low = key.clone();
            } else if key > *high {
                *high = key.clone();
            }
            batch.put(key, []);
        }
        scratch.write(batch)?;
        self.scratch = Some(scratch);
        self.memory_bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_written_twice_are_found_in_memory_and_after_a_spill() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut seen = SeenKeys::new(&store, 1_000);
        let key = |n: u32| format!("k{n:06}").into_bytes();
        let first: Vec<_> = (0..100).map(key).collect();
        assert_eq!(seen.insert_all(&first).unwrap(), None);
        assert!(seen.spilled(), "100 keys are past a 1,000-byte budget");
        let second: Vec<_> = (100..110).map(key).collect();
        assert_eq!(seen.insert_all(&second).unwrap(), None);
        assert!(seen.contains(&key(5)).unwrap(), "a spilled key");
        assert!(seen.contains(&key(105)).unwrap(), "a key in memory");
        assert!(!seen.contains(&key(500)).unwrap());
        // a key of an earlier batch (spilled), then one repeated within the batch
        assert_eq!(seen.insert_all(&[key(200), key(7)]).unwrap(), Some(1));
        let mut ordered = SeenKeys::new(&store, 1_000);
        let first: Vec<_> = (300..400).map(key).collect();
        assert_eq!(ordered.insert_all(&first).unwrap(), None);
        assert!(ordered.spilled());
        let later: Vec<_> = (400..410).chain([350]).map(key).collect();
        assert_eq!(
            ordered.insert_all(&later).unwrap(),
            Some(10),
            "a key within the spilled range is looked up"
        );
        let mut fresh = SeenKeys::new(&store, 1_000);
        assert_eq!(
            fresh.insert_all(&[key(1), key(2), key(1)]).unwrap(),
            Some(2)
        );

        let mut all = Vec::new();
        seen.for_each_with_prefix(b"k0001", |key| {
            all.push(key.to_vec());
            Ok(())
        })
        .unwrap();
        all.sort();
        assert_eq!(all, (100..110).map(key).collect::<Vec<_>>());

        drop(seen);
        drop(ordered);
        let folders = std::fs::read_dir(dir.path().join(super::super::staging::STAGING_DIR));
        assert_eq!(folders.unwrap().count(), 0, "the scratch folder is gone");
    }
}
