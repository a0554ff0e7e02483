//! `POST /v1/tables/{table}/rows`, the event tracker: a JSON array of row objects
//! (`application/json`), or newline-delimited objects streamed as they arrive
//! (`application/x-ndjson`) for large batches. All rows or none, durable when the answer is
//! 2xx (as INSERT and COPY, through the same bulk insert).

use crate::error::Error;
use crate::http::Api;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::sql::json_rows::{JsonRows, keys_of};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use futures::{Stream, StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{Map, Value};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_util::io::{StreamReader, SyncIoBridge};
use utoipa::ToSchema;

/// The answer of an insert.
#[derive(Debug, Serialize, ToSchema)]
pub struct Inserted {
    /// The table.
    table: String,
    /// Rows inserted.
    rows: u64,
}

/// Inserts rows: a JSON array of objects, or NDJSON (`Content-Type: application/x-ndjson`).
/// The first object's keys are the columns given; the others take their defaults.
#[utoipa::path(post, path = "/v1/tables/{table}/rows", tag = "tables",
    params(("table" = String, Path, description = "Table name")),
    request_body(content = Vec<Object>, description = "Row objects: a JSON array, or one object per line as application/x-ndjson",
        content_type = "application/json"),
    responses((status = 200, body = Inserted), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn insert(
    State(api): State<Api>,
    caller: Caller,
    Path(table): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Inserted>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let rows = match essence {
        "application/x-ndjson" | "application/jsonl" | "application/json-seq" => {
            return insert_lines(&api, &caller, table, body).await;
        }
        "application/json" => {
            let limit = api.limits.body_bytes;
            let bytes = axum::body::to_bytes(body, limit)
                .await
                .map_err(|_| ApiError::too_large(limit as u64))?;
            objects_of(&bytes)?
        }
        _ => {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "22023",
                "send rows as application/json (an array of objects) or application/x-ndjson",
            ));
        }
    };
    let listed = rows.first().map(keys_of).unwrap_or_default();
    let inserted = api
        .engine()
        .insert_json(&table, &caller.0, listed, JsonRows::Objects(rows))
        .await?;
    api.engine().metrics().rows_written(inserted);
    Ok(Json(Inserted {
        table,
        rows: inserted,
    }))
}

/// The objects of a JSON array body.
fn objects_of(bytes: &[u8]) -> Result<Vec<Map<String, Value>>, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "22P02",
            format!("the body is not JSON: {e}"),
        )
    })?;
    let Value::Array(items) = value else {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "42804",
            "the body must be a JSON array of row objects",
        ));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(object) => Ok(object),
            _ => Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "42804",
                format!("row {} is not a JSON object", i + 1),
            )),
        })
        .collect()
}

type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Streams NDJSON rows into the table, reading the body as the insert consumes it.
async fn insert_lines(
    api: &Api,
    caller: &Caller,
    table: String,
    body: Body,
) -> Result<Json<Inserted>, ApiError> {
    let limit = api.limits.stream_bytes;
    let exceeded = Arc::new(AtomicBool::new(false));
    let over = exceeded.clone();
    let mut seen = 0u64;
    let mut stream: ByteStream = Box::pin(
        body.into_data_stream()
            .map_err(std::io::Error::other)
            .and_then(move |chunk| {
                seen += chunk.len() as u64;
                let result = match seen > limit {
                    true => {
                        over.store(true, Ordering::Relaxed);
                        Err(std::io::Error::other("request body too large"))
                    }
                    false => Ok(chunk),
                };
                futures::future::ready(result)
            }),
    );
    // the first line names the columns: read up to its end before the insert starts
    let mut head = Vec::new();
    while !head.contains(&b'\n') {
        match stream.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(e)) if exceeded.load(Ordering::Relaxed) => {
                let _ = e;
                return Err(ApiError::too_large(limit));
            }
            Some(Err(e)) => return Err(Error::Io(e).into()),
            None => break,
        }
    }
    let first = head
        .split(|b| *b == b'\n')
        .map(|line| line.trim_ascii())
        .find(|line| !line.is_empty());
    let listed = match first {
        Some(line) => match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(object)) => keys_of(&object),
            _ => {
                return Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "22P02",
                    "line 1 is not a JSON object",
                ));
            }
        },
        None => Vec::new(),
    };
    let rest: ByteStream = Box::pin(futures::stream::iter([Ok(Bytes::from(head))]).chain(stream));
    let reader = std::io::BufReader::new(SyncIoBridge::new(StreamReader::new(rest)));
    let inserted = api
        .engine()
        .insert_json(&table, &caller.0, listed, JsonRows::Lines(Box::new(reader)))
        .await;
    if exceeded.load(Ordering::Relaxed) {
        return Err(ApiError::too_large(limit));
    }
    let inserted = inserted?;
    api.engine().metrics().rows_written(inserted);
    Ok(Json(Inserted {
        table,
        rows: inserted,
    }))
}
