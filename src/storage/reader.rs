//! Reading stored rows back as Arrow batches: full scans that stream, and point reads by key.

use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::storage::row_blocks::{self, BlockHeader};
use crate::storage::row_codec::RowDecoder;
use crate::storage::{Expiry, Store, Transaction, keys};
use datafusion::arrow::array::{AsArray, BinaryArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rocksdb::ReadOptions;
use std::ops::Range;
use std::sync::Arc;

/// Every row id.
const ALL_IDS: Range<u64> = 0..u64::MAX;

/// What a read returns: which columns, in which schema, in batches of how many rows.
pub struct ReadShape<'a> {
    /// The table read.
    pub table: &'a TableDef,
    /// Indexes of the table columns to return, in output order.
    pub projection: &'a [usize],
    /// Schema of the output batches (the projected table schema, plus the row keys' column
    /// when `row_keys_at` is set).
    pub schema: SchemaRef,
    /// Maximum rows per batch.
    pub batch_size: usize,
    /// Where in the output each row's key (binary, without the table prefix) goes, if asked.
    pub row_keys_at: Option<usize>,
    /// The transaction whose view the read sees (its snapshot and own writes); the latest
    /// committed rows when `None`.
    pub txn: Option<&'a Transaction>,
}

/// Scans every row of the table in key order, handing each full batch to `emit`; stops early
/// when `emit` returns false or after `limit` rows. The scan sees one consistent snapshot.
pub fn scan(
    store: &Store,
    shape: &ReadShape,
    limit: Option<usize>,
    mut emit: impl FnMut(RecordBatch) -> bool,
) -> Result<()> {
    let batch_size = shape.batch_size.max(1);
    let mut batches = Batches::new(shape, batch_size);
    let mut remaining = limit.unwrap_or(usize::MAX);
    let from = keys::table_prefix(shape.table.id);
    let to = keys::table_end(shape.table.id);
    let mut stopped = false;
    let prefix_len = from.len();
    let expiry = Expiry::now(shape.table);
    let mut visit = |key: &[u8], value: &[u8]| {
        let key = key.get(prefix_len..).unwrap_or_default();
        entry_rows(
            shape.table,
            expiry.as_ref(),
            &ALL_IDS,
            key,
            value,
            |key, row| {
                if remaining == 0 {
                    return Ok(false);
                }
                batches.push(key, row)?;
                remaining -= 1;
                if batches.len() >= batch_size && !emit(batches.finish()?) {
                    stopped = true;
                    return Ok(false);
                }
                Ok(true)
            },
        )
    };
    match shape.txn {
        Some(txn) => txn.scan(&from, &to, visit)?,
        None => {
            let mut options = ReadOptions::default();
            options.set_iterate_upper_bound(to);
            options.fill_cache(false);
            let db = store.db();
            let mut iter = db.raw_iterator_opt(options);
            iter.seek(&from);
            while let Some((key, value)) = iter.key().zip(iter.value()) {
                if !visit(key, value)? {
                    break;
                }
                iter.next();
            }
            iter.status()?;
        }
    }
    if !stopped && !batches.is_empty() {
        emit(batches.finish()?);
    }
    Ok(())
}

/// Visits every row of `table` in key order, in batches of up to `batch_size` rows of every
/// column (nullable, as [`TableDef::input_schema`]) with the rows' keys, until `visit` fails.
pub fn scan_with_keys(
    store: &Store,
    table: &TableDef,
    batch_size: usize,
    mut visit: impl FnMut(Vec<Vec<u8>>, RecordBatch) -> Result<()>,
) -> Result<()> {
    let columns = table.columns.len();
    let projection: Vec<usize> = (0..columns).collect();
    let mut fields = table.input_schema().fields().to_vec();
    fields.push(Arc::new(Field::new("row_key", DataType::Binary, false)));
    let shape = ReadShape {
        table,
        projection: &projection,
        schema: Arc::new(Schema::new(fields)),
        batch_size,
        row_keys_at: Some(columns),
        txn: None,
    };
    let mut failed = None;
    scan(store, &shape, None, |batch| {
        let keys = batch.column(columns).as_binary::<i32>();
        let keys = keys
            .iter()
            .map(|k| k.unwrap_or_default().to_vec())
            .collect();
        let visited = batch
            .project(&projection)
            .map_err(Error::from)
            .and_then(|rows| visit(keys, rows));
        match visited {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    failed.map_or(Ok(()), Err)
}

/// Hands each live row stored in one entry of `table` (`key`, without the table prefix, and
/// `value`) to `visit` with its row key (without the table prefix), until `visit` returns
/// false; whether it never did. The entry holds one row, or in append-only blocks the rows of
/// a block, of which those with a row id in `ids` are visited.
fn entry_rows(
    table: &TableDef,
    expiry: Option<&Expiry>,
    ids: &Range<u64>,
    key: &[u8],
    value: &[u8],
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
) -> Result<bool> {
    if !table.is_blocks() {
        if expiry.is_some_and(|e| e.expired(value)) {
            return Ok(true);
        }
        return visit(key, value);
    }
    let first = <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| Error::Corrupt("block stored under a key that is no row id".into()))?;
    let header = BlockHeader::read(value)?;
    let expiry = match expiry.map(|e| e.of_block(&header)) {
        Some(Some(true)) => return Ok(true),
        Some(None) => expiry,
        Some(Some(false)) | None => None,
    };
    for (offset, row) in row_blocks::rows(value)?.enumerate() {
        let row = row?;
        let id = first.saturating_add(offset as u64);
        if id < ids.start {
            continue;
        }
        if id >= ids.end {
            break;
        }
        if expiry.is_some_and(|e| e.expired(row)) {
            continue;
        }
        if !visit(&keys::row_id(id), row)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Decoded rows waiting to be emitted, with their keys when the shape asks for them.
struct Batches<'a> {
    decoder: RowDecoder,
    shape: &'a ReadShape<'a>,
    keys: Vec<Vec<u8>>,
}

impl<'a> Batches<'a> {
    fn new(shape: &'a ReadShape<'a>, capacity: usize) -> Self {
        let schema = match shape.row_keys_at {
            Some(at) => {
                let mut fields = shape.schema.fields().to_vec();
                fields.remove(at);
                Arc::new(Schema::new(fields))
            }
            None => shape.schema.clone(),
        };
        Batches {
            decoder: RowDecoder::new(shape.table, shape.projection, schema, capacity),
            shape,
            keys: Vec::new(),
        }
    }

    /// Adds the encoded row `row` stored under `key` (without the table prefix).
    fn push(&mut self, key: &[u8], row: &[u8]) -> Result<()> {
        self.decoder.push(row)?;
        if self.shape.row_keys_at.is_some() {
            self.keys.push(key.to_vec());
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.decoder.len()
    }

    fn is_empty(&self) -> bool {
        self.decoder.is_empty()
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let batch = self.decoder.finish()?;
        let Some(at) = self.shape.row_keys_at else {
            return Ok(batch);
        };
        let row_keys = BinaryArray::from_iter_values(self.keys.drain(..));
        let mut columns = batch.columns().to_vec();
        columns.insert(at, Arc::new(row_keys));
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(
            self.shape.schema.clone(),
            columns,
            &options,
        )?)
    }
}

/// Reads the (live) rows of a table without primary key whose row id is at least `first`, in
/// row-id order and from one consistent snapshot, handing each batch of all columns (nullable, as
/// [`TableDef::input_schema`]) with its rows' ids to `emit`.
pub fn scan_from_row_id(
    store: &Store,
    table: &TableDef,
    first: u64,
    emit: impl FnMut(Vec<u64>, RecordBatch) -> Result<()>,
) -> Result<()> {
    let all: Vec<usize> = (0..table.columns.len()).collect();
    scan_row_ids(store, table, first..u64::MAX, &all, emit)
}

/// Like [`scan_from_row_id`], for the row ids within `ids` (`u64::MAX` as the end: no end) and
/// the columns `projection`.
pub fn scan_row_ids(
    store: &Store,
    table: &TableDef,
    ids: Range<u64>,
    projection: &[usize],
    mut emit: impl FnMut(Vec<u64>, RecordBatch) -> Result<()>,
) -> Result<()> {
    const BATCH: usize = 8192;
    let mut options = ReadOptions::default();
    options.set_iterate_upper_bound(match ids.end {
        u64::MAX => keys::table_end(table.id),
        end => keys::row(table.id, &keys::row_id(end)),
    });
    options.fill_cache(false);
    let db = store.db();
    let mut iter = db.raw_iterator_opt(options);
    let start = keys::row(table.id, &keys::row_id(ids.start));
    let prefix = keys::table_prefix(table.id);
    if table.is_blocks() {
        // the block holding the first id may begin before it
        iter.seek_for_prev(&start);
        if !iter.key().is_some_and(|key| key.starts_with(&prefix)) {
            iter.seek(&start);
        }
    } else {
        iter.seek(&start);
    }
    let schema = Arc::new(table.input_schema().project(projection)?);
    let mut decoder = RowDecoder::new(table, projection, schema, BATCH);
    let mut batch_ids = Vec::with_capacity(BATCH);
    let expiry = Expiry::now(table);
    while let Some((key, value)) = iter.key().zip(iter.value()) {
        if keys::parse_row_id(key).is_none() {
            break;
        }
        let key = key.get(prefix.len()..).unwrap_or_default();
        entry_rows(table, expiry.as_ref(), &ids, key, value, |key, row| {
            let id = <[u8; 8]>::try_from(key).map(u64::from_be_bytes);
            decoder.push(row)?;
            batch_ids.push(id.unwrap_or_default());
            if decoder.len() >= BATCH {
                emit(std::mem::take(&mut batch_ids), decoder.finish()?)?;
            }
            Ok(true)
        })?;
        iter.next();
    }
    iter.status()?;
    if !decoder.is_empty() {
        emit(batch_ids, decoder.finish()?)?;
    }
    Ok(())
}

/// Reads the rows of `table` stored under `row_keys` (without the table prefix), every column
/// as [`TableDef::input_schema`], from the latest state: the keys of the rows found, and the
/// rows. In append-only blocks, the keys are those of blocks, and every row of each is read.
pub fn rows_by_key(
    store: &Store,
    table: &TableDef,
    row_keys: Vec<Vec<u8>>,
) -> Result<(Vec<Vec<u8>>, RecordBatch)> {
    let full_keys: Vec<Vec<u8>> = (row_keys.iter())
        .map(|key| keys::row(table.id, key))
        .collect();
    let values = store.multi_get(&full_keys)?;
    let projection: Vec<usize> = (0..table.columns.len()).collect();
    let mut decoder = RowDecoder::new(table, &projection, table.input_schema(), row_keys.len());
    let mut found = Vec::with_capacity(row_keys.len());
    for (key, value) in row_keys.into_iter().zip(values) {
        if let Some(value) = value {
            entry_rows(table, None, &ALL_IDS, &key, &value, |key, row| {
                decoder.push(row)?;
                found.push(key.to_vec());
                Ok(true)
            })?;
        }
    }
    Ok((found, decoder.finish()?))
}

/// Reads the rows with the given row keys (absent and expired ones are skipped) as one batch.
pub fn lookup(store: &Store, shape: &ReadShape, row_keys: &[Vec<u8>]) -> Result<RecordBatch> {
    shape.table.refuse_on_blocks("reading rows by key")?;
    let expiry = Expiry::now(shape.table);
    let mut batches = Batches::new(shape, row_keys.len());
    let full_keys: Vec<Vec<u8>> = row_keys
        .iter()
        .map(|k| keys::row(shape.table.id, k))
        .collect();
    let values = match shape.txn {
        Some(txn) => txn.multi_get(&full_keys)?,
        None => store.multi_get(&full_keys)?,
    };
    for (key, value) in row_keys.iter().zip(values) {
        if let Some(bytes) = value.filter(|row| Expiry::live(expiry.as_ref(), Some(row.as_slice())))
        {
            batches.push(key, &bytes)?;
        }
    }
    batches.finish()
}

/// The highest row id stored for a table without primary key, if it has rows (in append-only
/// blocks, the last row of the last block).
pub fn last_row_id(store: &Store, table: &TableDef) -> Result<Option<u64>> {
    let db = store.db();
    let mut iter = db.raw_iterator();
    iter.seek_for_prev(keys::table_end(table.id));
    let prefix = keys::table_prefix(table.id);
    let last = match iter.key().zip(iter.value()) {
        Some((key, value)) if key.starts_with(&prefix) => match keys::parse_row_id(key) {
            Some(first) if table.is_blocks() => {
                let rows = BlockHeader::read(value)?.rows;
                Some(first.saturating_add(u64::from(rows.max(1)) - 1))
            }
            id => id,
        },
        _ => None,
    };
    iter.status()?;
    Ok(last)
}
