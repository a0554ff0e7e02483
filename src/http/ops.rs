//! What operators and load balancers call: `GET /healthz` (the process answers), `/readyz`
//! (the data directory answers reads and the server is not stopping), `/metrics` (Prometheus'
//! text format) and `/openapi.json`; and the web console's embedded files at `/`.

use crate::http::Api;
use crate::http::openapi::document;
use crate::metrics::Snapshot;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::atomic::Ordering;
use utoipa::ToSchema;

/// The answer of the health checks.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready`, or why not.
    status: String,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health)))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok".into(),
    })
}

/// The server can serve: not stopping, and its data directory answers a read.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(api): State<Api>) -> (StatusCode, axum::Json<Health>) {
    let status = if api.stopping.load(Ordering::Relaxed) {
        Err("stopping".to_string())
    } else {
        let store = api.engine().catalog().store().clone();
        store
            .get(b"m")
            .map(|_| ())
            .map_err(|e| format!("storage: {e}"))
    };
    match status {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(Health {
                status: "ready".into(),
            }),
        ),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(Health { status: why }),
        ),
    }
}

/// Metrics in the OpenMetrics text format (which Prometheus scrapes).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(api): State<Api>) -> Response {
    let engine = api.engine();
    let stats = &engine.prediction_cache().stats;
    let cache = [
        stats.hits.load(Ordering::Relaxed),
        stats.misses.load(Ordering::Relaxed),
        stats.evictions.load(Ordering::Relaxed),
        stats.invalidations.load(Ordering::Relaxed),
        engine.prediction_cache().len() as u64,
    ];
    let active_versions = engine
        .models()
        .models()
        .into_iter()
        .filter_map(|m| Some((m.record.name, i64::from(m.record.active_version?))))
        .collect();
    let (storage_bytes, pending_compaction_bytes) = engine.catalog().store().disk_sizes();
    let snapshot = Snapshot {
        cache,
        active_versions,
        connections: engine.activity().sessions() as u64,
        storage_bytes,
        pending_compaction_bytes,
    };
    let text = engine.metrics().render(&snapshot);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The OpenAPI 3.1 document of this API.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

/// The console's page.
pub async fn console() -> Response {
    asset_response("text/html; charset=utf-8", CONSOLE_HTML)
}

/// One of the console's files.
pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => asset_response(content_type, body),
        None => crate::http::error::ApiError::no_route(&format!("/assets/{file}")).into_response(),
    }
}

fn asset_response(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

const CONSOLE_HTML: &str = include_str!("console/index.html");

/// The console's files: name, content type, contents.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("console/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("console/console.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("console/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("console/uPlot.min.css"),
    ),
];
