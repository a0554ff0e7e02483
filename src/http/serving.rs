//! Recommendations over HTTP: `GET /v1/models/{model}/recommend`, `POST` of the same for many
//! users, and `GET /v1/models/{model}/similar`. Each runs the same prepared statement a
//! client would run over the wire (`SELECT … FROM recommend('model', $1, $2)`), kept per role
//! and shape, so a request takes the serving fast path and the prediction cache, and is
//! checked against the caller's privileges by the engine.

use crate::engine::{Outcome, Prepared};
use crate::error::Error;
use crate::http::Api;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::models::{Pin, serving_stamp};
use crate::roles::Actor;
use crate::sql::names::quote_literal;
use crate::sql::notices::Notices;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::{ParamValues, ScalarValue};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// Items in an answer when `k` is not given.
const DEFAULT_K: i64 = 10;
/// Users in one batch request, at most.
const MAX_BATCH_USERS: usize = 1000;

/// The query string of `GET …/recommend`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecommendQuery {
    /// The user id.
    user: String,
    /// How many items (default 10).
    k: Option<i64>,
    /// A named filter (`CREATE FILTER`): only the items it lists.
    filter: Option<String>,
    /// Rank exactly instead of through the HNSW graph.
    exact: Option<bool>,
}

/// The query string of `GET …/similar`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SimilarQuery {
    /// The item id.
    item: String,
    /// How many items (default 10).
    k: Option<i64>,
    /// A named filter (`CREATE FILTER`): only the items it lists.
    filter: Option<String>,
    /// Rank exactly instead of through the HNSW graph.
    exact: Option<bool>,
}

/// A user or item id: text, or an integer for models trained on BIGINT ids.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Id {
    /// A text id.
    Text(String),
    /// An integer id.
    Number(i64),
}

impl Id {
    fn text(&self) -> String {
        match self {
            Id::Text(text) => text.clone(),
            Id::Number(n) => n.to_string(),
        }
    }
}

/// The body of `POST …/recommend`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct BatchRequest {
    /// The users, at most 1,000.
    users: Vec<Id>,
    /// How many items per user (default 10).
    k: Option<i64>,
    /// A named filter.
    filter: Option<String>,
}

/// One recommended or similar item.
#[derive(Debug, Serialize, ToSchema)]
pub struct RankedItem {
    /// The item id.
    item: Id,
    /// Its score (higher is better).
    score: f64,
    /// Its rank, from 1.
    rank: i64,
}

/// The items recommended to one user.
#[derive(Debug, Serialize, ToSchema)]
pub struct Recommendation {
    /// The model.
    model: String,
    /// The version that answered.
    version: u32,
    /// The user.
    user: String,
    /// Whether the user was unknown and had no events (the most popular items).
    cold_start: bool,
    /// Whether events newer than the version changed the answer.
    folded_in: bool,
    /// The items, best first.
    items: Vec<RankedItem>,
}

/// The answers of a batch request, in the order of its users.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchRecommendation {
    /// The model.
    model: String,
    /// One answer per user.
    results: Vec<Recommendation>,
}

/// The items most similar to one item.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimilarItems {
    /// The model.
    model: String,
    /// The version that answered.
    version: u32,
    /// The item asked about.
    item: String,
    /// The items, most similar first.
    items: Vec<RankedItem>,
}

/// Recommendations for one user.
#[utoipa::path(get, path = "/v1/models/{model}/recommend", tag = "serving",
    params(("model" = String, Path, description = "Model name"), RecommendQuery),
    responses((status = 200, body = Recommendation), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn recommend(
    State(api): State<Api>,
    caller: Caller,
    Path(model): Path<String>,
    query: Result<Query<RecommendQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let shape = Shape::of_recommend(&api, &model, query.filter.as_deref(), query.exact)?;
    let k = k_of(query.k)?;
    let body = shape
        .recommend_body(&api, &caller.0, &query.user, k)
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Recommendations for many users at once.
#[utoipa::path(post, path = "/v1/models/{model}/recommend", tag = "serving",
    params(("model" = String, Path, description = "Model name")),
    request_body = BatchRequest,
    responses((status = 200, body = BatchRecommendation), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn recommend_many(
    State(api): State<Api>,
    caller: Caller,
    Path(model): Path<String>,
    body: Result<Json<BatchRequest>, JsonRejection>,
) -> Result<Json<BatchRecommendation>, ApiError> {
    let Json(request) = body?;
    if request.users.len() > MAX_BATCH_USERS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_BATCH_USERS} users per request, not {}",
            request.users.len()
        )));
    }
    let shape = Shape::of_recommend(&api, &model, request.filter.as_deref(), None)?;
    let k = k_of(request.k)?;
    let mut results = Vec::with_capacity(request.users.len());
    for user in &request.users {
        results.push(shape.recommend(&api, &caller.0, &user.text(), k).await?);
    }
    Ok(Json(BatchRecommendation { model, results }))
}

/// The items most similar to one item.
#[utoipa::path(get, path = "/v1/models/{model}/similar", tag = "serving",
    params(("model" = String, Path, description = "Model name"), SimilarQuery),
    responses((status = 200, body = SimilarItems), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn similar(
    State(api): State<Api>,
    caller: Caller,
    Path(model): Path<String>,
    query: Result<Query<SimilarQuery>, QueryRejection>,
) -> Result<Json<SimilarItems>, ApiError> {
    let Query(query) = query?;
    let shape = Shape::of_similar(&api, &model, query.filter.as_deref(), query.exact)?;
    let k = k_of(query.k)?;
    let answer = shape.run(&api, &caller.0, &query.item, k).await?;
    Ok(Json(SimilarItems {
        model,
        version: answer.version,
        item: query.item,
        items: items(&answer.rows)?,
    }))
}

fn k_of(k: Option<i64>) -> Result<i64, ApiError> {
    match k.unwrap_or(DEFAULT_K) {
        k if (1..=10_000).contains(&k) => Ok(k),
        k => Err(ApiError::bad_request(format!(
            "k must be between 1 and 10000, not {k}"
        ))),
    }
}

/// One ranking statement: its SQL, from the model and options of a request.
struct Shape {
    model: String,
    sql: String,
}

impl Shape {
    fn of_recommend(
        api: &Api,
        model: &str,
        filter: Option<&str>,
        exact: Option<bool>,
    ) -> Result<Shape, ApiError> {
        let columns = "item_id, score, rank, cold_start, folded_in";
        Shape::new(api, "recommend", columns, model, filter, exact)
    }

    fn of_similar(
        api: &Api,
        model: &str,
        filter: Option<&str>,
        exact: Option<bool>,
    ) -> Result<Shape, ApiError> {
        Shape::new(
            api,
            "similar_items",
            "item_id, score, rank",
            model,
            filter,
            exact,
        )
    }

    fn new(
        api: &Api,
        function: &str,
        columns: &str,
        model: &str,
        filter: Option<&str>,
        exact: Option<bool>,
    ) -> Result<Shape, ApiError> {
        // (a cheap check first: `get` copies the model's versions, for its error only)
        let engine = api.engine();
        let (models, experiments) = (engine.models(), engine.experiments());
        if serving_stamp(models, experiments, model, "").is_none()
            && experiments.get(model).is_none()
        {
            models.get(Pin::split(model).0)?;
        }
        let mut sql = format!(
            "SELECT {columns} FROM {function}({}, $1, $2",
            quote_literal(model)
        );
        if let Some(filter) = filter {
            // only a filter's name: the request never carries SQL
            if api.engine().filters().get(filter).is_none() {
                return Err(
                    Error::UndefinedObject(format!("filter \"{filter}\" does not exist")).into(),
                );
            }
            sql.push_str(&format!(", filter => {}", quote_literal(filter)));
        }
        if exact == Some(true) {
            sql.push_str(", exact => true");
        }
        sql.push(')');
        Ok(Shape {
            model: model.to_string(),
            sql,
        })
    }

    async fn recommend(
        &self,
        api: &Api,
        actor: &Actor,
        user: &str,
        k: i64,
    ) -> Result<Recommendation, ApiError> {
        let answer = self.run(api, actor, user, k).await?;
        self.recommendation(user, &answer)
    }

    fn recommendation(&self, user: &str, answer: &Answer) -> Result<Recommendation, ApiError> {
        let batch = &answer.rows;
        let flag = |column: usize| {
            batch
                .column(column)
                .as_boolean_opt()
                .is_some_and(|flags| !flags.is_empty() && flags.value(0))
        };
        Ok(Recommendation {
            model: self.model.clone(),
            version: answer.version,
            user: user.to_string(),
            cold_start: flag(3),
            folded_in: flag(4),
            items: items(batch)?,
        })
    }

    /// The JSON body of `recommend` for `user`: for rows reused from the prediction cache, the
    /// body made for them before.
    async fn recommend_body(
        &self,
        api: &Api,
        actor: &Actor,
        user: &str,
        k: i64,
    ) -> Result<Bytes, ApiError> {
        let answer = self.run(api, actor, user, k).await?;
        let encode = || -> Result<Bytes, ApiError> {
            let body = serde_json::to_vec(&self.recommendation(user, &answer)?)
                .map_err(|e| Error::Internal(format!("an answer as JSON: {e}")))?;
            Ok(Bytes::from(body))
        };
        match answer.reused {
            true => api
                .bodies
                .get_or_encode(&answer.rows, answer.version, user, encode),
            false => encode(),
        }
    }

    /// Runs the statement for `id` and `k`: the version that answered and its rows.
    async fn run(&self, api: &Api, actor: &Actor, id: &str, k: i64) -> Result<Answer, ApiError> {
        let prepared = api.prepared(actor, &self.sql).await?;
        let id_type = prepared
            .parameter_types()
            .first()
            .cloned()
            .unwrap_or(DataType::Utf8);
        let id_value = match id_type {
            DataType::Utf8 => ScalarValue::Utf8(Some(id.to_string())),
            _ => ScalarValue::try_from_string(id.to_string(), &id_type).map_err(|_| {
                Error::InvalidText(format!(
                    "invalid input syntax for type {id_type}: \"{id}\" (the model's ids are integers)"
                ))
            })?,
        };
        // the version that answered: the active one before and after the ranking, the same
        for _ in 0..3 {
            let engine = api.engine();
            let (models, experiments) = (engine.models(), engine.experiments());
            let before = serving_stamp(models, experiments, &self.model, id);
            let values = ParamValues::List(vec![
                id_value.clone().into(),
                ScalarValue::Int64(Some(k)).into(),
            ]);
            let outcome = engine
                .execute_prepared_as(&prepared, values, actor, &Notices::tracing())
                .await?;
            let (rows, reused) = match outcome {
                Outcome::Batch { rows, reused } => (rows, reused),
                other => {
                    let stream = other.into_stream()?;
                    let schema = stream.schema();
                    let batches: Vec<RecordBatch> =
                        stream.try_collect().await.map_err(Error::from)?;
                    let rows = datafusion::arrow::compute::concat_batches(&schema, &batches)
                        .map_err(Error::from)?;
                    (rows, false)
                }
            };
            let after = serving_stamp(models, experiments, &self.model, id);
            if let (Some(before), true) = (before, before == after) {
                return Ok(Answer {
                    version: before.0,
                    rows,
                    reused,
                });
            }
        }
        Err(Error::ObjectInUse(format!(
            "model \"{}\" changed the version it serves during the request; try again",
            self.model
        ))
        .into())
    }
}

/// A ranking's rows and the version that answered; `reused` when the rows are the very arrays
/// of an earlier (cached) answer.
struct Answer {
    version: u32,
    rows: RecordBatch,
    reused: bool,
}

/// The (item_id, score, rank) rows of a ranking.
fn items(batch: &RecordBatch) -> Result<Vec<RankedItem>, ApiError> {
    let mismatch = || Error::Internal("a ranking with unexpected columns".into());
    let scores = batch
        .column(1)
        .as_primitive_opt::<Float64Type>()
        .ok_or_else(mismatch)?;
    let ranks = batch
        .column(2)
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(mismatch)?;
    let ids = batch.column(0);
    let mut items = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let item = match ids.data_type() {
            DataType::Int64 => Id::Number(ids.as_primitive::<Int64Type>().value(row)),
            _ => Id::Text(
                ids.as_string_opt::<i32>()
                    .ok_or_else(mismatch)?
                    .value(row)
                    .to_string(),
            ),
        };
        items.push(RankedItem {
            item,
            score: scores.value(row),
            rank: ranks.value(row),
        });
    }
    Ok(items)
}

/// The JSON bodies of cached rankings, by the address of their rows' arrays and the version:
/// an entry holds the arrays, so no other answer can take their address while it lives (as
/// the wire server's `EncodedAnswers` does). Cleared when full.
#[derive(Debug, Default)]
pub struct EncodedBodies {
    bodies: std::sync::Mutex<std::collections::HashMap<(usize, u32), Encoded>>,
}

/// One kept body: the arrays it was made from, the user id as the request wrote it.
#[derive(Debug)]
struct Encoded {
    _rows: RecordBatch,
    user: String,
    body: Bytes,
}

/// Bodies kept at most.
const MAX_BODIES: usize = 8192;

impl EncodedBodies {
    fn get_or_encode(
        &self,
        rows: &RecordBatch,
        version: u32,
        user: &str,
        encode: impl FnOnce() -> Result<Bytes, ApiError>,
    ) -> Result<Bytes, ApiError> {
        let Some(first) = rows.columns().first() else {
            return encode();
        };
        let key = (Arc::as_ptr(first) as *const () as usize, version);
        let lock = || self.bodies.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(kept) = lock().get(&key)
            && kept.user == user
        {
            return Ok(kept.body.clone());
        }
        let body = encode()?;
        let mut bodies = lock();
        if bodies.len() >= MAX_BODIES {
            bodies.clear();
        }
        let kept = Encoded {
            _rows: rows.clone(),
            user: user.to_string(),
            body: body.clone(),
        };
        bodies.insert(key, kept);
        Ok(body)
    }
}

/// Prepared ranking statements, per role and SQL text.
#[derive(Debug, Default)]
pub struct PreparedShapes {
    shapes: std::sync::Mutex<std::collections::HashMap<(String, String), Arc<Prepared>>>,
}

/// Shapes kept at most; past it the cache starts again.
const MAX_SHAPES: usize = 4096;

impl Api {
    /// The prepared statement of `sql` for `actor`, prepared now if it is not kept or the
    /// catalog changed since.
    async fn prepared(&self, actor: &Actor, sql: &str) -> Result<Arc<Prepared>, ApiError> {
        let role = match actor {
            Actor::Role(role) => role.clone(),
            Actor::Embedder => String::new(),
        };
        let key = (role, sql.to_string());
        let lock = |shapes: &PreparedShapes| {
            shapes
                .shapes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned()
        };
        if let Some(prepared) = lock(&self.shapes)
            && prepared.is_current(&self.engine())
        {
            return Ok(prepared);
        }
        let mut statements = crate::engine::parse(sql)?;
        let statement = statements
            .pop()
            .ok_or_else(|| Error::Internal("an empty ranking statement".into()))?;
        let prepared = Arc::new(self.engine().prepare_as(statement, actor).await?);
        let mut shapes = self.shapes.shapes.lock().unwrap_or_else(|p| p.into_inner());
        if shapes.len() >= MAX_SHAPES {
            shapes.clear();
        }
        shapes.insert(key, prepared.clone());
        Ok(prepared)
    }
}
