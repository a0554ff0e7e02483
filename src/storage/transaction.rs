//! [`Transaction`]: snapshots to read from (one for the transaction, or one per statement),
//! writes kept until COMMIT, rows locked against other writers as statements write them, and
//! write-write conflicts found at COMMIT (`docs/transactions.md`).
//!
//! RocksDB's own `OptimisticTransactionDB` would do this too, but it is another database type
//! (every read, backup and write path would change with it), and it cannot say which rows of a
//! table a block added for the observers of writes; the overlay here is a sorted map of the
//! block's writes merged into snapshot reads, and the commit log (`commit_log.rs`) finds the
//! conflicts.

use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::storage::bulk_insert::read_back_keys;
use crate::storage::row_locks::Holder;
use crate::storage::segment::Segment;
use crate::storage::store::{Publish, Store, TableChange, WholeTable};
use crate::storage::{RowIdReservation, StoredTable, WriteSet, WrittenBatch};
use rocksdb::{DB, DBRawIterator, ReadOptions, Snapshot};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The number of the next transaction to begin, for row locks.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// How a transaction's statements see the commits of others (`docs/transactions.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Each statement reads a snapshot taken as it starts; a row that another open
    /// transaction wrote is waited for, and then written from its newest version.
    ReadCommitted,
    /// Every statement reads the snapshot the transaction began with; a row that another
    /// transaction committed after it began gets 40001 (snapshot isolation).
    #[default]
    RepeatableRead,
}

impl Isolation {
    /// The level PostgreSQL names `level` (`read committed`, …) runs as: READ UNCOMMITTED as
    /// READ COMMITTED, as in PostgreSQL; SERIALIZABLE as REPEATABLE READ (snapshot isolation,
    /// which allows write skew). `None` for a name that is no level.
    pub fn named(level: &str) -> Option<Isolation> {
        match level.trim().to_ascii_lowercase().as_str() {
            "read committed" | "read uncommitted" => Some(Isolation::ReadCommitted),
            "repeatable read" | "serializable" => Some(Isolation::RepeatableRead),
            _ => None,
        }
    }

    /// PostgreSQL's name of the level.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read committed",
            Isolation::RepeatableRead => "repeatable read",
        }
    }
}

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
    /// Keys that no commit numbered after the key's number may have written (the snapshot the
    /// key was first written from): all but rows under fresh row ids.
    checked: BTreeMap<Vec<u8>, u64>,
    changes: Vec<Change>,
    reservations: Vec<RowIdReservation>,
    savepoints: Vec<Savepoint>,
    /// The tables written, by id: their definitions must still hold at COMMIT.
    tables: BTreeMap<u64, Arc<StoredTable>>,
    /// Writes of statements too large for memory, oldest first, each with the commit number
    /// its keys are checked from (see [`Segment`]); the block reads them under `writes`.
    segments: Vec<(Arc<Segment>, u64)>,
    /// While a statement writes (see [`Transaction::atomically`]): how to undo its writes.
    undo: Option<Undo>,
    /// Since [`Transaction::start_statement`]: how to undo the writes of the statement.
    statement: Option<Undo>,
}

/// What undoes the writes of one statement: each key's earlier state in the block (`None`: the
/// block had not written it), the keys it added to the checked ones, the changes before it.
#[derive(Default)]
struct Undo {
    writes: Vec<(Vec<u8>, Option<Write>)>,
    checked: Vec<Vec<u8>>,
    changes: usize,
    segments: usize,
}

/// A key's write in a block: the new value, or `None` for a deletion.
type Write = Option<Vec<u8>>;

/// Writes of a block, by key.
type KeyedWrites = Vec<(Vec<u8>, Write)>;

impl Pending {
    /// Its segments, oldest first.
    fn segments(&self) -> Vec<Arc<Segment>> {
        self.segments
            .iter()
            .map(|(segment, _)| segment.clone())
            .collect()
    }

    /// An undo that returns to the state now.
    fn undo_point(&self) -> Undo {
        Undo {
            changes: self.changes.len(),
            segments: self.segments.len(),
            ..Undo::default()
        }
    }

    /// Checks `key` at COMMIT against commits after `read_at` (or the earlier number it was
    /// first written from).
    fn check(&mut self, key: &[u8], read_at: u64) {
        if !self.checked.contains_key(key) {
            self.checked.insert(key.to_vec(), read_at);
        }
    }

    /// Records `key`'s state before a write, when a statement's undo is kept.
    fn remember(&mut self, key: &[u8], checked: bool) {
        let Some(undo) = self.undo.as_mut() else {
            return;
        };
        undo.writes
            .push((key.to_vec(), self.writes.get(key).cloned()));
        if checked && !self.checked.contains_key(key) {
            undo.checked.push(key.to_vec());
        }
    }
}

impl Undo {
    /// Puts `pending` back as it was before the writes this undoes.
    fn apply(self, pending: &mut Pending) {
        for (key, earlier) in self.writes.into_iter().rev() {
            match earlier {
                Some(value) => pending.writes.insert(key, value),
                None => pending.writes.remove(&key),
            };
        }
        for key in self.checked {
            pending.checked.remove(&key);
        }
        pending.changes.truncate(self.changes);
        pending.segments.truncate(self.segments);
    }

    /// Adds the writes `later` undoes, made after these.
    fn extend(&mut self, later: Undo) {
        self.writes.extend(later.writes);
        self.checked.extend(later.checked);
    }
}

struct Savepoint {
    name: String,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    checked: BTreeMap<Vec<u8>, u64>,
    changes: usize,
    segments: usize,
}

/// A transaction: reads see the snapshot it began with plus its own writes; COMMIT writes
/// everything in one synced write, or nothing with 40001 when a transaction that committed
/// after this one began wrote one of the same keys. Dropping it without COMMIT discards it.
pub struct Transaction {
    store: Arc<Store>,
    /// Its number for row locks.
    id: u64,
    isolation: Isolation,
    /// The commit number it began after (registered in the commit log until it ends).
    start: u64,
    /// The snapshot statements read, and the commit number it holds every commit up to.
    snapshot: Mutex<(Arc<OwnedSnapshot>, u64)>,
    /// Ends its hold on row locks; taken when it does.
    holder: Mutex<Option<Holder>>,
    /// Keys whose row lock it holds.
    locked: Mutex<HashSet<Vec<u8>>>,
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
    /// Begins a transaction on `store` at `isolation`.
    pub fn begin(store: &Arc<Store>, isolation: Isolation) -> Transaction {
        let (start, db, log) = store.open_transaction();
        let snapshot = Arc::new(OwnedSnapshot::new(db));
        drop(log);
        Transaction {
            store: store.clone(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            isolation,
            start,
            snapshot: Mutex::new((snapshot, start)),
            holder: Mutex::new(Some(Holder::new())),
            locked: Mutex::default(),
            pending: Mutex::new(Pending::default()),
        }
    }

    /// Its isolation level.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// A statement starts: under READ COMMITTED it reads a snapshot taken now.
    pub fn refresh(&self) {
        if self.isolation == Isolation::ReadCommitted {
            let (number, db, log) = self.store.visible_now();
            let snapshot = Arc::new(OwnedSnapshot::new(db));
            drop(log);
            *lock(&self.snapshot) = (snapshot, number);
        }
    }

    fn snapshot(&self) -> Arc<OwnedSnapshot> {
        lock(&self.snapshot).0.clone()
    }

    /// The commit number the keys written now are checked from.
    fn read_at(&self) -> u64 {
        match self.isolation {
            Isolation::ReadCommitted => lock(&self.snapshot).1,
            Isolation::RepeatableRead => self.start,
        }
    }

    /// The commit number a write of `key` now is checked from: under READ COMMITTED, a row
    /// locked before the statement's snapshot was taken is read at its newest version.
    fn read_at_for(&self, key: &[u8]) -> u64 {
        let read_at = self.read_at();
        if self.isolation == Isolation::ReadCommitted && lock(&self.locked).contains(key) {
            return self.store.checked_from(key, read_at);
        }
        read_at
    }

    /// Starts keeping how to undo the writes of the statement about to run (see
    /// [`Transaction::undo_statement`]).
    pub fn start_statement(&self) {
        let mut pending = self.lock();
        pending.statement = Some(pending.undo_point());
    }

    /// Undoes the writes of the statement started last (its row locks are kept).
    pub fn undo_statement(&self) {
        let mut pending = self.lock();
        if let Some(undo) = pending.statement.take() {
            undo.apply(&mut pending);
        }
    }

    /// The statement started last succeeded: its writes stay, and are no longer kept to undo.
    pub fn end_statement(&self) {
        self.lock().statement = None;
    }

    /// Takes the row locks of the rows the statement started last wrote first in the
    /// transaction (the keys its undo unchecks). READ COMMITTED waits for
    /// transactions that hold them to end (40P01 when waiting would deadlock), and answers
    /// `false` when a commit after the statement's snapshot wrote one of the rows it had to
    /// lock: the statement must be undone and run again on a newer snapshot. REPEATABLE READ
    /// is optimistic: it takes the rows no one holds, so READ COMMITTED writers wait for it,
    /// and waits for none (its clashes are found by the writes and at COMMIT).
    pub async fn settle(&self) -> Result<bool> {
        let unlocked: Vec<Vec<u8>> = {
            let pending = self.lock();
            let Some(statement) = pending.statement.as_ref() else {
                return Ok(true);
            };
            let locked = lock(&self.locked);
            (statement.checked.iter())
                .filter(|key| pending.checked.contains_key(*key) && !locked.contains(*key))
                .cloned()
                .collect()
        };
        if unlocked.is_empty() {
            return Ok(true);
        }
        let Some(ended) = lock(&self.holder).as_ref().map(Holder::ended) else {
            return Err(Error::Internal("the transaction has ended".into()));
        };
        let locks = self.store.row_locks();
        if self.isolation == Isolation::RepeatableRead {
            // optimistic: rows held by others are not waited for (COMMIT finds the clash)
            for key in unlocked {
                if locks.try_acquire(self.id, &ended, &key) {
                    lock(&self.locked).insert(key);
                }
            }
            return Ok(true);
        }
        for key in &unlocked {
            locks.acquire(self.id, &ended, key).await?;
            lock(&self.locked).insert(key.clone());
        }
        Ok(self
            .store
            .written_since(&unlocked, self.read_at())
            .is_none())
    }

    /// The store it reads and commits to.
    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    /// The value of `key` as this transaction sees it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let segments = {
            let pending = self.lock();
            if let Some(value) = pending.writes.get(key) {
                return Ok(value.clone());
            }
            pending.segments()
        };
        for segment in segments.iter().rev() {
            if let Some(value) = segment.get(key)? {
                return Ok(Some(value));
            }
        }
        Ok(self.snapshot().snapshot.get(key)?)
    }

    /// The values of `keys` as this transaction sees them, in order.
    pub fn multi_get<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<Vec<u8>>>> {
        let (mut values, segments): (Vec<Option<Option<Vec<u8>>>>, _) = {
            let pending = self.lock();
            let values = keys
                .iter()
                .map(|key| pending.writes.get(key.as_ref()).cloned())
                .collect();
            (values, pending.segments())
        };
        for segment in segments.iter().rev() {
            for (key, value) in keys.iter().zip(values.iter_mut()) {
                if value.is_none()
                    && let Some(found) = segment.get(key.as_ref())?
                {
                    *value = Some(Some(found));
                }
            }
        }
        let unwritten: Vec<&[u8]> = keys
            .iter()
            .zip(&values)
            .filter(|(_, own)| own.is_none())
            .map(|(key, _)| key.as_ref())
            .collect();
        let snapshot = self.snapshot();
        let mut stored = snapshot.snapshot.multi_get(unwritten).into_iter();
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
        let (own, segments): (KeyedWrites, _) = {
            let pending = self.lock();
            let own = (pending.writes.range(from.to_vec()..to.to_vec()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (own, pending.segments())
        };
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(to.to_vec());
        options.fill_cache(false);
        let snapshot = self.snapshot();
        options.set_snapshot(&snapshot.snapshot);
        let db = &snapshot._db;
        let mut iter = db.raw_iterator_opt(options);
        iter.seek(from);
        if !segments.is_empty() {
            return scan_layered(own, &segments, iter, from, to, &mut visit);
        }
        let mut own = own.into_iter().peekable();
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
        let read_at = self.read_at_for(&key);
        let mut pending = self.lock();
        pending.remember(&key, !fresh);
        if !fresh {
            pending.check(&key, read_at);
        }
        pending.writes.insert(key, Some(value));
    }

    /// Deletes `key` at COMMIT.
    pub fn delete(&self, key: Vec<u8>) {
        let read_at = self.read_at_for(&key);
        let mut pending = self.lock();
        pending.remember(&key, true);
        pending.check(&key, read_at);
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
            pending.undo = Some(pending.undo_point());
        }
        let mut result = write();
        let mut pending = self.lock();
        let Some(undo) = pending.undo.take() else {
            return result;
        };
        // A row this statement wrote first in the block, and that a transaction committed
        // after the block's snapshot: COMMIT would fail, so the statement fails now (as an
        // UPDATE under PostgreSQL's REPEATABLE READ does), sparing the block's remaining work.
        // (Under READ COMMITTED, `settle` runs such a statement again instead.)
        if result.is_ok() && self.isolation == Isolation::RepeatableRead {
            let keys = undo.checked.iter().map(|key| (key.as_slice(), self.start));
            if let Err(clash) = self.store.check_unwritten(keys) {
                result = Err(clash);
            }
        }
        match (&result, pending.statement.as_mut()) {
            (Err(_), _) => undo.apply(&mut pending),
            (Ok(_), Some(statement)) => statement.extend(undo),
            (Ok(_), None) => {}
        }
        result
    }

    /// Whether the transaction has written nothing.
    pub fn is_empty(&self) -> bool {
        let pending = self.lock();
        pending.writes.is_empty() && pending.segments.is_empty()
    }

    /// Makes `segment` part of the block's writes (the statement that wrote it succeeded).
    pub(super) fn attach(&self, segment: Segment) {
        let read_at = self.read_at();
        self.lock().segments.push((Arc::new(segment), read_at));
    }

    /// `SAVEPOINT name`: what `rollback_to(name)` returns to.
    pub fn savepoint(&self, name: &str) {
        let mut pending = self.lock();
        let savepoint = Savepoint {
            name: name.to_string(),
            writes: pending.writes.clone(),
            checked: pending.checked.clone(),
            changes: pending.changes.len(),
            segments: pending.segments.len(),
        };
        pending.savepoints.push(savepoint);
    }

    /// `ROLLBACK TO SAVEPOINT name`: undoes the writes made since, keeps the savepoint.
    pub fn rollback_to(&self, name: &str) -> Result<()> {
        let mut pending = self.lock();
        let at = savepoint_position(&pending, name)?;
        pending.savepoints.truncate(at + 1);
        let saved = &pending.savepoints[at];
        let (writes, checked, changes, segments) = (
            saved.writes.clone(),
            saved.checked.clone(),
            saved.changes,
            saved.segments,
        );
        pending.writes = writes;
        pending.checked = checked;
        pending.changes.truncate(changes);
        pending.segments.truncate(segments);
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
        if pending.writes.is_empty() && pending.segments.is_empty() {
            return Ok(());
        }
        let publish = publication(&pending)?;
        let checked: Vec<(Vec<u8>, u64)> = pending.checked.into_iter().collect();
        let guards = (pending.tables.values())
            .map(|table| table.writing())
            .collect::<Result<Vec<_>>>()?;
        let written =
            |segment: &Segment, key: &[u8]| -> Result<bool> { Ok(segment.get(key)?.is_some()) };
        let checks: Vec<_> = (pending.segments.iter())
            .filter(|(segment, _)| segment.keyed)
            .map(|(segment, read_at)| {
                let segment = segment.clone();
                (segment.table.id, *read_at, move |key: &[u8]| {
                    written(&segment, key)
                })
            })
            .collect();
        let whole: Vec<WholeTable<'_>> = (checks.iter())
            .map(|(table, start, written)| WholeTable {
                table: *table,
                start: *start,
                written,
            })
            .collect();
        let committed = self.store.publish_checked(publish, checked, &whole);
        self.release_locks();
        committed?;
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
        for (segment, _) in &pending.segments {
            if self.store.watched(&segment.table) {
                read_back_keys(&self.store, &segment.table, |visit| {
                    segment.for_each_row_key(visit)
                })?;
            }
        }
        Ok(())
    }

    /// Frees the rows it locked: the transaction has ended (committed or rolled back).
    pub fn release_locks(&self) {
        let Some(holder) = lock(&self.holder).take() else {
            return;
        };
        let locked = std::mem::take(&mut *lock(&self.locked));
        self.store.row_locks().release(self.id, locked, holder);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        lock(&self.pending)
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.release_locks();
        self.store.close_transaction(self.start);
    }
}

/// [`Transaction::scan`] of a block with segments: its writes (`own`) over its segments,
/// newest first, over the snapshot (`stored`), merged in key order.
fn scan_layered<'a>(
    own: KeyedWrites,
    segments: &'a [Arc<Segment>],
    mut stored: DBRawIterator<'a>,
    from: &[u8],
    to: &[u8],
    visit: &mut impl FnMut(&[u8], &[u8]) -> Result<bool>,
) -> Result<()> {
    let mut own = own.into_iter().peekable();
    let mut layers: Vec<DBRawIterator<'a>> = (segments.iter().rev())
        .map(|segment| {
            let mut layer = segment.raw_iterator();
            layer.seek(from);
            layer
        })
        .collect();
    loop {
        let mut next: Option<Vec<u8>> = own.peek().map(|(key, _)| key.clone());
        for layer in layers.iter().chain(std::iter::once(&stored)) {
            if let Some(key) = layer.key().filter(|key| *key < to)
                && next.as_deref().is_none_or(|next| key < next)
            {
                next = Some(key.to_vec());
            }
        }
        let Some(key) = next else {
            break;
        };
        // the value of the highest layer that has the key (`Some(None)`: deleted there)
        let mut value: Option<Option<Vec<u8>>> = None;
        if own.peek().is_some_and(|(own_key, _)| *own_key == key) {
            value = own.next().map(|(_, value)| value);
        }
        for layer in layers.iter_mut().chain(std::iter::once(&mut stored)) {
            if layer.key() == Some(key.as_slice()) {
                if value.is_none() {
                    value = Some(layer.value().map(<[u8]>::to_vec));
                }
                layer.next();
            }
        }
        if let Some(Some(value)) = value
            && !visit(&key, &value)?
        {
            return Ok(());
        }
    }
    for layer in &layers {
        layer.status()?;
    }
    Ok(stored.status()?)
}

/// How a block's writes are published: one write batch, or (when it has segments) one
/// ingestion of the segments' files, oldest first, then a file of its other writes, which
/// win over the segments' (an UPDATE or DELETE of a row a segment holds).
fn publication(pending: &Pending) -> Result<Publish> {
    let Some((last, _)) = pending.segments.last() else {
        let mut write = WriteSet::default();
        for (key, value) in &pending.writes {
            match value {
                Some(value) => write.put(key, value),
                None => write.delete(key),
            }
        }
        return Ok(Publish::Write(write));
    };
    let mut files = Vec::new();
    for (segment, _) in &pending.segments {
        segment.write_files(&mut files)?;
    }
    if !pending.writes.is_empty() {
        last.write_entries(&pending.writes, &mut files)?;
    }
    Ok(Publish::Ingest(files))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn savepoint_position(pending: &Pending, name: &str) -> Result<usize> {
    pending
        .savepoints
        .iter()
        .rposition(|s| s.name == name)
        .ok_or_else(|| Error::UndefinedSavepoint(name.to_string()))
}
