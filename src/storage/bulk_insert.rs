//! Inserting the rows of a statement that arrive batch by batch (COPY, INSERT … SELECT, a
//! caller's batches) within a memory budget: rows of a table without primary key or unique
//! index are encoded as they come and, past the budget, staged in sorted files that are
//! published at commit all at once ([`Staging`]); still one atomic, durable statement.
//!
//! Rows of a table with a primary key or unique index, and rows written inside a
//! transaction block, are gathered and written by [`writer::insert`]: their duplicate checks
//! and the transaction's view need every row of the statement at hand.

use crate::blocking::Stopped;
use crate::error::Result;
use crate::storage::row_codec::{ColumnValues, encode_row};
use crate::storage::staging::Staging;
use crate::storage::writer::{self, check_not_null, conform, entries_of_row};
use crate::storage::{
    RowIdReservation, RowKeys, Store, StoredTable, TableChange, Transaction, WrittenBatch, keys,
    reader,
};
use datafusion::arrow::array::RecordBatch;
use std::sync::Arc;

/// Takes each batch of rows of a statement, in order.
pub type Rows<'a> = dyn FnMut(RecordBatch) -> Result<()> + 'a;

/// Inserts every batch that `fill` hands over into `table` as one atomic, durable write and
/// returns the number of rows; `budget` bytes bound what is held in memory (see the module
/// documentation for the tables where the rows are gathered instead). Stops with 57014 when
/// `stopped` is set between two batches or before the commit: nothing is written then.
pub fn insert_from(
    store: &Store,
    table: &Arc<StoredTable>,
    txn: Option<&Transaction>,
    budget: usize,
    stopped: &Stopped,
    fill: impl FnOnce(&mut Rows<'_>) -> Result<()>,
) -> Result<u64> {
    let def = &table.def;
    let keyed = def.has_primary_key() || def.indexes.iter().any(|i| i.unique);
    if keyed || txn.is_some() {
        let mut batches = Vec::new();
        fill(&mut |batch| {
            stopped.check()?;
            batches.push(batch);
            Ok(())
        })?;
        stopped.check()?;
        return writer::insert(store, table, &batches, txn);
    }
    let _writing = table.writing()?;
    let mut staged = StagedRows {
        table,
        staging: Staging::new(store, budget),
        reservations: Vec::new(),
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
    staged.commit(store)
}

/// The rows of a statement into a table without primary key, as they are encoded.
struct StagedRows<'a> {
    table: &'a Arc<StoredTable>,
    staging: Staging<'a>,
    /// Held until the commit: readers of "rows since row id n" wait for these.
    reservations: Vec<RowIdReservation>,
    /// The rows, for the observers, while none is staged in a file.
    written: Vec<WrittenBatch>,
    rows: u64,
    /// The table prefix, then the key of the row being encoded.
    key: Vec<u8>,
    encoded: Vec<u8>,
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
        let count = batch.num_rows() as u64;
        let reservation = self.table.reserve_row_ids(count);
        let first = reservation.first();
        self.reservations.push(reservation);
        let prefix_len = keys::table_prefix(def.id).len();
        for row in 0..batch.num_rows() {
            self.key.truncate(prefix_len);
            self.key
                .extend_from_slice(&keys::row_id(first + row as u64));
            self.encoded.clear();
            encode_row(&values, row, &mut self.encoded);
            self.staging.put(&self.key, &self.encoded)?;
            let row_key = &self.key[prefix_len..];
            for entry in entries_of_row(def, &values, row, row_key)? {
                self.staging.put(&entry.key, row_key)?;
            }
        }
        drop(values);
        if self.staging.staged() {
            self.written.clear();
        } else {
            self.written.push(WrittenBatch {
                columns,
                keys: RowKeys::RowIds { first },
            });
        }
        self.rows += count;
        Ok(())
    }

    /// Publishes the rows, then tells the store's observers about them: from memory when
    /// they fitted the budget, read back batch by batch when they were staged.
    fn commit(self, store: &Store) -> Result<u64> {
        if self.rows == 0 {
            return Ok(0);
        }
        let def = &self.table.def;
        let staged = self.staging.staged();
        self.staging.commit()?;
        let mut ranges: Vec<std::ops::Range<u64>> = Vec::new();
        for reservation in self.reservations {
            let ids = reservation.first()..reservation.first() + reservation.count();
            match ranges.last_mut() {
                Some(last) if last.end == ids.start => last.end = ids.end,
                _ => ranges.push(ids),
            }
        }
        if !staged {
            store.rows_changed(def, TableChange::Written(&self.written));
            return Ok(self.rows);
        }
        if !store.watched(def) {
            return Ok(self.rows);
        }
        for ids in ranges {
            reader::scan_row_ids(store, def, ids, |ids, batch| {
                for (start, length) in consecutive_runs(&ids) {
                    let rows = batch.slice(start, length);
                    let written = WrittenBatch {
                        columns: rows.columns().to_vec(),
                        keys: RowKeys::RowIds { first: ids[start] },
                    };
                    store.rows_changed(def, TableChange::Written(std::slice::from_ref(&written)));
                }
                Ok(())
            })?;
        }
        Ok(self.rows)
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
