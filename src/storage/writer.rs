//! Inserting rows already in memory, and the checks every insert shares: values conformed to
//! the table's types, NOT NULL, primary keys (the rows of a statement, one at a time, are
//! written by [`bulk_insert`]).

use crate::blocking::Stopped;
use crate::error::{Error, Result};
use crate::schema::{ColumnType, TableDef};
use crate::storage::bulk_insert;
use crate::storage::index_entries;
use crate::storage::key_codec::encode_key;
use crate::storage::row_codec::ColumnValues;
use crate::storage::vector_values::conform_vectors;
use crate::storage::{Expiry, Store, StoredTable, Transaction, keys};
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::util::display::array_value_to_string;
use std::collections::HashSet;
use std::sync::Arc;

/// Inserts all rows of `batches` into `table` as one atomic, synced write: either every row is
/// durable when this returns `Ok`, or none is written. Returns the number of rows. Inside a
/// transaction (`txn`), the rows are written at its COMMIT instead.
///
/// Columns are matched by position and cast to the table's types. Errors name the 1-based row
/// within the statement: a value that does not convert, a NULL in a NOT NULL column, a
/// duplicate primary key (against stored rows and earlier rows of the same statement).
pub fn insert(
    store: &Store,
    table: &Arc<StoredTable>,
    batches: &[RecordBatch],
    txn: Option<&Transaction>,
) -> Result<u64> {
    // already in memory: nothing to gain from moving them out of it
    let budget = usize::MAX;
    bulk_insert::insert_from(store, table, txn, budget, &Stopped::default(), |rows| {
        batches.iter().try_for_each(|batch| rows(batch.clone()))
    })
}

/// The entries of `row` (stored under `row_key`) in every index of `def`, in index order.
pub(super) fn entries_of_row(
    def: &TableDef,
    values: &[ColumnValues],
    row: usize,
    row_key: &[u8],
) -> Result<Vec<index_entries::Entry>> {
    (def.indexes.iter())
        .map(|index| index_entries::entry(def, index, values, row, row_key))
        .collect()
}

/// Checks that `batch` would insert into `def` (its columns cast to the table's types, no NULL
/// in a NOT NULL column) without writing it: what a writer that must set aside the rows that
/// do not fit, one message at a time, asks first.
pub fn check_fits(def: &TableDef, batch: &RecordBatch) -> Result<()> {
    let columns = conform(def, batch, 0)?;
    check_not_null(def, &columns, 0)
}

/// Casts the columns of `batch` to the table's types, naming the first value that does not fit.
pub(super) fn conform(
    def: &TableDef,
    batch: &RecordBatch,
    rows_before: u64,
) -> Result<Vec<ArrayRef>> {
    if batch.num_columns() != def.columns.len() {
        return Err(Error::DatatypeMismatch(format!(
            "table \"{}\" has {} columns but the rows have {}",
            def.name,
            def.columns.len(),
            batch.num_columns()
        )));
    }
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    batch
        .columns()
        .iter()
        .zip(&def.columns)
        .map(|(array, column)| {
            if let ColumnType::Vector(_) = column.column_type {
                return conform_vectors(array, column, rows_before);
            }
            let target = column.column_type.arrow_type();
            if array.data_type() == &target {
                return Ok(array.clone());
            }
            cast_with_options(array, &target, &strict).map_err(|_| {
                let (row, value) = first_unconvertible(array, &target);
                Error::InvalidText(format!(
                    "invalid input syntax for type {} in column \"{}\": \"{value}\" (row {})",
                    column.column_type.sql_name(),
                    column.name,
                    rows_before + row as u64 + 1
                ))
            })
        })
        .collect()
}

/// Finds the first value of `array` that a lenient cast to `target` turns into NULL.
fn first_unconvertible(
    array: &ArrayRef,
    target: &datafusion::arrow::datatypes::DataType,
) -> (usize, String) {
    let lenient = cast_with_options(array, target, &CastOptions::default());
    let row = match &lenient {
        Ok(converted) => (0..array.len())
            .find(|&i| array.is_valid(i) && converted.is_null(i))
            .unwrap_or(0),
        Err(_) => 0,
    };
    let value = array_value_to_string(array, row).unwrap_or_default();
    (row, value)
}

pub(super) fn check_not_null(def: &TableDef, columns: &[ArrayRef], rows_before: u64) -> Result<()> {
    for (array, column) in columns.iter().zip(&def.columns) {
        if column.nullable || array.null_count() == 0 {
            continue;
        }
        let row = (0..array.len()).find(|&i| array.is_null(i)).unwrap_or(0);
        return Err(Error::NotNullViolation {
            table: def.name.clone(),
            column: column.name.clone(),
            row: rows_before + row as u64 + 1,
        });
    }
    Ok(())
}

/// The encoded primary keys of the rows.
pub(super) fn encode_primary_keys(def: &TableDef, columns: &[ArrayRef]) -> Result<Vec<Vec<u8>>> {
    let key_columns = def
        .primary_key
        .iter()
        .map(|&i| ColumnValues::new(def.columns[i].column_type, &columns[i]))
        .collect::<Result<Vec<_>>>()?;
    let num_rows = columns.first().map_or(0, |c| c.len());
    (0..num_rows)
        .map(|row| encode_key(&key_columns, row))
        .collect()
}

/// The encoded primary keys of the rows, none repeated within the statement (`seen`).
pub(super) fn primary_keys(
    def: &TableDef,
    columns: &[ArrayRef],
    rows_before: u64,
    seen: &mut HashSet<Vec<u8>>,
) -> Result<Vec<Vec<u8>>> {
    let keys = encode_primary_keys(def, columns)?;
    match keys.iter().position(|key| !seen.insert(key.clone())) {
        Some(row) => Err(duplicate(def, columns, row, rows_before)),
        None => Ok(keys),
    }
}

/// Checks that no live row is stored (or written by `txn`) under any of `row_keys`; an
/// expired row there is replaced: the keys of its index entries, to remove, are returned.
pub(super) fn check_absent(
    store: &Store,
    txn: Option<&Transaction>,
    def: &TableDef,
    columns: &[ArrayRef],
    row_keys: &[Vec<u8>],
    rows_before: u64,
) -> Result<Vec<Vec<u8>>> {
    let full: Vec<Vec<u8>> = row_keys.iter().map(|k| keys::row(def.id, k)).collect();
    let stored = match txn {
        Some(txn) => txn.multi_get(&full)?,
        None => store.multi_get(&full)?,
    };
    let expiry = Expiry::now(def);
    if let Some(row) = (stored.iter()).position(|row| Expiry::live(expiry.as_ref(), row.as_deref()))
    {
        return Err(duplicate(def, columns, row, rows_before));
    }
    let expired: Vec<(&[u8], &[u8])> = (row_keys.iter().zip(&stored))
        .filter_map(|(key, row)| Some((key.as_slice(), row.as_deref()?)))
        .collect();
    index_entries::entries_of_encoded(def, &expired)
}

pub(super) fn duplicate(
    def: &TableDef,
    columns: &[ArrayRef],
    row: usize,
    rows_before: u64,
) -> Error {
    Error::UniqueViolation {
        constraint: format!("{}_pkey", def.name),
        key: render_key(def, columns, row),
        row: rows_before + row as u64 + 1,
    }
}

fn render_key(def: &TableDef, columns: &[ArrayRef], row: usize) -> String {
    def.primary_key
        .iter()
        .map(|&i| {
            let value = array_value_to_string(&columns[i], row).unwrap_or_default();
            format!("{}={value}", def.columns[i].name)
        })
        .collect::<Vec<_>>()
        .join(", ")
}
