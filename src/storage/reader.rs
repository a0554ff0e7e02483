//! Reading stored rows back as Arrow batches: full scans that stream, and point reads by key.

use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::storage::row_codec::RowDecoder;
use crate::storage::{Expiry, Store, Transaction, keys};
use datafusion::arrow::array::{AsArray, BinaryArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rocksdb::ReadOptions;
use std::sync::Arc;

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
    let mut visit = |key: &[u8], value: &[u8]| {
        if remaining == 0 {
            return Ok(false);
        }
        if !batches.push(key, value)? {
            return Ok(true);
        }
        remaining -= 1;
        if batches.len() >= batch_size && !emit(batches.finish()?) {
            stopped = true;
            return Ok(false);
        }
        Ok(true)
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

/// Decoded rows waiting to be emitted, with their keys when the shape asks for them; expired
/// rows are left out.
struct Batches<'a> {
    decoder: RowDecoder,
    shape: &'a ReadShape<'a>,
    prefix_len: usize,
    keys: Vec<Vec<u8>>,
    expiry: Option<Expiry>,
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
            prefix_len: keys::table_prefix(shape.table.id).len(),
            keys: Vec::new(),
            expiry: Expiry::now(shape.table),
        }
    }

    /// Adds a row unless it has expired; whether it was added.
    fn push(&mut self, key: &[u8], value: &[u8]) -> Result<bool> {
        if self.expiry.as_ref().is_some_and(|e| e.expired(value)) {
            return Ok(false);
        }
        self.decoder.push(value)?;
        if self.shape.row_keys_at.is_some() {
            self.keys
                .push(key.get(self.prefix_len..).unwrap_or_default().to_vec());
        }
        Ok(true)
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
    scan_row_ids(store, table, first..u64::MAX, emit)
}

/// Like [`scan_from_row_id`], for the row ids within `ids` (`u64::MAX` as the end: no end).
pub fn scan_row_ids(
    store: &Store,
    table: &TableDef,
    ids: std::ops::Range<u64>,
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
    iter.seek(keys::row(table.id, &keys::row_id(ids.start)));
    let projection: Vec<usize> = (0..table.columns.len()).collect();
    let mut decoder = RowDecoder::new(table, &projection, table.input_schema(), BATCH);
    let mut ids = Vec::with_capacity(BATCH);
    let expiry = Expiry::now(table);
    while let Some((key, value)) = iter.key().zip(iter.value()) {
        let Some(id) = keys::parse_row_id(key) else {
            break;
        };
        if expiry.as_ref().is_some_and(|e| e.expired(value)) {
            iter.next();
            continue;
        }
        decoder.push(value)?;
        ids.push(id);
        if decoder.len() >= BATCH {
            emit(std::mem::take(&mut ids), decoder.finish()?)?;
        }
        iter.next();
    }
    iter.status()?;
    if !decoder.is_empty() {
        emit(ids, decoder.finish()?)?;
    }
    Ok(())
}

/// Reads the rows of `table` stored under `row_keys` (without the table prefix), every column
/// as [`TableDef::input_schema`], from the latest state: the keys of the rows found, and the
/// rows.
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
            decoder.push(&value)?;
            found.push(key);
        }
    }
    Ok((found, decoder.finish()?))
}

/// Reads the rows with the given row keys (absent and expired ones are skipped) as one batch.
pub fn lookup(store: &Store, shape: &ReadShape, row_keys: &[Vec<u8>]) -> Result<RecordBatch> {
    let mut batches = Batches::new(shape, row_keys.len());
    let full_keys: Vec<Vec<u8>> = row_keys
        .iter()
        .map(|k| keys::row(shape.table.id, k))
        .collect();
    let values = match shape.txn {
        Some(txn) => txn.multi_get(&full_keys)?,
        None => store.multi_get(&full_keys)?,
    };
    for (key, value) in full_keys.iter().zip(values) {
        if let Some(bytes) = value {
            batches.push(key, &bytes)?;
        }
    }
    batches.finish()
}

/// The highest row id stored for a table without primary key, if it has rows.
pub fn last_row_id(store: &Store, table_id: u64) -> Result<Option<u64>> {
    let db = store.db();
    let mut iter = db.raw_iterator();
    iter.seek_for_prev(keys::table_end(table_id));
    let prefix = keys::table_prefix(table_id);
    let last = match iter.key() {
        Some(key) if key.starts_with(&prefix) => keys::parse_row_id(key),
        _ => None,
    };
    iter.status()?;
    Ok(last)
}
