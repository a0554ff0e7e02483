//! MATERIALIZE's pure part: from the definition's output rows to the latest row per entity,
//! and from those to the writes of the online store.

use crate::error::{Error, Result};
use crate::features::FeatureView;
use crate::schema::TableDef;
use crate::storage::encode_key;
use crate::storage::{ColumnValues, encode_row};
use crate::storage::{WriteSet, keys};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::TimestampMicrosecondType;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How a MATERIALIZE ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MaterializeMode {
    /// The definition over all its input; the online rows replaced.
    Full,
    /// The definition for the entities of rows added to its source table since the last run.
    Incremental,
}

impl MaterializeMode {
    /// The mode's name in results.
    pub fn name(self) -> &'static str {
        match self {
            MaterializeMode::Full => "full",
            MaterializeMode::Incremental => "incremental",
        }
    }
}

/// What the last MATERIALIZE of a view left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Materialized {
    /// When it ran, microseconds since the Unix epoch.
    pub at_micros: i64,
    /// How it ran.
    pub mode: MaterializeMode,
    /// Online rows stored after it.
    pub rows: u64,
    /// The single source table and how far into it the run read, when the definition reads
    /// exactly one stored table without primary key (what an incremental run needs).
    pub source: Option<SourceMark>,
}

/// A position in a source table: every row with a smaller row id was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceMark {
    /// Table name.
    pub table: String,
    /// Table id (a table dropped and created again has a new one).
    pub table_id: u64,
    /// Rows with smaller row ids were written when the run started.
    pub written_row_ids: u64,
}

/// The definition's output, cast to the view's column types.
pub struct FeatureRows {
    batches: Vec<Vec<ArrayRef>>,
}

impl FeatureRows {
    /// Casts `batches` (the definition's output) to the columns of `def`.
    pub fn new(def: &TableDef, batches: &[RecordBatch]) -> Result<FeatureRows> {
        let batches = batches
            .iter()
            .map(|batch| {
                if batch.num_columns() != def.columns.len() {
                    return Err(Error::DatatypeMismatch(format!(
                        "the definition of feature view \"{}\" returned {} columns where {} \
                         were declared",
                        def.name,
                        batch.num_columns(),
                        def.columns.len()
                    )));
                }
                batch
                    .columns()
                    .iter()
                    .zip(&def.columns)
                    .map(|(array, column)| Ok(cast(array, &column.column_type.arrow_type())?))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FeatureRows { batches })
    }

    /// The casted columns of every batch.
    pub fn batches(&self) -> &[Vec<ArrayRef>] {
        &self.batches
    }
}

/// Where an entity's chosen row is: batch, row, feature timestamp.
pub type RowRef = (usize, usize, i64);

/// The newest row per entity key (`key_codec` bytes); rows with a NULL key or timestamp are
/// skipped. Of rows with equal timestamps the later one in the output wins.
pub fn latest_rows(view: &FeatureView, rows: &FeatureRows) -> Result<HashMap<Vec<u8>, RowRef>> {
    let (entity, timestamp) = (view.entity_index(), view.timestamp_index());
    let entity_type = view.columns.columns[entity].column_type;
    let mut latest: HashMap<Vec<u8>, RowRef> = HashMap::new();
    for (b, columns) in rows.batches().iter().enumerate() {
        let keys = ColumnValues::new(entity_type, &columns[entity])?;
        let stamps = columns[timestamp].as_primitive::<TimestampMicrosecondType>();
        for row in 0..stamps.len() {
            if keys.is_null(row) || stamps.is_null(row) {
                continue;
            }
            let ts = stamps.value(row);
            let key = encode_key(std::slice::from_ref(&keys), row)?;
            match latest.get_mut(&key) {
                Some(found) if found.2 > ts => {}
                Some(found) => *found = (b, row, ts),
                None => {
                    latest.insert(key, (b, row, ts));
                }
            }
        }
    }
    Ok(latest)
}

/// Puts the encoded row of every fresh entry of `latest` into `write`; returns how many.
/// Stale entries (older than the TTL at `now_micros`) are deleted instead.
pub fn write_latest(
    view: &FeatureView,
    rows: &FeatureRows,
    latest: &HashMap<Vec<u8>, RowRef>,
    now_micros: i64,
    write: &mut WriteSet,
) -> Result<u64> {
    let values = rows
        .batches()
        .iter()
        .map(|columns| {
            columns
                .iter()
                .zip(&view.columns.columns)
                .map(|(array, column)| ColumnValues::new(column.column_type, array))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    let mut encoded = Vec::with_capacity(128);
    let mut stored = 0;
    for (key, &(batch, row, ts)) in latest {
        let full_key = keys::online_row(&view.name, key);
        if !view.is_fresh(ts, now_micros) {
            write.delete(full_key);
            continue;
        }
        encoded.clear();
        encode_row(&values[batch], row, &mut encoded);
        write.put(full_key, &encoded);
        stored += 1;
    }
    Ok(stored)
}
