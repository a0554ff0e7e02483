//! `tastedb_sources`: one row per source and partition — where it stands (the next offset
//! committed, the high watermark last seen and the lag between them), its state, rows
//! committed and dead letters since it started, rows per second, and its last error.

use crate::catalog::system_tables::{SystemTables, timestamp_type};
use crate::error::Result;
use crate::sources::runner::Status;
use crate::sources::statements::shown_options;
use crate::sources::{Source, Sources};
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use std::sync::Arc;

/// The table's name.
const TABLE: &str = "tastedb_sources";

/// A source, its status, and one of its partitions with its next and high offsets.
type Row = (Source, Status, Option<i32>, Option<i64>, Option<i64>);

impl Sources {
    fn rows(&self) -> Result<RecordBatch> {
        let mut rows = Vec::new();
        for source in self.records.list() {
            let status = (self.lock().get(&source.name))
                .map(|r| r.status())
                .unwrap_or(Status {
                    state: "stopped",
                    ..Status::default()
                });
            let partitions: Vec<(Option<i32>, Option<i64>, Option<i64>)> =
                match status.partitions.is_empty() {
                    true => vec![(None, None, None)],
                    false => (status.partitions.iter())
                        .map(|(&p, &(next, high))| (Some(p), Some(next), high))
                        .collect(),
                };
            for (partition, next, high) in partitions {
                rows.push((source.clone(), status.clone(), partition, next, high));
            }
        }
        let rows: Vec<Row> = rows;
        let text = |f: &dyn Fn(&Row) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from_iter(rows.iter().map(f)))
        };
        let columns: Vec<ArrayRef> = vec![
            text(&|r| Some(r.0.name.clone())),
            text(&|r| Some(r.0.table.clone())),
            text(&|r| Some(r.0.topic.clone())),
            text(&|r| Some(format!("{:?}", r.0.format).to_lowercase())),
            text(&|r| Some(r.1.state.to_string())),
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|r| Some(r.0.paused)),
            )),
            Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.2))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.3))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.4))),
            Arc::new(Int64Array::from_iter(
                rows.iter().map(|r| Some(r.4? - r.3?).map(|lag| lag.max(0))),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.1.rows as i64),
            )),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.1.rows_per_second),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.1.dead_letters as i64),
            )),
            text(&|r| r.1.last_error.clone()),
            text(&|r| Some(shown_options(&r.0))),
            text(&|r| r.0.owner.clone()),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| r.0.created_micros),
            )),
        ];
        let field =
            |name: &str, data_type: DataType, nullable: bool| Field::new(name, data_type, nullable);
        let schema = Schema::new(vec![
            field("name", DataType::Utf8, true),
            field("table_name", DataType::Utf8, true),
            field("topic", DataType::Utf8, true),
            field("format", DataType::Utf8, true),
            field("state", DataType::Utf8, true),
            field("paused", DataType::Boolean, true),
            field("kafka_partition", DataType::Int32, true),
            field("committed_offset", DataType::Int64, true),
            field("high_watermark", DataType::Int64, true),
            field("lag", DataType::Int64, true),
            field("rows", DataType::Int64, false),
            field("rows_per_second", DataType::Float64, false),
            field("dead_letters", DataType::Int64, false),
            field("last_error", DataType::Utf8, true),
            field("options", DataType::Utf8, true),
            field("owner", DataType::Utf8, true),
            field("created_at", timestamp_type(), false),
        ]);
        Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
    }
}

impl SystemTables for Sources {
    fn names(&self) -> &'static [&'static str] {
        &[TABLE]
    }

    fn rows(&self, name: &str) -> Option<Result<RecordBatch>> {
        (name == TABLE).then(|| Sources::rows(self))
    }
}
