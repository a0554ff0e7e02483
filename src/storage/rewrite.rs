//! Rewriting every row of a table for a new definition (ALTER TABLE … ADD/DROP COLUMN, ADD
//! PRIMARY KEY): the rows are read, converted, checked and encoded again, with the entries of
//! the new definition's indexes, into one write that also removes the old rows and entries.
//! The table's rows are held in memory meanwhile, as one large INSERT holds its rows.

use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::storage::reader;
use crate::storage::row_codec::{ColumnValues, encode_row};
use crate::storage::writer::{check_not_null, conform, entries_of_row, primary_keys};
use crate::storage::{Store, WriteSet, keys};
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{Field, Schema};
use std::collections::HashSet;
use std::sync::Arc;

/// Rows decoded at a time.
const BATCH: usize = 8192;

/// The write that replaces the rows of `old` by `convert`ed rows of `new` (same table id):
/// `convert` turns a batch of every column of `old` into the columns of `new`, in order.
/// NOT NULL, primary-key and unique-index violations of the new rows fail it (23502, 23505).
pub fn rewrite(
    store: &Store,
    old: &TableDef,
    new: &TableDef,
    convert: &dyn Fn(&RecordBatch) -> Result<Vec<ArrayRef>>,
) -> Result<WriteSet> {
    old.refuse_on_blocks(
        "ALTER TABLE rewriting rows (adding or dropping columns, adding a primary key)",
    )?;
    let mut write = WriteSet::default();
    write.delete_range(keys::table_prefix(old.id), keys::table_end(old.id));
    let (from, to) = keys::table_indexes_range(old.id);
    write.delete_range(from, to);
    let mut seen_keys = HashSet::new();
    let mut seen_entries = HashSet::new();
    let mut rows_before = 0u64;
    let mut encoded = Vec::with_capacity(256);
    reader::scan_with_keys(store, old, BATCH, |old_keys, batch| {
        let arrays = convert(&batch)?;
        let fields: Vec<Field> = (new.columns.iter().zip(&arrays))
            .map(|(column, array)| Field::new(&column.name, array.data_type().clone(), true))
            .collect();
        let converted = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
        let columns = conform(new, &converted, rows_before)?;
        check_not_null(new, &columns, rows_before)?;
        let new_keys = match new.has_primary_key() {
            true => primary_keys(new, &columns, rows_before, &mut seen_keys)?,
            false => old_keys,
        };
        let values = (columns.iter().zip(&new.columns))
            .map(|(array, column)| ColumnValues::new(column.column_type, array))
            .collect::<Result<Vec<_>>>()?;
        for (row, key) in new_keys.iter().enumerate() {
            encoded.clear();
            encode_row(&values, row, &mut encoded);
            write.put(keys::row(new.id, key), &encoded);
            for (index, entry) in new
                .indexes
                .iter()
                .zip(entries_of_row(new, &values, row, key)?)
            {
                if entry.exclusive && !seen_entries.insert(entry.key.clone()) {
                    return Err(Error::UniqueViolation {
                        constraint: index.name.clone(),
                        key: crate::storage::index_entries::render(new, index, &columns, row),
                        row: rows_before + row as u64 + 1,
                    });
                }
                write.put(&entry.key, key);
            }
        }
        rows_before += batch.num_rows() as u64;
        Ok(())
    })?;
    Ok(write)
}
