//! The vector indexes' system table, `tastedb_indexes`.

use crate::catalog::system_tables::SystemTables;
use crate::error::Result;
use crate::vectors::column_index::{IndexStatus, VectorIndexes};
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use std::sync::Arc;

impl SystemTables for VectorIndexes {
    fn names(&self) -> &'static [&'static str] {
        &["tastedb_indexes"]
    }

    fn rows(&self, name: &str) -> Option<Result<RecordBatch>> {
        (name == "tastedb_indexes").then(|| indexes_batch(&self.list()))
    }
}

/// One row per vector index: definition, rows in its graph and rows searched exactly (NULL
/// until the index is first used after a start).
fn indexes_batch(indexes: &[IndexStatus]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("m", DataType::Int64, false),
        Field::new("ef_construction", DataType::Int64, false),
        Field::new("indexed_rows", DataType::Int64, true),
        Field::new("pending_rows", DataType::Int64, true),
    ]));
    let text = |f: &dyn Fn(&IndexStatus) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(indexes.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|i| &i.def.name),
        text(&|i| &i.def.table),
        text(&|i| &i.def.column),
        text(&|i| i.def.metric.name()),
        Arc::new(Int64Array::from_iter_values(
            indexes.iter().map(|i| i.def.m as i64),
        )),
        Arc::new(Int64Array::from_iter_values(
            indexes.iter().map(|i| i.def.ef_construction as i64),
        )),
        Arc::new(Int64Array::from_iter(
            indexes.iter().map(|i| i.indexed_rows.map(|n| n as i64)),
        )),
        Arc::new(Int64Array::from_iter(
            indexes.iter().map(|i| i.pending_rows.map(|n| n as i64)),
        )),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}
