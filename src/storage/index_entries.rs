//! Entries of secondary indexes. Each row has one entry per index of its table, written and
//! removed in the same write as the row: key `x`, table id, index id, the row's values of the
//! index columns, then (unless the index is unique and no value is NULL) the row key; the value
//! is the row key. Values are encoded so that entries sort like the values (`memcomparable`
//! behind a marker byte, NULLs after every value, as PostgreSQL sorts them by default).

use crate::error::{Error, Result};
use crate::schema::{SecondaryIndex, TableDef};
use crate::storage::key_codec::encode_key;
use crate::storage::row_codec::{ColumnValues, RowDecoder};
use crate::storage::{Expiry, Store, Transaction, keys};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::util::display::array_value_to_string;

const VALUE: u8 = 1;
const NULL: u8 = 2;

/// The entry of one row in one index.
pub struct Entry {
    /// The entry's full key.
    pub key: Vec<u8>,
    /// Whether the key is the values alone (a unique index, no NULL): another row with the
    /// same values would have the same key.
    pub exclusive: bool,
}

/// The encoded values of the index columns of `row` (`columns`: every column of the table),
/// and whether one is NULL.
pub fn encode_values(
    index: &SecondaryIndex,
    columns: &[ColumnValues],
    row: usize,
) -> Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut null = false;
    for &column in &index.columns {
        let values = columns
            .get(column)
            .ok_or_else(|| Error::Internal("index column out of range".into()))?;
        if values.is_null(row) {
            out.push(NULL);
            null = true;
        } else {
            out.push(VALUE);
            out.extend(encode_key(std::slice::from_ref(values), row)?);
        }
    }
    Ok((out, null))
}

/// Encodes one value for a bound of an index range: the marker and the value.
pub fn encode_bound(value: &ColumnValues) -> Result<Vec<u8>> {
    let mut out = vec![VALUE];
    out.extend(encode_key(std::slice::from_ref(value), 0)?);
    Ok(out)
}

/// The first key after every non-NULL value of an index's first column, within `prefix`.
pub fn nulls_start(prefix: &[u8]) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.push(NULL);
    key
}

/// The first key of non-NULL values of an index's first column, within `prefix`.
pub fn values_start(prefix: &[u8]) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.push(VALUE);
    key
}

/// The entry of `row` (whose row key is `row_key`) in `index` of table `def`.
pub fn entry(
    def: &TableDef,
    index: &SecondaryIndex,
    columns: &[ColumnValues],
    row: usize,
    row_key: &[u8],
) -> Result<Entry> {
    let (values, null) = encode_values(index, columns, row)?;
    let mut key = keys::index_prefix(def.id, index.id);
    key.extend_from_slice(&values);
    let exclusive = index.unique && !null;
    if !exclusive {
        key.extend_from_slice(row_key);
    }
    Ok(Entry { key, exclusive })
}

/// The index columns' values of `row`, as `(a, b)=(1, x)` for a unique violation's message.
pub fn render(def: &TableDef, index: &SecondaryIndex, columns: &[ArrayRef], row: usize) -> String {
    let names: Vec<&str> = (index.columns.iter())
        .map(|&c| def.columns[c].name.as_str())
        .collect();
    let values: Vec<String> = (index.columns.iter())
        .map(|&c| array_value_to_string(&columns[c], row).unwrap_or_default())
        .collect();
    format!("{}=({})", names.join(", "), values.join(", "))
}

/// The entries, in every index of `def`, of the rows stored under `row_keys` as `txn` sees
/// them (rows that are not there have none).
pub fn stored_entries(
    def: &TableDef,
    txn: &Transaction,
    row_keys: &[Vec<u8>],
) -> Result<Vec<Vec<u8>>> {
    if def.indexes.is_empty() || row_keys.is_empty() {
        return Ok(Vec::new());
    }
    let full: Vec<Vec<u8>> = row_keys.iter().map(|k| keys::row(def.id, k)).collect();
    let stored = txn.multi_get(&full)?;
    let present: Vec<(&[u8], &[u8])> = (row_keys.iter().zip(&stored))
        .filter_map(|(key, value)| Some((key.as_slice(), value.as_deref()?)))
        .collect();
    entries_of_encoded(def, &present)
}

/// The entries, in every index of `def`, of the encoded rows `rows` (row key, stored row).
pub fn entries_of_encoded(def: &TableDef, rows: &[(&[u8], &[u8])]) -> Result<Vec<Vec<u8>>> {
    if def.indexes.is_empty() || rows.is_empty() {
        return Ok(Vec::new());
    }
    let projection: Vec<usize> = (0..def.columns.len()).collect();
    let mut decoder = RowDecoder::new(def, &projection, def.input_schema(), rows.len());
    for (_, bytes) in rows {
        decoder.push(bytes)?;
    }
    let batch = decoder.finish()?;
    let values = (batch.columns().iter().zip(&def.columns))
        .map(|(array, column)| ColumnValues::new(column.column_type, array))
        .collect::<Result<Vec<_>>>()?;
    let mut entries = Vec::new();
    for (row, (row_key, _)) in rows.iter().enumerate() {
        for index in &def.indexes {
            entries.push(entry(def, index, &values, row, row_key)?.key);
        }
    }
    Ok(entries)
}

/// The row keys of the entries of `index` from `from` (included) to `to` (excluded), for each
/// range, in index order, as `txn` sees them (or the latest commits); at most `limit`.
pub fn row_keys_in(
    store: &Store,
    txn: Option<&Transaction>,
    ranges: &[(Vec<u8>, Vec<u8>)],
    limit: usize,
) -> Result<Vec<Vec<u8>>> {
    let mut row_keys = Vec::new();
    for (from, to) in ranges {
        let mut visit = |_: &[u8], value: &[u8]| {
            row_keys.push(value.to_vec());
            Ok(row_keys.len() < limit)
        };
        match txn {
            Some(txn) => txn.scan(from, to, &mut visit)?,
            None => store.scan(from, to, crate::storage::Scan::Cached, &mut visit)?,
        }
        if row_keys.len() >= limit {
            break;
        }
    }
    Ok(row_keys)
}

/// Hands the row keys of every entry from `from` (included) to `to` (excluded) to `visit`, in
/// chunks of up to `chunk` keys, in index order (or its reverse), as `txn` sees them (or the
/// latest commits), until `visit` returns false. (A transaction's reverse order is read
/// forward first: its own writes merge only into a forward scan.)
pub fn visit_row_keys_in_order(
    store: &Store,
    txn: Option<&Transaction>,
    (from, to): (&[u8], &[u8]),
    reverse: bool,
    chunk: usize,
    mut visit: impl FnMut(Vec<Vec<u8>>) -> Result<bool>,
) -> Result<()> {
    let chunk = chunk.max(1);
    let mut keys = Vec::with_capacity(chunk);
    let mut stopped = false;
    let mut collect = |_: &[u8], value: &[u8]| {
        keys.push(value.to_vec());
        if keys.len() >= chunk {
            stopped = !visit(std::mem::take(&mut keys))?;
        }
        Ok(!stopped)
    };
    match (txn, reverse) {
        (None, false) => store.scan(from, to, crate::storage::Scan::Cached, &mut collect)?,
        (None, true) => store.scan_reverse(from, to, &mut collect)?,
        (Some(txn), false) => txn.scan(from, to, &mut collect)?,
        (Some(txn), true) => {
            let mut all = Vec::new();
            txn.scan(from, to, |_, value| {
                all.push(value.to_vec());
                Ok(true)
            })?;
            for value in all.iter().rev() {
                if !collect(&[], value)? {
                    break;
                }
            }
        }
    }
    if !stopped && !keys.is_empty() {
        visit(keys)?;
    }
    Ok(())
}

/// Every entry of `index` over the rows of `def` stored now, with its row key (for CREATE
/// INDEX); a unique index's first duplicate is 23505.
pub fn build(
    store: &Store,
    def: &TableDef,
    index: &SecondaryIndex,
) -> Result<Vec<(Entry, Vec<u8>)>> {
    def.refuse_on_blocks("an index")?;
    const BATCH: usize = 4096;
    let mut entries = Vec::new();
    let mut exclusive = std::collections::HashSet::new();
    crate::storage::reader::scan_with_keys(store, def, BATCH, |row_keys, batch| {
        let arrays: Vec<ArrayRef> = batch.columns().to_vec();
        let values = (arrays.iter().zip(&def.columns))
            .map(|(array, column)| ColumnValues::new(column.column_type, array))
            .collect::<Result<Vec<_>>>()?;
        for (row, row_key) in row_keys.into_iter().enumerate() {
            let entry = entry(def, index, &values, row, &row_key)?;
            if entry.exclusive && !exclusive.insert(entry.key.clone()) {
                return Err(Error::UniqueViolation {
                    constraint: index.name.clone(),
                    key: render(def, index, &arrays, row),
                    row: 0,
                });
            }
            entries.push((entry, row_key));
        }
        Ok(())
    })?;
    Ok(entries)
}

/// The value stored under `key`, as `txn` sees it (or in the latest commits).
pub fn read(store: &Store, txn: Option<&Transaction>, key: &[u8]) -> Result<Option<Vec<u8>>> {
    match txn {
        Some(txn) => txn.get(key),
        None => store.get(key),
    }
}

/// Whether the unique entry `key` of a table `def` is taken: stored, as `txn` sees it (or in the
/// latest commits), for a row that is there and has not expired.
pub fn unique_taken(
    store: &Store,
    txn: Option<&Transaction>,
    def: &TableDef,
    key: &[u8],
) -> Result<bool> {
    let Some(row_key) = read(store, txn, key)? else {
        return Ok(false);
    };
    let Some(expiry) = Expiry::now(def) else {
        return Ok(true);
    };
    let row = read(store, txn, &keys::row(def.id, &row_key))?;
    Ok(Expiry::live(Some(&expiry), row.as_deref()))
}
