//! The feature store's system table, `tastedb_feature_views`.

use crate::catalog::system_tables::{SystemTables, timestamp_type};
use crate::error::Result;
use crate::features::{FeatureView, FeatureViews, Materialized};
use datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::sync::Arc;

impl SystemTables for FeatureViews {
    fn names(&self) -> &'static [&'static str] {
        &["tastedb_feature_views"]
    }

    fn rows(&self, name: &str) -> Option<Result<RecordBatch>> {
        (name == "tastedb_feature_views").then(|| feature_views_batch(&self.list()))
    }
}

/// The columns of `tastedb_feature_views` (and `SHOW FEATURE VIEWS`).
pub fn feature_views_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("entity", DataType::Utf8, false),
        Field::new("timestamp_column", DataType::Utf8, false),
        Field::new("ttl", DataType::Utf8, true),
        Field::new("definition", DataType::Utf8, false),
        Field::new("created_at", timestamp_type(), false),
        Field::new("last_materialized", timestamp_type(), true),
        Field::new("last_mode", DataType::Utf8, true),
        Field::new("rows", DataType::Int64, false),
    ]))
}

/// One row per feature view.
pub fn feature_views_batch(views: &[FeatureView]) -> Result<RecordBatch> {
    let done = |f: &dyn Fn(&Materialized) -> Option<i64>| -> Vec<Option<i64>> {
        views
            .iter()
            .map(|v| v.materialized.as_ref().and_then(f))
            .collect()
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(views.iter().map(|v| &v.name))),
        Arc::new(StringArray::from_iter_values(
            views.iter().map(|v| &v.entity),
        )),
        Arc::new(StringArray::from_iter_values(
            views.iter().map(|v| &v.timestamp),
        )),
        Arc::new(StringArray::from_iter(views.iter().map(|v| v.ttl.clone()))),
        Arc::new(StringArray::from_iter_values(
            views.iter().map(|v| &v.definition),
        )),
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            views.iter().map(|v| v.created_micros),
        )),
        Arc::new(TimestampMicrosecondArray::from(done(&|m| {
            Some(m.at_micros)
        }))),
        Arc::new(StringArray::from_iter(
            views
                .iter()
                .map(|v| v.materialized.as_ref().map(|m| m.mode.name())),
        )),
        Arc::new(Int64Array::from_iter_values(
            done(&|m| Some(m.rows as i64))
                .into_iter()
                .map(|r| r.unwrap_or(0)),
        )),
    ];
    Ok(RecordBatch::try_new(feature_views_schema(), columns)?)
}
