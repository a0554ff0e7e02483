//! Rows as JSON objects (`POST /v1/tables/{table}/rows`): a JSON array of objects, or
//! newline-delimited JSON read as it arrives. The first object's keys are the columns given;
//! the table's other columns take their defaults, as in `INSERT INTO t (listed) …`. Keys that
//! are not columns, or not among the first object's, are errors: a typo never drops a value.

use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::sql::copy_from::{listed_columns, widen};
use arrow_json::ReaderBuilder;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use serde_json::{Map, Value};
use std::io::BufRead;
use std::sync::Arc;

const BATCH_SIZE: usize = 8192;

/// Rows to insert, as JSON.
pub enum JsonRows {
    /// A JSON array's objects, already parsed.
    Objects(Vec<Map<String, Value>>),
    /// Newline-delimited objects, read as they arrive.
    Lines(Box<dyn BufRead + Send>),
}

impl std::fmt::Debug for JsonRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonRows::Objects(objects) => write!(f, "JsonRows::Objects({})", objects.len()),
            JsonRows::Lines(_) => f.write_str("JsonRows::Lines"),
        }
    }
}

/// The columns a row object gives values for, in its order.
pub fn keys_of(object: &Map<String, Value>) -> Vec<String> {
    object.keys().cloned().collect()
}

/// Reads `rows` as rows of `table` with values for the columns `listed` (others NULL, for
/// their defaults to fill), handing each batch to `emit`.
pub fn load(
    table: &TableDef,
    listed: &[String],
    rows: JsonRows,
    emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let listed = listed_columns(table, listed)?;
    let input_schema = table.input_schema();
    let given: SchemaRef = Arc::new(input_schema.project(&listed)?);
    let bad = |e: datafusion::arrow::error::ArrowError| Error::InvalidText(format!("{e}"));
    let builder = || {
        ReaderBuilder::new(given.clone())
            .with_strict_mode(true)
            .with_batch_size(BATCH_SIZE)
    };
    match rows {
        JsonRows::Objects(objects) => {
            let mut decoder = builder().build_decoder().map_err(bad)?;
            for chunk in objects.chunks(BATCH_SIZE) {
                decoder.serialize(chunk).map_err(bad)?;
                if let Some(batch) = decoder.flush().map_err(bad)? {
                    emit(widen(&input_schema, &listed, batch)?)?;
                }
            }
        }
        JsonRows::Lines(reader) => {
            for batch in builder().build(reader).map_err(bad)? {
                emit(widen(&input_schema, &listed, batch.map_err(bad)?)?)?;
            }
        }
    }
    Ok(())
}
