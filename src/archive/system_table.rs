//! `tastedb_archives`: one row per archived table — where its files go, how it is partitioned,
//! its state, how far it got (the row-id watermark, batches, rows, files and bytes published:
//! what readers of the archive see),
//! when the last batch was committed, its speed and its last error.

use crate::archive::Archives;
use crate::archive::manifest::{self, Batch};
use crate::archive::partition;
use crate::archive::runner::Status;
use crate::catalog::system_tables::{SystemTables, timestamp_type};
use crate::error::Result;
use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use std::sync::Arc;

/// The table's name.
const TABLE: &str = "tastedb_archives";

impl Archives {
    fn rows(&self) -> Result<RecordBatch> {
        let mut rows = Vec::new();
        for archive in self.records.list() {
            let running = self.lock().get(&archive.table).map(|r| r.status());
            let (status, last) = match running {
                Some(status) => {
                    let published = status.published.clone();
                    (status, published)
                }
                None => (
                    Status {
                        state: "stopped",
                        ..Status::default()
                    },
                    manifest::last(&self.store, &archive.table)?,
                ),
            };
            rows.push((archive, status, last));
        }
        let text =
            |values: Vec<Option<String>>| -> ArrayRef { Arc::new(StringArray::from(values)) };
        let number = |f: &dyn Fn(&Batch) -> u64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.2.as_ref().map_or(0, |b| f(b) as i64)),
            ))
        };
        let columns: Vec<ArrayRef> = vec![
            text(rows.iter().map(|r| Some(r.0.table.clone())).collect()),
            text(rows.iter().map(|r| Some(r.0.url.clone())).collect()),
            text(
                (rows.iter())
                    .map(|r| Some(partition::describe(&r.0.partition_by)))
                    .collect(),
            ),
            text(rows.iter().map(|r| Some(r.0.every.clone())).collect()),
            text(rows.iter().map(|r| Some(r.1.state.to_string())).collect()),
            number(&|b| b.to),
            Arc::new(Int64Array::from_iter_values(
                rows.iter()
                    .map(|r| r.2.as_ref().map_or(0, |b| b.batch as i64 + 1)),
            )),
            number(&|b| b.total_rows),
            number(&|b| b.total_files),
            number(&|b| b.total_bytes),
            Arc::new(TimestampMicrosecondArray::from_iter(
                rows.iter().map(|r| r.2.as_ref().map(|b| b.at_micros)),
            )),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.1.rows_per_second),
            )),
            text(rows.iter().map(|r| r.1.last_error.clone()).collect()),
            text(rows.iter().map(|r| r.0.owner.clone()).collect()),
        ];
        let field =
            |name: &str, data_type: DataType, nullable: bool| Field::new(name, data_type, nullable);
        let schema = Schema::new(vec![
            field("table_name", DataType::Utf8, true),
            field("url", DataType::Utf8, true),
            field("partition_by", DataType::Utf8, true),
            field("archive_every", DataType::Utf8, true),
            field("state", DataType::Utf8, true),
            field("row_id_watermark", DataType::Int64, false),
            field("batches", DataType::Int64, false),
            field("rows", DataType::Int64, false),
            field("files", DataType::Int64, false),
            field("bytes", DataType::Int64, false),
            field("last_batch_at", timestamp_type(), true),
            field("rows_per_second", DataType::Float64, false),
            field("last_error", DataType::Utf8, true),
            field("owner", DataType::Utf8, true),
        ]);
        Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
    }
}

impl SystemTables for Archives {
    fn names(&self) -> &'static [&'static str] {
        &[TABLE]
    }

    fn rows(&self, name: &str) -> Option<Result<RecordBatch>> {
        (name == TABLE).then(|| Archives::rows(self))
    }
}
