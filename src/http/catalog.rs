//! What the HTTP API lists and reads: `GET /v1/models`, `/v1/models/{model}/versions`,
//! `/v1/features/{view}?key=…`, `/v1/tables`, and `POST /v1/sql` (the console's query box,
//! run as the caller with the caller's privileges).

use crate::error::Error;
use crate::http::Api;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::roles::{Actor, Object, Privilege};
use crate::sql::names::{quote_literal, quoted_ident};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, RawQuery, State};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use utoipa::ToSchema;

/// One model.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelSummary {
    /// Its name.
    name: String,
    /// The version `recommend` serves.
    active_version: Option<u32>,
    /// How many versions it has.
    versions: usize,
    /// The active version's algorithm.
    algorithm: Option<String>,
}

/// Every model.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// The models, by name.
    models: Vec<ModelSummary>,
}

/// A model's versions, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionList {
    /// The model.
    model: String,
    /// The version `recommend` serves.
    active_version: Option<u32>,
    /// Each version as `tastedb_model_versions` records it, with its holdout metrics and its
    /// training curve (`log`: iteration, loss, seconds).
    #[schema(value_type = Vec<Object>)]
    versions: Vec<Value>,
}

/// Feature rows of keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeatureRows {
    /// The feature view.
    view: String,
    /// One row per key, in the order asked; a key without a fresh row has null features.
    #[schema(value_type = Vec<Object>)]
    rows: Vec<Value>,
}

/// A column.
#[derive(Debug, Serialize, ToSchema)]
pub struct ColumnInfo {
    /// Its name.
    name: String,
    /// Its Arrow type.
    #[serde(rename = "type")]
    data_type: String,
}

/// A stored table.
#[derive(Debug, Serialize, ToSchema)]
pub struct TableInfo {
    /// Its name.
    name: String,
    /// How many rows it has now.
    rows: i64,
    /// Its columns.
    columns: Vec<ColumnInfo>,
}

/// The tables the caller may read.
#[derive(Debug, Serialize, ToSchema)]
pub struct TableList {
    /// The tables, by name.
    tables: Vec<TableInfo>,
}

/// A SQL request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SqlRequest {
    /// One or more statements separated by `;`; the rows of the last are returned.
    sql: String,
}

/// The answer of a SQL request.
#[derive(Debug, Serialize, ToSchema)]
pub struct SqlAnswer {
    /// The command tag (`SELECT 3`, `INSERT 0 1`, …).
    command: String,
    /// The result's columns.
    columns: Vec<ColumnInfo>,
    /// The rows, each an array in column order.
    #[schema(value_type = Vec<Vec<Object>>)]
    rows: Vec<Vec<Value>>,
}

/// Every model.
#[utoipa::path(get, path = "/v1/models", tag = "models",
    responses((status = 200, body = ModelList), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn models(State(api): State<Api>, _caller: Caller) -> Json<ModelList> {
    let models = api
        .engine()
        .models()
        .models()
        .into_iter()
        .map(|entry| ModelSummary {
            algorithm: entry.active().map(|v| v.algorithm.clone()),
            active_version: entry.record.active_version,
            versions: entry.versions.len(),
            name: entry.record.name,
        })
        .collect();
    Json(ModelList { models })
}

/// A model's versions with their metrics and training curves.
#[utoipa::path(get, path = "/v1/models/{model}/versions", tag = "models",
    params(("model" = String, Path, description = "Model name")),
    responses((status = 200, body = VersionList), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn versions(
    State(api): State<Api>,
    _caller: Caller,
    Path(model): Path<String>,
) -> Result<Json<VersionList>, ApiError> {
    let entry = api.engine().models().get(&model)?;
    let versions = entry
        .versions
        .iter()
        .map(|v| version_json(v, entry.record.active_version == Some(v.version)))
        .collect();
    Ok(Json(VersionList {
        model,
        active_version: entry.record.active_version,
        versions,
    }))
}

/// A version as the API shows it: the columns of `tastedb_model_versions`, its holdout
/// metrics, training curve and phases.
fn version_json(v: &crate::models::ModelVersion, active: bool) -> Value {
    let metrics = v.metrics.as_ref().map(|m| {
        serde_json::json!({
            "k": m.k,
            "precision_at_k": m.precision,
            "recall_at_k": m.recall,
            "ndcg_at_k": m.ndcg,
            "map_at_k": m.map,
            "coverage": m.coverage,
            "evaluated_users": m.users,
        })
    });
    let created =
        datafusion::arrow::temporal_conversions::timestamp_us_to_datetime(v.created_micros)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
    serde_json::json!({
        "version": v.version,
        "active": active,
        "algorithm": v.algorithm,
        "params": v.params,
        "source": v.source,
        "events": v.events,
        "users": v.users,
        "items": v.items,
        "pairs": v.pairs,
        "train_seconds": v.train_seconds,
        "metrics": metrics,
        "created_at": created,
        "trigger": v.trigger,
        "promotion": v.promotion,
        "log": v.log.iter().map(|l| serde_json::json!({
            "iteration": l.iteration, "loss": l.loss, "seconds": l.seconds
        })).collect::<Vec<_>>(),
        "phases": v.phases.iter().map(|p| serde_json::json!({
            "phase": p.name, "seconds": p.seconds
        })).collect::<Vec<_>>(),
    })
}

/// The online feature rows of one or more keys (`?key=a&key=b`).
#[utoipa::path(get, path = "/v1/features/{view}", tag = "features",
    params(("view" = String, Path, description = "Feature view"),
        ("key" = Vec<String>, Query, description = "Entity keys, repeated")),
    responses((status = 200, body = FeatureRows), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn features(
    State(api): State<Api>,
    caller: Caller,
    Path(view): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<FeatureRows>, ApiError> {
    let keys: Vec<String> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(name, _)| name == "key")
        .map(|(_, value)| value.into_owned())
        .collect();
    if keys.is_empty() || keys.len() > 1000 {
        return Err(ApiError::bad_request(
            "give between 1 and 1000 keys: ?key=a&key=b",
        ));
    }
    api.engine().features().get(&view)?;
    let mut sql = format!("SELECT * FROM online_features({}", quote_literal(&view));
    for key in &keys {
        sql.push_str(&format!(", {}", quote_literal(key)));
    }
    sql.push(')');
    let batches = run_as(&api, &caller.0, &sql).await?;
    let mut rows = Vec::new();
    for batch in &batches {
        rows.extend(objects(batch)?.into_iter().map(Value::Object));
    }
    Ok(Json(FeatureRows { view, rows }))
}

/// The stored tables the caller may read, with their row counts.
#[utoipa::path(get, path = "/v1/tables", tag = "console",
    responses((status = 200, body = TableList), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn tables(State(api): State<Api>, caller: Caller) -> Result<Json<TableList>, ApiError> {
    let engine = api.engine();
    let users = engine.users();
    let mut tables = Vec::new();
    for name in engine.catalog().names() {
        let object = Object::table(name.clone());
        let Some(def) = engine.table_def(&name) else {
            continue;
        };
        if users.check(&caller.0, &object, Privilege::Select).is_err() {
            continue;
        }
        let count = format!("SELECT count(*) FROM {}", quoted_ident(&name));
        let rows = run_as(&api, &caller.0, &count)
            .await?
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0);
        let columns = def
            .columns
            .iter()
            .map(|c| ColumnInfo {
                name: c.name.clone(),
                data_type: c.column_type.sql_name(),
            })
            .collect();
        tables.push(TableInfo {
            name,
            rows,
            columns,
        });
    }
    Ok(Json(TableList { tables }))
}

/// Runs SQL as the caller (the console's query box).
#[utoipa::path(post, path = "/v1/sql", tag = "console",
    request_body = SqlRequest,
    responses((status = 200, body = SqlAnswer), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn sql(
    State(api): State<Api>,
    caller: Caller,
    body: Result<Json<SqlRequest>, JsonRejection>,
) -> Result<Json<SqlAnswer>, ApiError> {
    let Json(request) = body?;
    let started = std::time::Instant::now();
    let kind = crate::metrics::statement_kind(&request.sql);
    let answered = answer_sql(&api, &caller.0, &request.sql).await;
    api.engine()
        .metrics()
        .statement(&kind, answered.is_ok(), started.elapsed().as_secs_f64());
    Ok(Json(answered?))
}

/// Statements that belong to a connection's session, which an HTTP request does not have.
const SESSION_STATEMENTS: &[&str] = &[
    "SET",
    "RESET",
    "BEGIN",
    "START",
    "COMMIT",
    "END",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT",
    "RELEASE",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
    "DECLARE",
    "FETCH",
    "MOVE",
    "CLOSE",
    "DISCARD",
    "LISTEN",
    "NOTIFY",
    "UNLISTEN",
];

async fn answer_sql(api: &Api, actor: &Actor, sql: &str) -> Result<SqlAnswer, ApiError> {
    let statements = crate::engine::parse(sql)?;
    if let Some(kind) = statements.iter().find_map(session_only) {
        return Err(Error::FeatureNotSupported(format!(
            "{kind} needs a session: an HTTP request has none, use the wire protocol"
        ))
        .into());
    }
    let mut statements = statements.into_iter().peekable();
    let notices = crate::sql::notices::Notices::tracing();
    while let Some(statement) = statements.next() {
        let outcome = api.engine().execute_as(statement, actor, &notices).await?;
        if statements.peek().is_some() {
            let _: Vec<RecordBatch> = collect(outcome.into_stream()?).await?;
            continue;
        }
        return match outcome {
            crate::engine::Outcome::Done(tag) => {
                if let Some(rows) = tag.rows_written() {
                    api.engine().metrics().rows_written(rows);
                }
                Ok(SqlAnswer {
                    command: tag.to_string(),
                    columns: Vec::new(),
                    rows: Vec::new(),
                })
            }
            other => {
                let command = match &other {
                    crate::engine::Outcome::Returned { command, .. } => Some(command.clone()),
                    _ => None,
                };
                let stream = other.into_stream()?;
                let schema = stream.schema();
                let batches = collect(stream).await?;
                let mut rows = Vec::new();
                for batch in &batches {
                    rows.extend(arrays(batch)?);
                }
                let command = command.unwrap_or_else(|| format!("SELECT {}", rows.len()));
                Ok(SqlAnswer {
                    command,
                    columns: columns_of(&schema),
                    rows,
                })
            }
        };
    }
    Ok(SqlAnswer {
        command: String::new(),
        columns: Vec::new(),
        rows: Vec::new(),
    })
}

/// The first word of a statement that needs a session, if `statement` is one.
fn session_only(statement: &crate::engine::Statement) -> Option<String> {
    let text = match statement {
        crate::engine::Statement::DataFusion(s) => s.to_string(),
        crate::engine::Statement::Move(_) => "MOVE".into(),
        _ => return None,
    };
    let kind = crate::metrics::statement_kind(&text);
    SESSION_STATEMENTS.contains(&kind.as_str()).then_some(kind)
}

async fn collect(
    stream: datafusion::execution::SendableRecordBatchStream,
) -> Result<Vec<RecordBatch>, ApiError> {
    use futures::TryStreamExt;
    Ok(stream.try_collect().await.map_err(Error::from)?)
}

/// Runs one query as `actor` and collects its rows.
async fn run_as(api: &Api, actor: &Actor, sql: &str) -> Result<Vec<RecordBatch>, ApiError> {
    let mut statements = crate::engine::parse(sql)?;
    let statement = statements
        .pop()
        .ok_or_else(|| Error::Internal("an empty statement".into()))?;
    let notices = crate::sql::notices::Notices::tracing();
    let outcome = api.engine().execute_as(statement, actor, &notices).await?;
    collect(outcome.into_stream()?).await
}

fn columns_of(schema: &Schema) -> Vec<ColumnInfo> {
    schema
        .fields()
        .iter()
        .map(|f| ColumnInfo {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
        })
        .collect()
}

/// The rows of `batch` as JSON objects (arrow-json's mapping: numbers, strings, booleans,
/// timestamps as ISO text, lists as arrays; nulls kept).
fn objects(batch: &RecordBatch) -> Result<Vec<Map<String, Value>>, ApiError> {
    let mut writer = arrow_json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow_json::writer::JsonArray>(Vec::new());
    let bad = |e: &dyn std::fmt::Display| Error::Internal(format!("rows as JSON: {e}"));
    writer.write(batch).map_err(|e| bad(&e))?;
    writer.finish().map_err(|e| bad(&e))?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| bad(&e).into())
}

/// The rows of `batch` as arrays in column order (columns may share names).
fn arrays(batch: &RecordBatch) -> Result<Vec<Vec<Value>>, ApiError> {
    let mut rows: Vec<Vec<Value>> = vec![Vec::with_capacity(batch.num_columns()); batch.num_rows()];
    for (i, column) in batch.columns().iter().enumerate() {
        let field = batch.schema().field(i).clone().with_name("v");
        let single = RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![column.clone()])
            .map_err(Error::from)?;
        for (row, mut object) in rows.iter_mut().zip(objects(&single)?) {
            row.push(object.remove("v").unwrap_or(Value::Null));
        }
    }
    Ok(rows)
}
