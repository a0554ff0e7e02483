//! [`Transaction`]: one snapshot to read from, writes kept until COMMIT, and write-write
//! conflicts found at COMMIT — snapshot isolation, first committer wins (`docs/transactions.md`).
//!
//! RocksDB's own `OptimisticTransactionDB` would do this too, but it is another database type
//! (every read, backup and write path would change with it), and it cannot say which rows of a
//! table a block added for the observers of writes; the overlay here is a sorted map of the
//! block's writes merged into snapshot reads, and the commit log (`commit_log.rs`) finds the
//! conflicts.

use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::storage::store::{Store, TableChange};
use crate::storage::{RowIdReservation, StoredTable, WriteSet, WrittenBatch};
use rocksdb::{DB, ReadOptions, Snapshot};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// A RocksDB snapshot that keeps its database open.
struct OwnedSnapshot {
    // Declared before `db`, so dropped before it.
    snapshot: Snapshot<'static>,
    _db: Arc<DB>,
}

impl OwnedSnapshot {
    fn new(db: Arc<DB>) -> OwnedSnapshot {
        let snapshot = db.snapshot();
        // SAFETY: the snapshot borrows the database that `_db` keeps alive, and is dropped
        // before it (field order); the `DB` never moves, being behind an `Arc`.
        let snapshot = unsafe { std::mem::transmute::<Snapshot<'_>, Snapshot<'static>>(snapshot) };
        OwnedSnapshot { snapshot, _db: db }
    }
}

/// One row change a transaction made, told to the store's observers once it commits.
pub enum Change {
    /// Rows written (inserted, or the new versions of updated rows).
    Written(TableDef, WrittenBatch),
    /// Rows removed, by row key (deleted, or the old versions of updated rows).
    Removed(TableDef, Vec<Vec<u8>>),
}

/// What a transaction has written but not committed.
#[derive(Default)]
struct Pending {
    /// Full keys → new value, `None` for a deletion.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Keys that no commit after the start may have written: all but rows under fresh row ids.
    checked: BTreeSet<Vec<u8>>,
    changes: Vec<Change>,
    reservations: Vec<RowIdReservation>,
    savepoints: Vec<Savepoint>,
    /// The tables written, by id: their definitions must still hold at COMMIT.
    tables: BTreeMap<u64, Arc<StoredTable>>,
    /// While a statement writes (see [`Transaction::atomically`]): how to undo its writes.
    undo: Option<Undo>,
}

/// What undoes the writes of one statement: each key's earlier state in the block (`None`: the
/// block had not written it), the keys it added to the checked ones, the changes before it.
#[derive(Default)]
struct Undo {
    writes: Vec<(Vec<u8>, Option<Write>)>,
    checked: Vec<Vec<u8>>,
    changes: usize,
}

/// A key's write in a block: the new value, or `None` for a deletion.
type Write = Option<Vec<u8>>;

impl Pending {
    /// Records `key`'s state before a write, when a statement's undo is kept.
    fn remember(&mut self, key: &[u8], checked: bool) {
        let Some(undo) = self.undo.as_mut() else {
            return;
        };
        undo.writes
            .push((key.to_vec(), self.writes.get(key).cloned()));
        if checked && !self.checked.contains(key) {
            undo.checked.push(key.to_vec());
        }
    }
}

struct Savepoint {
    name: String,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    checked: BTreeSet<Vec<u8>>,
    changes: usize,
}

/// A transaction: reads see the snapshot it began with plus its own writes; COMMIT writes
/// everything in one synced write, or nothing with 40001 when a transaction that committed
/// after this one began wrote one of the same keys. Dropping it without COMMIT discards it.
pub struct Transaction {
    store: Arc<Store>,
    start: u64,
    snapshot: OwnedSnapshot,
    pending: Mutex<Pending>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("start", &self.start)
            .finish()
    }
}

impl Transaction {
    /// Begins a transaction on `store`.
    pub fn begin(store: &Arc<Store>) -> Transaction {
        let (start, db, log) = store.open_transaction();
        let snapshot = OwnedSnapshot::new(db);
        drop(log);
        Transaction {
            store: store.clone(),
            start,
            snapshot,
            pending: Mutex::new(Pending::default()),
        }
    }

    /// The store it reads and commits to.
    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    /// The value of `key` as this transaction sees it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(value) = self.lock().writes.get(key) {
            return Ok(value.clone());
        }
        Ok(self.snapshot.snapshot.get(key)?)
    }

    /// The values of `keys` as this transaction sees them, in order.
    pub fn multi_get<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut values: Vec<Option<Option<Vec<u8>>>> = {
            let pending = self.lock();
            keys.iter()
                .map(|key| pending.writes.get(key.as_ref()).cloned())
                .collect()
        };
        let unwritten: Vec<&[u8]> = keys
            .iter()
            .zip(&values)
            .filter(|(_, own)| own.is_none())
            .map(|(key, _)| key.as_ref())
            .collect();
        let mut stored = self.snapshot.snapshot.multi_get(unwritten).into_iter();
        for value in values.iter_mut().filter(|v| v.is_none()) {
            *value = Some(stored.next().transpose()?.flatten());
        }
        Ok(values.into_iter().map(Option::flatten).collect())
    }

    /// Calls `visit` with every key and value from `from` (included) to `to` (excluded) that
    /// this transaction sees, in key order, until it returns false.
    pub fn scan(
        &self,
        from: &[u8],
        to: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let own: Vec<(Vec<u8>, Option<Vec<u8>>)> = self
            .lock()
            .writes
            .range(from.to_vec()..to.to_vec())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut own = own.into_iter().peekable();
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(to.to_vec());
        options.fill_cache(false);
        options.set_snapshot(&self.snapshot.snapshot);
        let db = &self.snapshot._db;
        let mut iter = db.raw_iterator_opt(options);
        iter.seek(from);
        loop {
            let stored = iter.key().zip(iter.value());
            let take_own = match (stored, own.peek()) {
                (None, None) => break,
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some((key, _)), Some((own_key, _))) => own_key.as_slice() <= key,
            };
            if take_own {
                let Some((key, value)) = own.next() else {
                    break;
                };
                if iter.key() == Some(key.as_slice()) {
                    iter.next(); // written over by this transaction
                }
                if let Some(value) = value
                    && !visit(&key, &value)?
                {
                    return Ok(());
                }
            } else if let Some((key, value)) = stored {
                if !visit(key, value)? {
                    return Ok(());
                }
                iter.next();
            }
        }
        Ok(iter.status()?)
    }

    /// Stores `value` under `key` at COMMIT. `fresh` keys (rows under row ids reserved by this
    /// transaction) cannot clash with another transaction and are not checked.
    pub fn put(&self, key: Vec<u8>, value: Vec<u8>, fresh: bool) {
        let mut pending = self.lock();
        pending.remember(&key, !fresh);
        if !fresh {
            pending.checked.insert(key.clone());
        }
        pending.writes.insert(key, Some(value));
    }

    /// Deletes `key` at COMMIT.
    pub fn delete(&self, key: Vec<u8>) {
        let mut pending = self.lock();
        pending.remember(&key, true);
        pending.checked.insert(key.clone());
        pending.writes.insert(key, None);
    }

    /// Records that rows of `table` were written as its definition says: COMMIT fails with
    /// 40001 when another definition replaced it meanwhile.
    pub fn uses(&self, table: &Arc<StoredTable>) {
        self.lock()
            .tables
            .entry(table.def.id)
            .or_insert_with(|| table.clone());
    }

    /// Tells the store's observers about `change` once the transaction commits.
    pub fn record(&self, change: Change) {
        self.lock().changes.push(change);
    }

    /// Reserves `count` row ids of `table` until the transaction ends; the first.
    pub fn reserve_row_ids(&self, table: &Arc<StoredTable>, count: u64) -> u64 {
        let reservation = table.reserve_row_ids(count);
        let first = reservation.first();
        self.lock().reservations.push(reservation);
        first
    }

    /// Runs the writes of one statement: when `write` fails, the block is as it was before
    /// (a statement inside a block is atomic too).
    pub fn atomically<T>(&self, write: impl FnOnce() -> Result<T>) -> Result<T> {
        {
            let mut pending = self.lock();
            let changes = pending.changes.len();
            pending.undo = Some(Undo {
                changes,
                ..Undo::default()
            });
        }
        let mut result = write();
        let mut pending = self.lock();
        let undo = pending.undo.take();
        // A row this statement wrote first in the block, and that a transaction committed
        // after the block's snapshot: COMMIT would fail, so the statement fails now (as an
        // UPDATE under PostgreSQL's REPEATABLE READ does), sparing the block's remaining work.
        if let (Ok(_), Some(undo)) = (&result, &undo)
            && let Err(clash) = self.store.check_unwritten(&undo.checked, self.start)
        {
            result = Err(clash);
        }
        if let (Err(_), Some(undo)) = (&result, undo) {
            for (key, earlier) in undo.writes.into_iter().rev() {
                match earlier {
                    Some(value) => pending.writes.insert(key, value),
                    None => pending.writes.remove(&key),
                };
            }
            for key in undo.checked {
                pending.checked.remove(&key);
            }
            pending.changes.truncate(undo.changes);
        }
        result
    }

    /// Whether the transaction has written nothing.
    pub fn is_empty(&self) -> bool {
        self.lock().writes.is_empty()
    }

    /// `SAVEPOINT name`: what `rollback_to(name)` returns to.
    pub fn savepoint(&self, name: &str) {
        let mut pending = self.lock();
        let savepoint = Savepoint {
            name: name.to_string(),
            writes: pending.writes.clone(),
            checked: pending.checked.clone(),
            changes: pending.changes.len(),
        };
        pending.savepoints.push(savepoint);
    }

    /// `ROLLBACK TO SAVEPOINT name`: undoes the writes made since, keeps the savepoint.
    pub fn rollback_to(&self, name: &str) -> Result<()> {
        let mut pending = self.lock();
        let at = savepoint_position(&pending, name)?;
        pending.savepoints.truncate(at + 1);
        let saved = &pending.savepoints[at];
        let (writes, checked, changes) =
            (saved.writes.clone(), saved.checked.clone(), saved.changes);
        pending.writes = writes;
        pending.checked = checked;
        pending.changes.truncate(changes);
        Ok(())
    }

    /// `RELEASE SAVEPOINT name`: forgets it and the savepoints after it, keeping the writes.
    pub fn release(&self, name: &str) -> Result<()> {
        let mut pending = self.lock();
        let at = savepoint_position(&pending, name)?;
        pending.savepoints.truncate(at);
        Ok(())
    }

    /// Writes everything in one synced write; 40001 (and nothing written) when a transaction
    /// that committed after this one began wrote one of the same keys.
    pub fn commit(&self) -> Result<()> {
        let pending = std::mem::take(&mut *self.lock());
        if pending.writes.is_empty() {
            return Ok(());
        }
        let mut write = WriteSet::default();
        for (key, value) in &pending.writes {
            match value {
                Some(value) => write.put(key, value),
                None => write.delete(key),
            }
        }
        let checked: Vec<Vec<u8>> = pending.checked.into_iter().collect();
        let guards = (pending.tables.values())
            .map(|table| table.writing())
            .collect::<Result<Vec<_>>>()?;
        self.store.commit_checked(write, checked, self.start)?;
        drop(guards);
        drop(pending.reservations);
        for change in &pending.changes {
            match change {
                Change::Written(table, batch) => self
                    .store
                    .rows_changed(table, TableChange::Written(std::slice::from_ref(batch))),
                Change::Removed(table, keys) => {
                    self.store.rows_changed(table, TableChange::Removed(keys))
                }
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.store.close_transaction(self.start);
    }
}

fn savepoint_position(pending: &Pending, name: &str) -> Result<usize> {
    pending
        .savepoints
        .iter()
        .rposition(|s| s.name == name)
        .ok_or_else(|| Error::UndefinedSavepoint(name.to_string()))
}
