//! The models' system tables: `tastedb_models`, `tastedb_model_versions`,
//! `tastedb_training_log`, `tastedb_training_phases` (from the registry) and
//! `tastedb_cache_stats` (the prediction cache).

use crate::catalog::system_tables::{SystemTables, timestamp_type};
use crate::error::Result;
use crate::models::ranking_table::ServingCache;
use crate::models::registry::{ModelEntry, ModelRecord, ModelRegistry, ModelVersion};
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, ListBuilder, RecordBatch, StringArray,
    StringBuilder, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl SystemTables for ModelRegistry {
    fn names(&self) -> &'static [&'static str] {
        &[
            "tastedb_models",
            "tastedb_model_versions",
            "tastedb_training_log",
            "tastedb_training_phases",
        ]
    }

    fn rows(&self, name: &str) -> Option<Result<RecordBatch>> {
        Some(match name {
            "tastedb_models" => models_batch(self),
            "tastedb_model_versions" => all_versions_batch(self),
            "tastedb_training_log" => log_batch(&self.models()),
            "tastedb_training_phases" => phases_batch(&self.models()),
            _ => return None,
        })
    }
}

impl SystemTables for ServingCache {
    fn names(&self) -> &'static [&'static str] {
        &["tastedb_cache_stats"]
    }

    fn rows(&self, name: &str) -> Option<Result<RecordBatch>> {
        (name == "tastedb_cache_stats").then(|| cache_stats_batch(self))
    }
}

/// One row per model: name, active version, number of versions, the active version's
/// algorithm, sizes, NDCG and training time, and the retraining policy with its failed runs.
pub fn models_batch(registry: &ModelRegistry) -> Result<RecordBatch> {
    let models = registry.models();
    let failures: Vec<_> = models
        .iter()
        .map(|m| registry.retrain_failure(&m.record.name))
        .collect();
    let schema = models_schema();
    let active: Vec<Option<&ModelVersion>> = models.iter().map(ModelEntry::active).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            models.iter().map(|m| &m.record.name),
        )),
        Arc::new(Int64Array::from_iter(
            models
                .iter()
                .map(|m| m.record.active_version.map(i64::from)),
        )),
        Arc::new(Int64Array::from_iter_values(
            models.iter().map(|m| m.versions.len() as i64),
        )),
        Arc::new(StringArray::from_iter(
            active.iter().map(|v| v.map(|v| v.algorithm.clone())),
        )),
        Arc::new(Int64Array::from_iter(
            active.iter().map(|v| v.map(|v| v.users as i64)),
        )),
        Arc::new(Int64Array::from_iter(
            active.iter().map(|v| v.map(|v| v.items as i64)),
        )),
        Arc::new(Float64Array::from_iter(
            active
                .iter()
                .map(|v| v.and_then(|v| v.metrics).map(|m| m.ndcg)),
        )),
        Arc::new(TimestampMicrosecondArray::from_iter(
            active.iter().map(|v| v.map(|v| v.created_micros)),
        )),
        Arc::new(StringArray::from_iter(
            models.iter().map(|m| m.record.policy.describe()),
        )),
        Arc::new(Int64Array::from_iter_values(
            failures
                .iter()
                .map(|f| f.as_ref().map_or(0, |f| i64::from(f.count))),
        )),
        Arc::new(StringArray::from_iter(
            failures.iter().map(|f| f.as_ref().map(|f| f.error.clone())),
        )),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The columns of `tastedb_models` (and `SHOW MODELS`).
pub fn models_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("active_version", DataType::Int64, true),
        Field::new("versions", DataType::Int64, false),
        Field::new("algorithm", DataType::Utf8, true),
        Field::new("users", DataType::Int64, true),
        Field::new("items", DataType::Int64, true),
        Field::new("ndcg_at_k", DataType::Float64, true),
        Field::new("trained_at", timestamp_type(), true),
        Field::new("retrain_policy", DataType::Utf8, true),
        Field::new("retrain_failures", DataType::Int64, false),
        Field::new("retrain_error", DataType::Utf8, true),
    ]))
}

fn all_versions_batch(registry: &ModelRegistry) -> Result<RecordBatch> {
    let models = registry.models();
    let rows: Vec<(&ModelVersion, &ModelRecord)> = models
        .iter()
        .flat_map(|m| m.versions.iter().map(move |v| (v, &m.record)))
        .collect();
    versions_rows(&rows, registry)
}

/// One row per version of `versions`, all of the model `record`, in `registry`.
pub fn versions_batch(
    versions: &[ModelVersion],
    record: &ModelRecord,
    registry: &ModelRegistry,
) -> Result<RecordBatch> {
    let rows: Vec<_> = versions.iter().map(|v| (v, record)).collect();
    versions_rows(&rows, registry)
}

/// The columns of `tastedb_model_versions` (and of what TRAIN and EVALUATE MODEL return).
pub fn versions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("version", DataType::Int64, false),
        Field::new("active", DataType::Boolean, false),
        Field::new("aliases", aliases_type(), false),
        Field::new("algorithm", DataType::Utf8, false),
        Field::new("params", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("events", DataType::Int64, false),
        Field::new("users", DataType::Int64, false),
        Field::new("items", DataType::Int64, false),
        Field::new("train_seconds", DataType::Float64, false),
        Field::new("k", DataType::Int64, true),
        Field::new("precision_at_k", DataType::Float64, true),
        Field::new("recall_at_k", DataType::Float64, true),
        Field::new("ndcg_at_k", DataType::Float64, true),
        Field::new("map_at_k", DataType::Float64, true),
        Field::new("coverage", DataType::Float64, true),
        Field::new("evaluated_users", DataType::Int64, true),
        Field::new("created_at", timestamp_type(), false),
        Field::new("trigger", DataType::Utf8, false),
        Field::new("promotion", DataType::Utf8, false),
        Field::new("graphs", DataType::Utf8, true),
    ]))
}

fn versions_rows(
    rows: &[(&ModelVersion, &ModelRecord)],
    registry: &ModelRegistry,
) -> Result<RecordBatch> {
    let schema = versions_schema();
    let metric = |f: fn(&crate::ml::Metrics) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter(
            rows.iter().map(|(v, _)| v.metrics.as_ref().map(f)),
        ))
    };
    let int = |f: fn(&ModelVersion) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|(v, _)| f(v))))
    };
    let text = |f: fn(&ModelVersion) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(v, _)| f(v)),
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        text(|v| v.model.clone()),
        int(|v| i64::from(v.version)),
        Arc::new(BooleanArray::from_iter(
            rows.iter()
                .map(|(v, r)| Some(r.active_version == Some(v.version))),
        )),
        aliases_column(rows),
        text(|v| v.algorithm.clone()),
        text(|v| serde_json::to_string(&v.params).unwrap_or_default()),
        text(|v| v.source.clone()),
        int(|v| v.events as i64),
        int(|v| v.users as i64),
        int(|v| v.items as i64),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|(v, _)| v.train_seconds),
        )),
        Arc::new(Int64Array::from_iter(
            rows.iter().map(|(v, _)| v.metrics.map(|m| m.k as i64)),
        )),
        metric(|m| m.precision),
        metric(|m| m.recall),
        metric(|m| m.ndcg),
        metric(|m| m.map),
        metric(|m| m.coverage),
        Arc::new(Int64Array::from_iter(
            rows.iter().map(|(v, _)| v.metrics.map(|m| m.users as i64)),
        )),
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            rows.iter().map(|(v, _)| v.created_micros),
        )),
        text(|v| v.trigger.clone()),
        text(|v| v.promotion.clone()),
        Arc::new(StringArray::from_iter(
            rows.iter()
                .map(|(v, _)| registry.graphs_state(&v.model, v.version)),
        )),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// `text[]`.
fn aliases_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// The aliases of each version, by name.
fn aliases_column(rows: &[(&ModelVersion, &ModelRecord)]) -> ArrayRef {
    let mut aliases = ListBuilder::new(StringBuilder::new());
    for (version, record) in rows {
        for (alias, _) in record
            .aliases
            .iter()
            .filter(|(_, n)| **n == version.version)
        {
            aliases.values().append_value(alias);
        }
        aliases.append(true);
    }
    Arc::new(aliases.finish())
}

fn log_batch(models: &[ModelEntry]) -> Result<RecordBatch> {
    let lines: Vec<_> = models
        .iter()
        .flat_map(|m| &m.versions)
        .flat_map(|v| v.log.iter().map(move |line| (v, line)))
        .collect();
    let schema = Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("version", DataType::Int64, false),
        Field::new("iteration", DataType::Int64, false),
        Field::new("loss", DataType::Float64, false),
        Field::new("seconds", DataType::Float64, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            lines.iter().map(|(v, _)| &v.model),
        )),
        Arc::new(Int64Array::from_iter_values(
            lines.iter().map(|(v, _)| i64::from(v.version)),
        )),
        Arc::new(Int64Array::from_iter_values(
            lines.iter().map(|(_, l)| l.iteration as i64),
        )),
        Arc::new(Float64Array::from_iter_values(
            lines.iter().map(|(_, l)| l.loss),
        )),
        Arc::new(Float64Array::from_iter_values(
            lines.iter().map(|(_, l)| l.seconds),
        )),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

/// One row per phase of each version's TRAIN, in the order they ran.
fn phases_batch(models: &[ModelEntry]) -> Result<RecordBatch> {
    let phases: Vec<_> = (models.iter())
        .flat_map(|m| &m.versions)
        .flat_map(|v| v.phases.iter().enumerate().map(move |p| (v, p)))
        .collect();
    let schema = Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("version", DataType::Int64, false),
        Field::new("position", DataType::Int64, false),
        Field::new("phase", DataType::Utf8, false),
        Field::new("seconds", DataType::Float64, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            phases.iter().map(|(v, _)| &v.model),
        )),
        Arc::new(Int64Array::from_iter_values(
            phases.iter().map(|(v, _)| i64::from(v.version)),
        )),
        Arc::new(Int64Array::from_iter_values(
            phases.iter().map(|(_, (i, _))| *i as i64 + 1),
        )),
        Arc::new(StringArray::from_iter_values(
            phases.iter().map(|(_, (_, p))| &p.name),
        )),
        Arc::new(Float64Array::from_iter_values(
            phases.iter().map(|(_, (_, p))| p.seconds),
        )),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

/// One row: the prediction cache's counters and size.
fn cache_stats_batch(cache: &ServingCache) -> Result<RecordBatch> {
    let stats = &cache.stats;
    let count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as i64;
    let schema = Arc::new(Schema::new(
        ["hits", "misses", "evictions", "invalidations", "entries"]
            .map(|name| Field::new(name, DataType::Int64, false))
            .to_vec(),
    ));
    let values = [
        count(&stats.hits),
        count(&stats.misses),
        count(&stats.evictions),
        count(&stats.invalidations),
        cache.len() as i64,
    ];
    let columns: Vec<ArrayRef> = values
        .iter()
        .map(|v| Arc::new(Int64Array::from(vec![*v])) as ArrayRef)
        .collect();
    Ok(RecordBatch::try_new(schema, columns)?)
}
