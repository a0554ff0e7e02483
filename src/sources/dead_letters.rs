//! The dead letters of every source: `tastedb_source_errors`, one row per message that could
//! not become rows (it does not parse, does not fit the table, or is too large) — the source,
//! the message's partition and offset, its payload cut to [`PAYLOAD_BYTES`], the error and when.
//! Created on first use, append-only (as the impression log), kept 30 days.

use crate::catalog::Catalog;
use crate::clock::now_micros;
use crate::error::{Error, Result};
use crate::schema::{ColumnDef, ColumnType, Retention, TableDef, TableLayout};
use crate::storage::StoredTable;
use datafusion::arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use std::sync::Arc;

/// The table's name.
pub const ERRORS_TABLE: &str = "tastedb_source_errors";

/// Bytes of a message's payload kept in its dead letter.
pub const PAYLOAD_BYTES: usize = 1024;

/// Retention of a new table.
const TTL_DAYS: i64 = 30;

/// A message set aside.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its payload (cut when written).
    pub payload: Vec<u8>,
    /// Why it was set aside.
    pub error: String,
}

/// The table, created if it does not exist.
pub fn table(catalog: &Catalog) -> Result<Arc<StoredTable>> {
    if let Some(table) = catalog.get(ERRORS_TABLE) {
        return Ok(table);
    }
    catalog.create(definition(), true)?;
    catalog
        .get(ERRORS_TABLE)
        .ok_or_else(|| Error::UndefinedTable(ERRORS_TABLE.into()))
}

/// The rows of `letters` of the source `source`, in the table's column order.
pub fn rows(source: &str, letters: &[DeadLetter], def: &TableDef) -> Result<RecordBatch> {
    let n = letters.len();
    let payload = |letter: &DeadLetter| {
        let cut = &letter.payload[..letter.payload.len().min(PAYLOAD_BYTES)];
        String::from_utf8_lossy(cut).into_owned()
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![source; n])),
        Arc::new(Int32Array::from_iter_values(
            letters.iter().map(|l| l.partition),
        )),
        Arc::new(Int64Array::from_iter_values(
            letters.iter().map(|l| l.offset),
        )),
        Arc::new(StringArray::from_iter_values(letters.iter().map(payload))),
        Arc::new(Int64Array::from_iter_values(
            letters.iter().map(|l| l.payload.len() as i64),
        )),
        Arc::new(StringArray::from_iter_values(
            letters.iter().map(|l| &l.error),
        )),
        Arc::new(TimestampMicrosecondArray::from(vec![now_micros(); n])),
    ];
    Ok(RecordBatch::try_new(def.input_schema(), columns)?)
}

fn definition() -> TableDef {
    let column = |name: &str, column_type: ColumnType| ColumnDef {
        name: name.to_string(),
        column_type,
        nullable: false,
        default: None,
    };
    let columns = vec![
        column("source", ColumnType::Text),
        column("kafka_partition", ColumnType::Int),
        column("kafka_offset", ColumnType::BigInt),
        column("payload", ColumnType::Text),
        column("payload_bytes", ColumnType::BigInt),
        column("error", ColumnType::Text),
        column("failed_at", ColumnType::Timestamp),
    ];
    let failed_at = columns.len() - 1;
    TableDef {
        id: 0,
        name: ERRORS_TABLE.to_string(),
        columns,
        primary_key: Vec::new(),
        indexes: Vec::new(),
        retention: Some(Retention {
            column: failed_at,
            ttl_micros: TTL_DAYS * 86_400_000_000,
            ttl: format!("{TTL_DAYS} days"),
        }),
        layout: TableLayout::AppendOnlyBlocks,
    }
}
