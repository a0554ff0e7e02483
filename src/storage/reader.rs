//! Reading stored rows back as Arrow batches: full scans that stream, and point reads by key.

use crate::error::Result;
use crate::schema::TableDef;
use crate::storage::row_codec::RowDecoder;
use crate::storage::{Store, keys};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use rocksdb::ReadOptions;

/// What a read returns: which columns, in which schema, in batches of how many rows.
pub struct ReadShape<'a> {
    /// The table read.
    pub table: &'a TableDef,
    /// Indexes of the table columns to return, in output order.
    pub projection: &'a [usize],
    /// Schema of the output batches (the projected table schema).
    pub schema: SchemaRef,
    /// Maximum rows per batch.
    pub batch_size: usize,
}

/// Scans every row of the table in key order, handing each full batch to `emit`; stops early
/// when `emit` returns false or after `limit` rows. The scan sees one consistent snapshot.
pub fn scan(
    store: &Store,
    shape: &ReadShape,
    limit: Option<usize>,
    mut emit: impl FnMut(RecordBatch) -> bool,
) -> Result<()> {
    let mut options = ReadOptions::default();
    options.set_iterate_upper_bound(keys::table_end(shape.table.id));
    options.fill_cache(false);
    let db = store.db();
    let mut iter = db.raw_iterator_opt(options);
    iter.seek(keys::table_prefix(shape.table.id));
    let batch_size = shape.batch_size.max(1);
    let mut decoder = RowDecoder::new(
        shape.table,
        shape.projection,
        shape.schema.clone(),
        batch_size,
    );
    let mut remaining = limit.unwrap_or(usize::MAX);
    while remaining > 0 {
        let Some(value) = iter.value() else { break };
        decoder.push(value)?;
        remaining -= 1;
        if decoder.len() >= batch_size && !emit(decoder.finish()?) {
            return Ok(());
        }
        iter.next();
    }
    iter.status()?;
    if !decoder.is_empty() {
        emit(decoder.finish()?);
    }
    Ok(())
}

/// Reads the rows of a table without primary key whose row id is at least `first`, in row-id
/// order and from one consistent snapshot, handing each batch of all columns (nullable, as
/// [`TableDef::input_schema`]) with its rows' ids to `emit`.
pub fn scan_from_row_id(
    store: &Store,
    table: &TableDef,
    first: u64,
    mut emit: impl FnMut(Vec<u64>, RecordBatch) -> Result<()>,
) -> Result<()> {
    const BATCH: usize = 8192;
    let mut options = ReadOptions::default();
    options.set_iterate_upper_bound(keys::table_end(table.id));
    options.fill_cache(false);
    let db = store.db();
    let mut iter = db.raw_iterator_opt(options);
    iter.seek(keys::row(table.id, &keys::row_id(first)));
    let projection: Vec<usize> = (0..table.columns.len()).collect();
    let mut decoder = RowDecoder::new(table, &projection, table.input_schema(), BATCH);
    let mut ids = Vec::with_capacity(BATCH);
    while let Some((key, value)) = iter.key().zip(iter.value()) {
        let Some(id) = keys::parse_row_id(key) else {
            break;
        };
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

/// Reads the rows with the given row keys (absent keys are skipped) as one batch.
pub fn lookup(store: &Store, shape: &ReadShape, row_keys: &[Vec<u8>]) -> Result<RecordBatch> {
    let mut decoder = RowDecoder::new(
        shape.table,
        shape.projection,
        shape.schema.clone(),
        row_keys.len(),
    );
    let full_keys = row_keys.iter().map(|k| keys::row(shape.table.id, k));
    for value in store.db().multi_get(full_keys) {
        if let Some(bytes) = value? {
            decoder.push(&bytes)?;
        }
    }
    decoder.finish()
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
