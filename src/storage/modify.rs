//! Changing and removing stored rows inside a transaction: the new versions of the rows an
//! UPDATE found, and the rows a DELETE found (by their row keys, without the table prefix).

use crate::error::{Error, Result};
use crate::storage::index_entries;
use crate::storage::row_codec::{ColumnValues, encode_row};
use crate::storage::writer::{check_not_null, conform, duplicate, entries_of_row, primary_keys};
use crate::storage::{Change, Expiry, RowKeys, StoredTable, Transaction, WrittenBatch, keys};
use datafusion::arrow::array::RecordBatch;
use std::collections::HashSet;
use std::sync::Arc;

/// Removes the rows of `table` stored under `row_keys`, and their index entries, when `txn`
/// commits; how many. 0A000 on an append-only table.
pub fn delete(txn: &Transaction, table: &Arc<StoredTable>, row_keys: Vec<Vec<u8>>) -> Result<u64> {
    table.def.refuse_on_blocks("DELETE")?;
    remove(txn, table, row_keys)
}

/// Removes the entries of `table` stored under `row_keys` (rows, or blocks of rows), and their
/// index entries, when `txn` commits; how many.
fn remove(txn: &Transaction, table: &Arc<StoredTable>, row_keys: Vec<Vec<u8>>) -> Result<u64> {
    let def = &table.def;
    txn.uses(table);
    for entry in index_entries::stored_entries(def, txn, &row_keys)? {
        txn.delete(entry);
    }
    for key in &row_keys {
        txn.delete(keys::row(def.id, key));
    }
    let count = row_keys.len() as u64;
    if count > 0 {
        txn.record(Change::Removed(def.clone(), row_keys));
    }
    Ok(count)
}

/// Replaces the rows of `table` stored under `row_keys` by the rows of `batch` (every column,
/// in table order, cast to the table's types) when `txn` commits. A row whose primary key
/// changes moves to its new key, which must be free (or freed by this statement): 23505.
pub fn update(
    txn: &Transaction,
    table: &Arc<StoredTable>,
    row_keys: Vec<Vec<u8>>,
    batch: &RecordBatch,
) -> Result<u64> {
    let def = &table.def;
    def.refuse_on_blocks("UPDATE")?;
    txn.uses(table);
    for entry in index_entries::stored_entries(def, txn, &row_keys)? {
        txn.delete(entry);
    }
    let columns = conform(def, batch, 0)?;
    check_not_null(def, &columns, 0)?;
    let new_keys = if def.has_primary_key() {
        let keys = primary_keys(def, &columns, 0, &mut HashSet::new())?;
        let vacated: HashSet<&Vec<u8>> = row_keys.iter().collect();
        let moving: Vec<usize> = (0..keys.len())
            .filter(|&row| keys[row] != row_keys[row] && !vacated.contains(&keys[row]))
            .collect();
        let taken = txn.multi_get(
            &moving
                .iter()
                .map(|&row| keys::row(def.id, &keys[row]))
                .collect::<Vec<_>>(),
        )?;
        let expiry = Expiry::now(def);
        if let Some(at) =
            (taken.iter()).position(|row| Expiry::live(expiry.as_ref(), row.as_deref()))
        {
            return Err(duplicate(def, &columns, moving[at], 0));
        }
        // expired rows there are replaced, their index entries removed
        let expired: Vec<(&[u8], &[u8])> = (moving.iter().zip(&taken))
            .filter_map(|(&row, stored)| Some((keys[row].as_slice(), stored.as_deref()?)))
            .collect();
        for stale in index_entries::entries_of_encoded(def, &expired)? {
            txn.delete(stale);
        }
        keys
    } else {
        row_keys.clone()
    };
    let kept: HashSet<&Vec<u8>> = new_keys.iter().collect();
    for old in row_keys.iter().filter(|old| !kept.contains(old)) {
        txn.delete(keys::row(def.id, old));
    }
    let values = columns
        .iter()
        .zip(&def.columns)
        .map(|(array, column)| ColumnValues::new(column.column_type, array))
        .collect::<Result<Vec<_>>>()?;
    let mut encoded = Vec::with_capacity(256);
    let mut seen_entries = HashSet::new();
    for (row, key) in new_keys.iter().enumerate() {
        encoded.clear();
        encode_row(&values, row, &mut encoded);
        txn.put(keys::row(def.id, key), encoded.clone(), false);
        for (index, entry) in def
            .indexes
            .iter()
            .zip(entries_of_row(def, &values, row, key)?)
        {
            if entry.exclusive
                && (!seen_entries.insert(entry.key.clone())
                    || index_entries::unique_taken(txn.store(), Some(txn), def, &entry.key)?)
            {
                return Err(Error::UniqueViolation {
                    constraint: index.name.clone(),
                    key: index_entries::render(def, index, &columns, row),
                    row: row as u64 + 1,
                });
            }
            txn.put(entry.key, key.clone(), false);
        }
    }
    drop(values);
    let count = new_keys.len() as u64;
    txn.record(Change::Removed(def.clone(), row_keys));
    txn.record(Change::Written(
        def.clone(),
        WrittenBatch {
            columns,
            keys: RowKeys::Keys(new_keys),
        },
    ));
    Ok(count)
}

/// Removes every row of `table` when `txn` commits; how many entries it had.
pub fn truncate(txn: &Transaction, table: &Arc<StoredTable>) -> Result<u64> {
    let def = &table.def;
    let prefix = keys::table_prefix(def.id);
    let mut row_keys = Vec::new();
    txn.scan(&prefix, &keys::table_end(def.id), |key, _| {
        row_keys.push(key.get(prefix.len()..).unwrap_or_default().to_vec());
        Ok(true)
    })?;
    remove(txn, table, row_keys)
}
