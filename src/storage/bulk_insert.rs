//! Inserting the rows of a statement that arrive batch by batch (COPY, INSERT … SELECT, a
//! caller's batches, one INSERT's rows) within a memory budget: rows are encoded as they come
//! and, past the budget, kept out of memory until the statement ends. Outside a transaction
//! block they are staged in sorted files that the commit publishes all at once ([`Staging`]);
//! inside one they go to a [`Segment`] of the block's writes, which the block reads and its
//! COMMIT publishes. A table with a primary key or unique index has its keys checked as they
//! come: against what the statement (or block) sees, and against the statement's own earlier
//! rows ([`SeenKeys`], which moves them out of memory past their share of the budget).

use crate::blocking::Stopped;
use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::storage::row_blocks::{BLOCK_ROWS, BlockBuilder};
use crate::storage::row_codec::{ColumnValues, encode_row};
use crate::storage::seen_keys::SeenKeys;
use crate::storage::segment::Segment;
use crate::storage::staging::Staging;
use crate::storage::writer::{
    check_absent, check_not_null, conform, duplicate, encode_primary_keys, entries_of_row,
};
use crate::storage::{
    Change, RowIdReservation, RowKeys, Store, StoredTable, TableChange, Transaction, WrittenBatch,
    index_entries, keys, reader,
};
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use std::sync::Arc;

/// Takes each batch of rows of a statement, in order.
pub type Rows<'a> = dyn FnMut(RecordBatch) -> Result<()> + 'a;

/// The share of the budget that the statement's keys may hold in memory (one part in this).
const KEYS_SHARE: usize = 4;

/// Bytes of bookkeeping counted for each write held in memory besides its key and value.
const ENTRY_OVERHEAD: usize = 64;

/// Row keys read back at a time for the observers of a large statement.
const READ_BACK_ROWS: usize = 8192;

/// Blocks read back at a time (each holds up to `row_blocks::BLOCK_ROWS` rows).
const READ_BACK_BLOCKS: usize = 2;

/// Inserts every batch that `fill` hands over into `table` as one atomic write and returns
/// the number of rows: durable when it returns, or inside a transaction block (`txn`) part of
/// the block's writes (undone if it fails). `budget` bytes bound what is held in memory.
/// Stops with 57014 when `stopped` is set between two batches or before the end: nothing is
/// written then.
pub fn insert_from(
    store: &Store,
    table: &Arc<StoredTable>,
    txn: Option<&Transaction>,
    budget: usize,
    stopped: &Stopped,
    fill: impl FnOnce(&mut Rows<'_>) -> Result<()>,
) -> Result<u64> {
    match txn {
        Some(block) => block.atomically(|| insert(store, table, txn, budget, stopped, fill)),
        None => insert(store, table, None, budget, stopped, fill),
    }
}

fn insert(
    store: &Store,
    table: &Arc<StoredTable>,
    txn: Option<&Transaction>,
    budget: usize,
    stopped: &Stopped,
    fill: impl FnOnce(&mut Rows<'_>) -> Result<()>,
) -> Result<u64> {
    let def = &table.def;
    let _writing = table.writing()?;
    let keyed = def.has_primary_key() || def.indexes.iter().any(|i| i.unique);
    // Outside a block, rows with a primary key (or a unique index) are checked for
    // duplicates, and that check must see every earlier write to the table: writers of such
    // a table take turns.
    let alone = keyed && txn.is_none();
    let _turn = alone.then(|| {
        table
            .write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    });
    let start = alone.then(|| store.commit_start());
    let destination = match txn {
        Some(txn) => {
            txn.uses(table);
            Destination::Block(BlockWrites {
                store,
                table: def,
                txn,
                keyed,
                budget,
                buffered: Vec::new(),
                bytes: 0,
                segment: None,
            })
        }
        None => Destination::Statement {
            staging: Staging::new(store, budget),
            reservations: Vec::new(),
        },
    };
    let mut staged = StagedRows {
        store,
        table,
        destination,
        seen_rows: def
            .has_primary_key()
            .then(|| SeenKeys::new(store, budget / KEYS_SHARE / 2)),
        seen_unique: (def.indexes.iter().any(|i| i.unique))
            .then(|| SeenKeys::new(store, budget / KEYS_SHARE / 2)),
        stale: Vec::new(),
        written: Vec::new(),
        rows: 0,
        key: keys::table_prefix(def.id),
        encoded: Vec::with_capacity(256),
    };
    fill(&mut |batch| {
        stopped.check()?;
        staged.push(&batch)
    })?;
    stopped.check()?;
    staged.finish(start.as_ref().map(|start| start.number()))
}

/// The rows of a statement, as they are encoded.
struct StagedRows<'a> {
    store: &'a Store,
    table: &'a Arc<StoredTable>,
    destination: Destination<'a>,
    /// The primary keys written so far (tables with one).
    seen_rows: Option<SeenKeys<'a>>,
    /// The unique-index entries written so far (tables with such an index). Apart from the
    /// rows' keys, so that each set's keys arriving in order skip its scratch lookups.
    seen_unique: Option<SeenKeys<'a>>,
    /// Index entries of expired rows that rows of the statement replace, to remove (inside a
    /// block; outside, they are staged).
    stale: Vec<Vec<u8>>,
    /// The rows, for the observers, while none is out of memory.
    written: Vec<WrittenBatch>,
    rows: u64,
    /// The table prefix, then the key of the row being encoded.
    key: Vec<u8>,
    encoded: Vec<u8>,
}

/// Where a statement's rows go.
enum Destination<'a> {
    /// Outside a block: staged, published when the statement ends.
    Statement {
        staging: Staging<'a>,
        /// Held until the commit: readers of "rows since row id n" wait for these.
        reservations: Vec<RowIdReservation>,
    },
    /// Inside a block: its writes when the statement ends.
    Block(BlockWrites<'a>),
}

impl Destination<'_> {
    /// Writes `value` under `key` (`fresh`: see [`Transaction::put`]).
    fn put(&mut self, key: &[u8], value: &[u8], fresh: bool) -> Result<()> {
        match self {
            Destination::Statement { staging, .. } => staging.put(key, value),
            Destination::Block(writes) => writes.put(key, value, fresh),
        }
    }
}

/// A statement's writes inside a transaction block: in memory while they fit the budget,
/// then in a [`Segment`].
struct BlockWrites<'a> {
    store: &'a Store,
    table: &'a TableDef,
    txn: &'a Transaction,
    /// Whether the table has a primary key or unique index.
    keyed: bool,
    budget: usize,
    /// Key, value, and whether the key is fresh (see [`Transaction::put`]).
    buffered: Vec<(Vec<u8>, Vec<u8>, bool)>,
    bytes: usize,
    segment: Option<Segment>,
}

impl BlockWrites<'_> {
    fn put(&mut self, key: &[u8], value: &[u8], fresh: bool) -> Result<()> {
        self.bytes += key.len() + value.len() + ENTRY_OVERHEAD;
        self.buffered.push((key.to_vec(), value.to_vec(), fresh));
        if self.bytes >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// Moves the buffered writes to the segment.
    fn spill(&mut self) -> Result<()> {
        let segment = match self.segment.take() {
            Some(segment) => segment,
            None => Segment::open(self.store, self.table, self.keyed)?,
        };
        let entries = self.buffered.drain(..).map(|(key, value, _)| (key, value));
        segment.put_all(entries)?;
        self.segment = Some(segment);
        self.bytes = 0;
        Ok(())
    }
}

/// A unique-index entry of a batch, checked once the batch's rows are encoded.
struct UniqueEntry {
    key: Vec<u8>,
    index: usize,
    row: usize,
}

impl StagedRows<'_> {
    fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let def = &self.table.def;
        let columns = conform(def, batch, self.rows)?;
        check_not_null(def, &columns, self.rows)?;
        let values = columns
            .iter()
            .zip(&def.columns)
            .map(|(array, column)| ColumnValues::new(column.column_type, array))
            .collect::<Result<Vec<_>>>()?;
        let row_keys = self.row_keys(&columns, batch.num_rows())?;
        if def.is_blocks() {
            self.put_blocks(&values, batch.num_rows(), &row_keys)?;
        } else {
            self.put_rows(&values, batch.num_rows(), &row_keys, &columns)?;
        }
        drop(values);
        if self.out_of_memory() {
            self.written.clear();
        } else {
            self.written.push(WrittenBatch {
                columns,
                keys: row_keys,
            });
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Writes a batch's rows as blocks under the row ids reserved for them.
    fn put_blocks(
        &mut self,
        values: &[ColumnValues],
        rows: usize,
        row_keys: &RowKeys,
    ) -> Result<()> {
        let RowKeys::RowIds { first } = row_keys else {
            return Err(Error::Internal(
                "append-only rows keyed by primary key".into(),
            ));
        };
        let mut block = BlockBuilder::new(&self.table.def);
        let mut block_first = *first;
        for row in 0..rows {
            block.push(values, row)?;
            if block.rows() == BLOCK_ROWS || row + 1 == rows {
                let key = keys::row(self.table.def.id, &keys::row_id(block_first));
                self.destination.put(&key, &block.finish(), true)?;
                block_first = first + row as u64 + 1;
            }
        }
        Ok(())
    }

    /// Writes a batch's rows, one entry each, with their index entries.
    fn put_rows(
        &mut self,
        values: &[ColumnValues],
        rows: usize,
        row_keys: &RowKeys,
        columns: &[ArrayRef],
    ) -> Result<()> {
        let def = &self.table.def;
        let fresh = !def.has_primary_key();
        let prefix_len = keys::table_prefix(def.id).len();
        let mut unique = Vec::new();
        for row in 0..rows {
            self.key.truncate(prefix_len);
            match row_keys {
                RowKeys::Keys(primary_keys) => self.key.extend_from_slice(&primary_keys[row]),
                RowKeys::RowIds { first } => self
                    .key
                    .extend_from_slice(&keys::row_id(first + row as u64)),
            }
            self.encoded.clear();
            encode_row(values, row, &mut self.encoded);
            let destination = &mut self.destination;
            destination.put(&self.key, &self.encoded, fresh)?;
            let row_key = &self.key[prefix_len..];
            let entries = entries_of_row(def, values, row, row_key)?;
            for (index, entry) in entries.into_iter().enumerate() {
                destination.put(&entry.key, row_key, fresh && !entry.exclusive)?;
                if entry.exclusive {
                    unique.push(UniqueEntry {
                        key: entry.key,
                        index,
                        row,
                    });
                }
            }
        }
        self.check_unique(&unique, columns)
    }

    /// Whether some of the statement's writes went out of memory.
    fn out_of_memory(&self) -> bool {
        match &self.destination {
            Destination::Statement { staging, .. } => staging.staged(),
            Destination::Block(writes) => writes.segment.is_some(),
        }
    }

    /// The keys of a batch's rows: primary keys, checked against what the statement sees and
    /// its earlier rows (the index entries of expired rows they replace are removed), or new
    /// row ids.
    fn row_keys(&mut self, columns: &[ArrayRef], count: usize) -> Result<RowKeys> {
        let def = &self.table.def;
        let txn = match &self.destination {
            Destination::Block(writes) => Some(writes.txn),
            Destination::Statement { .. } => None,
        };
        let Some(seen) = self.seen_rows.as_mut() else {
            let first = match &mut self.destination {
                Destination::Block(writes) => writes.txn.reserve_row_ids(self.table, count as u64),
                Destination::Statement { reservations, .. } => {
                    let reservation = self.table.reserve_row_ids(count as u64);
                    let first = reservation.first();
                    reservations.push(reservation);
                    first
                }
            };
            return Ok(RowKeys::RowIds { first });
        };
        let primary_keys = encode_primary_keys(def, columns)?;
        let full: Vec<Vec<u8>> = (primary_keys.iter())
            .map(|key| keys::row(def.id, key))
            .collect();
        if let Some(row) = seen.insert_all(&full)? {
            return Err(duplicate(def, columns, row, self.rows));
        }
        for stale in check_absent(self.store, txn, def, columns, &primary_keys, self.rows)? {
            match &mut self.destination {
                Destination::Statement { staging, .. } => staging.delete(stale)?,
                Destination::Block(_) => self.stale.push(stale),
            }
        }
        Ok(RowKeys::Keys(primary_keys))
    }

    /// Checks a batch's unique-index entries against the statement's earlier rows and what
    /// it sees.
    fn check_unique(&mut self, unique: &[UniqueEntry], columns: &[ArrayRef]) -> Result<()> {
        let (Some(seen), false) = (self.seen_unique.as_mut(), unique.is_empty()) else {
            return Ok(());
        };
        let def = &self.table.def;
        let repeated = seen.insert_all(&unique.iter().map(|u| &u.key).collect::<Vec<_>>())?;
        if let Some(position) = repeated {
            return Err(unique_violation(def, &unique[position], columns, self.rows));
        }
        let txn = match &self.destination {
            Destination::Block(writes) => Some(writes.txn),
            Destination::Statement { .. } => None,
        };
        for entry in unique {
            if index_entries::unique_taken(self.store, txn, def, &entry.key)? {
                return Err(unique_violation(def, entry, columns, self.rows));
            }
        }
        Ok(())
    }

    /// Ends the statement: outside a block, publishes its rows (checked against commits
    /// numbered after `start` when the table is keyed) and tells the store's observers about
    /// them; inside one, makes them part of the block's writes.
    fn finish(self, start: Option<u64>) -> Result<u64> {
        if self.rows == 0 {
            return Ok(0);
        }
        let def = &self.table.def;
        let (staging, reservations) = match self.destination {
            Destination::Statement {
                staging,
                reservations,
            } => (staging, reservations),
            Destination::Block(writes) => {
                let txn = writes.txn;
                // a segment's rows are read back for the observers at COMMIT
                if !finish_in_block(writes, self.stale)? {
                    for batch in self.written {
                        txn.record(Change::Written(def.clone(), batch));
                    }
                }
                return Ok(self.rows);
            }
        };
        let staged = staging.staged();
        let seen: Vec<&SeenKeys> = (self.seen_rows.iter())
            .chain(self.seen_unique.iter())
            .collect();
        match start {
            Some(start) => staging.commit_checked(def.id, start, &seen)?,
            None => staging.commit()?,
        }
        let mut ranges: Vec<std::ops::Range<u64>> = Vec::new();
        for reservation in reservations {
            let ids = reservation.first()..reservation.first() + reservation.count();
            match ranges.last_mut() {
                Some(last) if last.end == ids.start => last.end = ids.end,
                _ => ranges.push(ids),
            }
        }
        if !staged {
            (self.store).rows_changed(def, TableChange::Written(&self.written));
            return Ok(self.rows);
        }
        if !self.store.watched(def) {
            return Ok(self.rows);
        }
        match &self.seen_rows {
            Some(seen) => {
                let prefix = keys::table_prefix(def.id);
                read_back_keys(self.store, def, |visit| {
                    seen.for_each_with_prefix(&prefix, |key| visit(&key[prefix.len()..]))
                })
            }
            _ => read_back_row_ids(self.store, def, ranges),
        }?;
        Ok(self.rows)
    }
}

/// Makes a statement's `writes` part of its block: removals of the index entries of the
/// expired rows it replaced (`stale`), then its rows, from memory or as a segment; whether
/// they went as a segment (whose rows COMMIT tells the observers about).
fn finish_in_block(mut writes: BlockWrites<'_>, stale: Vec<Vec<u8>>) -> Result<bool> {
    let txn = writes.txn;
    if writes.segment.is_none() {
        for key in stale {
            txn.delete(key);
        }
        for (key, value, fresh) in writes.buffered {
            txn.put(key, value, fresh);
        }
        return Ok(false);
    }
    writes.spill()?;
    let Some(segment) = writes.segment else {
        return Ok(false);
    };
    // the block's writes win over its segments': a stale entry the statement wrote again stays
    for key in stale {
        if segment.get(&key)?.is_none() {
            txn.delete(key);
        }
    }
    txn.attach(segment);
    Ok(true)
}

/// 23505 for the unique-index entry `entry` of row `entry.row` of a batch.
fn unique_violation(
    def: &TableDef,
    entry: &UniqueEntry,
    columns: &[ArrayRef],
    rows_before: u64,
) -> Error {
    let index = &def.indexes[entry.index];
    Error::UniqueViolation {
        constraint: index.name.clone(),
        key: index_entries::render(def, index, columns, entry.row),
        row: rows_before + entry.row as u64 + 1,
    }
}

/// Tells the observers of `def` about rows written out of memory, read back by the row keys
/// (without the table prefix) that `row_keys` visits.
pub(super) fn read_back_keys(
    store: &Store,
    def: &TableDef,
    row_keys: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
) -> Result<()> {
    let chunk = if def.is_blocks() {
        READ_BACK_BLOCKS
    } else {
        READ_BACK_ROWS
    };
    let mut pending = Vec::with_capacity(chunk);
    let tell = |row_keys: Vec<Vec<u8>>| -> Result<()> {
        let (found, rows) = reader::rows_by_key(store, def, row_keys)?;
        if def.has_primary_key() {
            let written = WrittenBatch {
                columns: rows.columns().to_vec(),
                keys: RowKeys::Keys(found),
            };
            store.rows_changed(def, TableChange::Written(std::slice::from_ref(&written)));
            return Ok(());
        }
        // row ids: observers of tables without primary key take runs of them
        let ids: Vec<u64> = (found.iter())
            .filter_map(|key| Some(u64::from_be_bytes(key.as_slice().try_into().ok()?)))
            .collect();
        tell_row_ids(store, def, &ids, &rows);
        Ok(())
    };
    row_keys(&mut |key| {
        pending.push(key.to_vec());
        if pending.len() == chunk {
            tell(std::mem::take(&mut pending))?;
        }
        Ok(())
    })?;
    if !pending.is_empty() {
        tell(pending)?;
    }
    Ok(())
}

/// Tells the observers of `def` about the staged rows of a table without primary key, read
/// back by their row ids.
fn read_back_row_ids(
    store: &Store,
    def: &TableDef,
    ranges: Vec<std::ops::Range<u64>>,
) -> Result<()> {
    let all: Vec<usize> = (0..def.columns.len()).collect();
    for ids in ranges {
        reader::scan_row_ids(store, def, ids, &all, |ids, batch| {
            tell_row_ids(store, def, &ids, &batch);
            Ok(())
        })?;
    }
    Ok(())
}

/// Tells the observers of `def` about `rows`, stored under the row ids `ids` (ascending), a
/// run of consecutive ids at a time.
fn tell_row_ids(store: &Store, def: &TableDef, ids: &[u64], rows: &RecordBatch) {
    for (start, length) in consecutive_runs(ids) {
        let run = rows.slice(start, length);
        let written = WrittenBatch {
            columns: run.columns().to_vec(),
            keys: RowKeys::RowIds { first: ids[start] },
        };
        store.rows_changed(def, TableChange::Written(std::slice::from_ref(&written)));
    }
}

/// The (start, length) of each run of consecutive ids in `ids` (ascending).
fn consecutive_runs(ids: &[u64]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=ids.len() {
        if i == ids.len() || ids[i] != ids[i - 1] + 1 {
            runs.push((start, i - start));
            start = i;
        }
    }
    runs
}
