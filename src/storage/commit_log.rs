//! [`CommitLog`]: which commit last wrote each checked key, so that a transaction finds at
//! COMMIT whether one that committed after it began wrote the same rows (first committer wins).
//!
//! Commits are numbered when they pass the check, then written and synced *outside* the log's
//! lock, so concurrent commits share RocksDB's grouped WAL sync instead of taking turns across
//! each fsync. A number is "visible" once every commit up to it has been written; snapshots
//! start at the visible number, so a commit still being written is after every snapshot taken
//! meanwhile and clashes with them as a later commit should.

use crate::storage::keys;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Keys remembered before those that no open transaction can clash with are forgotten.
const FORGET_AFTER: usize = 100_000;

/// The last commit number of each checked key, the commits being written, and the number each
/// open transaction started after.
#[derive(Default)]
pub(super) struct CommitLog {
    /// The last number given to a commit.
    last: u64,
    /// Numbers of commits that passed the check and are being written.
    writing: BTreeSet<u64>,
    written: HashMap<Vec<u8>, u64>,
    /// Tables a commit wrote too many keys of to list them: every row and index entry of
    /// such a table counts as written by that commit.
    tables: HashMap<u64, u64>,
    /// Start number → open transactions that started there.
    open: BTreeMap<u64, usize>,
}

impl CommitLog {
    /// The last number up to which every commit is written (and so in any snapshot taken now).
    pub(super) fn visible(&self) -> u64 {
        self.writing
            .first()
            .map_or(self.last, |&first| first.saturating_sub(1))
    }

    /// The last number given to a commit.
    pub(super) fn numbered(&self) -> u64 {
        self.last
    }

    /// Registers a transaction starting now; its start number.
    pub(super) fn open(&mut self) -> u64 {
        let start = self.visible();
        *self.open.entry(start).or_default() += 1;
        start
    }

    /// Forgets a transaction that started at `start`.
    pub(super) fn close(&mut self, start: u64) {
        if let Some(count) = self.open.get_mut(&start) {
            *count -= 1;
            if *count == 0 {
                self.open.remove(&start);
            }
        }
    }

    /// The first key of `keys` that a commit numbered after the key's own number wrote (or is
    /// writing).
    pub(super) fn conflict<'k>(
        &self,
        keys: impl IntoIterator<Item = (&'k [u8], u64)>,
    ) -> Option<&'k [u8]> {
        keys.into_iter()
            .find(|(key, start)| self.last_write(key).is_some_and(|at| at > *start))
            .map(|(key, _)| key)
    }

    /// Whether a commit numbered after `start` wrote a key of table `table` for which
    /// `written` is true (or wrote the table as a whole).
    pub(super) fn conflict_in_table(
        &self,
        table: u64,
        start: u64,
        written: impl Fn(&[u8]) -> crate::error::Result<bool>,
    ) -> crate::error::Result<bool> {
        if self.tables.get(&table).is_some_and(|&at| at > start) {
            return Ok(true);
        }
        for (key, &at) in &self.written {
            if at > start && keys::table_of(key) == Some(table) && written(key)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The number of the last commit that wrote `key` (itself, or its table as a whole).
    fn last_write(&self, key: &[u8]) -> Option<u64> {
        let own = self.written.get(key).copied();
        let table = keys::table_of(key).and_then(|table| self.tables.get(&table).copied());
        own.max(table)
    }

    /// The number of the last commit that wrote `key`, when it is written (in every snapshot
    /// taken from now on).
    pub(super) fn written_at(&self, key: &[u8]) -> Option<u64> {
        let at = self.last_write(key)?;
        (!self.writing.contains(&at)).then_some(at)
    }

    /// Numbers a commit that passed the check and writes `keys`, and every key of `tables`
    /// (a commit too large to list them): from now on it clashes with every transaction that
    /// started before it. [`CommitLog::finished`] must follow.
    pub(super) fn writing(&mut self, keys: Vec<Vec<u8>>, tables: &[u64]) -> u64 {
        self.last += 1;
        let at = self.last;
        self.writing.insert(at);
        self.written.extend(keys.into_iter().map(|key| (key, at)));
        self.tables.extend(tables.iter().map(|&table| (table, at)));
        if self.written.len() > FORGET_AFTER {
            let oldest = self.open.keys().next().copied().unwrap_or(self.visible());
            self.written.retain(|_, written_at| *written_at > oldest);
            self.tables.retain(|_, written_at| *written_at > oldest);
        }
        at
    }

    /// The commit numbered `at` was written, or failed to be. A failed one keeps its keys
    /// marked: transactions that began before it may get 40001 they could have been spared,
    /// never a lost update.
    pub(super) fn finished(&mut self, at: u64) {
        self.writing.remove(&at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<Vec<u8>> {
        names.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    /// `names`, each to be checked against `start`.
    fn since(names: &[&'static str], start: u64) -> Vec<(&'static [u8], u64)> {
        names.iter().map(|n| (n.as_bytes(), start)).collect()
    }

    #[test]
    fn a_commit_being_written_is_after_every_snapshot_taken_meanwhile() {
        let mut log = CommitLog::default();
        let early = log.open();
        let first = log.writing(keys(&["a"]), &[]);
        let second = log.writing(keys(&["b"]), &[]);
        // Neither is written yet: a transaction starting now starts before both.
        let during = log.open();
        assert_eq!(during, early);
        assert!(log.conflict(since(&["a"], during)).is_some());
        // The second finishes first: still not visible while the first is being written.
        log.finished(second);
        assert_eq!(log.visible(), early);
        log.finished(first);
        assert_eq!(log.visible(), second);
        let after = log.open();
        assert!(log.conflict(since(&["a", "b"], after)).is_none());
        assert!(log.conflict(since(&["b"], early)).is_some());
    }

    #[test]
    fn a_commit_of_a_whole_table_clashes_with_every_key_of_that_table() {
        let mut log = CommitLog::default();
        let start = log.open();
        let row = crate::storage::keys::row(7, b"pk");
        let entry = crate::storage::keys::index_prefix(7, 1);
        let other = crate::storage::keys::row(8, b"pk");
        let at = log.writing(Vec::new(), &[7]);
        log.finished(at);
        let checked = [(row.as_slice(), start), (other.as_slice(), start)];
        assert_eq!(log.conflict(checked), Some(row.as_slice()));
        assert!(log.conflict([(entry.as_slice(), start)]).is_some());
        assert!(log.conflict([(other.as_slice(), start)]).is_none());
        assert_eq!(log.written_at(&row), Some(at));
        assert!(
            log.conflict([(row.as_slice(), at)]).is_none(),
            "not after it"
        );

        // a statement too large to list its keys checks the log's keys against its own
        let later = log.open();
        let taken = log.writing(vec![crate::storage::keys::row(8, b"a")], &[]);
        log.finished(taken);
        let mine = |key: &[u8]| Ok(key.ends_with(b"a"));
        assert!(log.conflict_in_table(8, later, mine).unwrap());
        assert!(!log.conflict_in_table(8, taken, mine).unwrap());
        assert!(!log.conflict_in_table(8, later, |_| Ok(false)).unwrap());
        assert!(log.conflict_in_table(7, start, |_| Ok(false)).unwrap());
    }

    #[test]
    fn keys_no_open_transaction_can_clash_with_are_forgotten() {
        let mut log = CommitLog::default();
        for n in 0..=FORGET_AFTER {
            let at = log.writing(vec![n.to_be_bytes().to_vec()], &[]);
            log.finished(at);
        }
        assert!(log.written.len() <= 1);
        let start = log.open();
        let at = log.writing(keys(&["x"]), &[]);
        log.finished(at);
        assert!(log.conflict(since(&["x"], start)).is_some());
        log.close(start);
        assert!(log.open.is_empty());
    }
}
