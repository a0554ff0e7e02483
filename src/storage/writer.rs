//! Validating, encoding and durably writing the rows of one statement.

use crate::error::{Error, Result};
use crate::schema::{ColumnType, TableDef};
use crate::storage::index_entries;
use crate::storage::key_codec::encode_key;
use crate::storage::row_codec::{ColumnValues, encode_row};
use crate::storage::vector_values::conform_vectors;
use crate::storage::{
    Change, Expiry, RowKeys, Store, StoredTable, TableChange, Transaction, WriteSet, WrittenBatch,
    keys,
};
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
    match txn {
        Some(block) => block.atomically(|| insert_rows(store, table, batches, txn)),
        None => insert_rows(store, table, batches, None),
    }
}

fn insert_rows(
    store: &Store,
    table: &Arc<StoredTable>,
    batches: &[RecordBatch],
    txn: Option<&Transaction>,
) -> Result<u64> {
    let def = &table.def;
    let _writing = table.writing()?;
    if let Some(txn) = txn {
        txn.uses(table);
    }
    let unique = def.has_primary_key() || def.indexes.iter().any(|i| i.unique);
    // Outside a transaction, rows with a primary key (or a unique index) are checked for
    // duplicates, and that check must see every earlier write to the table: writers of such
    // a table take turns.
    let _turn = (unique && txn.is_none()).then(|| {
        table
            .write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    });
    let start = store.commit_start();
    let mut write = WriteSet::default();
    let mut checked = Vec::new();
    let mut seen_keys = HashSet::new();
    let mut seen_entries = HashSet::new();
    let mut rows_before: u64 = 0;
    let mut encoded = Vec::with_capacity(256);
    // Held until the write is done: readers of "rows since row id n" wait for these.
    let mut reservations = Vec::new();
    let mut written = Vec::with_capacity(batches.len());
    // One key buffer for every row: the table prefix, then the row's key.
    let mut key = keys::table_prefix(def.id);
    let prefix_len = key.len();
    for batch in batches {
        let columns = conform(def, batch, rows_before)?;
        check_not_null(def, &columns, rows_before)?;
        let values = columns
            .iter()
            .zip(&def.columns)
            .map(|(array, column)| ColumnValues::new(column.column_type, array))
            .collect::<Result<Vec<_>>>()?;
        let row_keys = if def.has_primary_key() {
            let keys = primary_keys(def, &columns, rows_before, &mut seen_keys)?;
            for stale in check_absent(store, txn, def, &columns, &keys, rows_before)? {
                match txn {
                    Some(txn) => txn.delete(stale),
                    None => write.delete(&stale),
                }
            }
            RowKeys::Keys(keys)
        } else {
            let count = batch.num_rows() as u64;
            let first = match txn {
                Some(txn) => txn.reserve_row_ids(table, count),
                None => {
                    let reservation = table.reserve_row_ids(count);
                    let first = reservation.first();
                    reservations.push(reservation);
                    first
                }
            };
            RowKeys::RowIds { first }
        };
        for row in 0..batch.num_rows() {
            key.truncate(prefix_len);
            match &row_keys {
                RowKeys::Keys(primary_keys) => key.extend_from_slice(&primary_keys[row]),
                RowKeys::RowIds { first } => {
                    key.extend_from_slice(&keys::row_id(first + row as u64))
                }
            }
            encoded.clear();
            encode_row(&values, row, &mut encoded);
            let fresh = !def.has_primary_key();
            match txn {
                Some(txn) => txn.put(key.clone(), encoded.clone(), fresh),
                None => {
                    write.put(&key, &encoded);
                    if !fresh {
                        checked.push(key.clone());
                    }
                }
            }
            let row_key = &key[prefix_len..];
            for (index, entry) in def
                .indexes
                .iter()
                .zip(entries_of_row(def, &values, row, row_key)?)
            {
                if entry.exclusive
                    && (!seen_entries.insert(entry.key.clone())
                        || index_entries::unique_taken(store, txn, def, &entry.key)?)
                {
                    return Err(Error::UniqueViolation {
                        constraint: index.name.clone(),
                        key: index_entries::render(def, index, &columns, row),
                        row: rows_before + row as u64 + 1,
                    });
                }
                match txn {
                    Some(txn) => txn.put(entry.key, row_key.to_vec(), fresh && !entry.exclusive),
                    None => {
                        write.put(&entry.key, row_key);
                        if entry.exclusive {
                            checked.push(entry.key);
                        }
                    }
                }
            }
        }
        drop(values);
        written.push(WrittenBatch {
            columns,
            keys: row_keys,
        });
        rows_before += batch.num_rows() as u64;
    }
    if rows_before == 0 {
        return Ok(0);
    }
    match txn {
        Some(txn) => {
            for batch in written {
                txn.record(Change::Written(def.clone(), batch));
            }
        }
        None => {
            if checked.is_empty() {
                store.write(write)?;
            } else {
                let number = start.number();
                let checked = checked.into_iter().map(|key| (key, number)).collect();
                store.commit_checked(write, checked)?;
            }
            drop(reservations);
            store.rows_changed(def, TableChange::Written(&written));
        }
    }
    Ok(rows_before)
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

/// The encoded primary keys of the rows, none repeated within the statement.
pub(super) fn primary_keys(
    def: &TableDef,
    columns: &[ArrayRef],
    rows_before: u64,
    seen: &mut HashSet<Vec<u8>>,
) -> Result<Vec<Vec<u8>>> {
    let key_columns = def
        .primary_key
        .iter()
        .map(|&i| ColumnValues::new(def.columns[i].column_type, &columns[i]))
        .collect::<Result<Vec<_>>>()?;
    let num_rows = columns.first().map_or(0, |c| c.len());
    let row_keys = (0..num_rows)
        .map(|row| encode_key(&key_columns, row))
        .collect::<Result<Vec<_>>>()?;
    for (row, key) in row_keys.iter().enumerate() {
        if !seen.insert(key.clone()) {
            return Err(duplicate(def, columns, row, rows_before));
        }
    }
    Ok(row_keys)
}

/// Checks that no live row is stored (or written by `txn`) under any of `row_keys`; an
/// expired row there is replaced: the keys of its index entries, to remove, are returned.
fn check_absent(
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
