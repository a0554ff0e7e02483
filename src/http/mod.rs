//! The HTTP API (`tastedb serve --http ADDR`): versioned JSON endpoints for recommendations,
//! events, features and models, authenticated by API keys (`roles::api_keys`) with the key's
//! role's privileges; health checks, Prometheus metrics, the OpenAPI document and the web
//! console. axum on hyper, on the same engine (and, under `tastedb serve`, the same runtime)
//! as the wire server. `docs/http.md` describes it.

mod auth;
mod catalog;
mod error;
mod listener;
mod openapi;
mod ops;
mod rows;
mod serving;

pub use error::ApiError;

use crate::engine::{CurrentEngine, Engine};
use crate::error::{Error, Result};
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Settings of the HTTP server.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// PEM certificate chain and private key: serve HTTPS only.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Largest JSON body (bytes), e.g. a JSON array of rows; larger is 413.
    pub body_bytes: usize,
    /// Largest NDJSON body (bytes) streamed into a table; larger is 413 and nothing stored.
    pub stream_bytes: u64,
    /// Longest a request may run before it is answered 503 (57014) and its work stopped.
    pub request_timeout: Duration,
}

impl HttpOptions {
    /// The defaults on `listen`: 16 MiB JSON bodies, 4 GiB NDJSON streams, 60 s per request.
    pub fn new(listen: SocketAddr) -> HttpOptions {
        HttpOptions {
            listen,
            tls: None,
            body_bytes: 16 << 20,
            stream_bytes: 4 << 30,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Limits the handlers apply themselves.
#[derive(Debug, Clone, Copy)]
struct Limits {
    body_bytes: usize,
    stream_bytes: u64,
}

/// What every handler shares.
#[derive(Clone)]
pub struct Api {
    current: CurrentEngine,
    limits: Limits,
    shapes: Arc<serving::PreparedShapes>,
    bodies: Arc<serving::EncodedBodies>,
    /// Set when the server starts stopping: `/readyz` answers 503 from then on.
    stopping: Arc<AtomicBool>,
}

/// A bound, not yet running HTTP server.
pub struct HttpServer {
    listener: TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stopping: Arc<AtomicBool>,
}

impl HttpServer {
    /// Binds the listener (and reads the TLS certificate, if any) to serve `engine` (an
    /// [`Engine`], or the [`CurrentEngine`] the wire server shares).
    pub async fn bind(
        engine: impl Into<CurrentEngine>,
        options: HttpOptions,
    ) -> Result<HttpServer> {
        let tls = match &options.tls {
            Some((cert, key)) => Some(crate::server::tls_acceptor(cert, key, b"http/1.1")?),
            None => None,
        };
        let listener = crate::server::listen(options.listen).await?;
        let stopping = Arc::new(AtomicBool::new(false));
        let api = Api {
            current: engine.into(),
            limits: Limits {
                body_bytes: options.body_bytes,
                stream_bytes: options.stream_bytes,
            },
            shapes: Arc::default(),
            bodies: Arc::default(),
            stopping: stopping.clone(),
        };
        Ok(HttpServer {
            listener,
            router: router(api, &options),
            tls,
            stopping,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` completes; then stops accepting, answers `/readyz` with 503,
    /// lets the requests in flight finish (up to 30 s) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let stopping = self.stopping.clone();
        let shutdown = async move {
            shutdown.await;
            stopping.store(true, Ordering::Relaxed);
        };
        listener::serve(self.listener, self.router, self.tls, shutdown).await
    }
}

impl Api {
    /// The engine a request starting now runs on.
    fn engine(&self) -> Engine {
        self.current.get()
    }
}

/// Every route.
fn router(api: Api, options: &HttpOptions) -> Router {
    let timeout = options.request_timeout;
    Router::new()
        .route("/", get(ops::console))
        .route("/assets/{file}", get(ops::asset))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/v1/models", get(catalog::models))
        .route("/v1/models/{model}/versions", get(catalog::versions))
        .route(
            "/v1/models/{model}/recommend",
            get(serving::recommend).post(serving::recommend_many),
        )
        .route("/v1/models/{model}/similar", get(serving::similar))
        .route("/v1/tables", get(catalog::tables))
        .route("/v1/tables/{table}/rows", post(rows::insert))
        .route("/v1/features/{view}", get(catalog::features))
        .route("/v1/sql", post(catalog::sql))
        .fallback(|request: Request| async move { ApiError::no_route(request.uri().path()) })
        .layer(axum::extract::DefaultBodyLimit::max(options.body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            (api.clone(), timeout),
            observe,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(api)
}

/// Times each request out, and counts it with its latency per endpoint (its route pattern).
async fn observe(
    State((api, timeout)): State<(Api, Duration)>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_string();
    let method = request.method().to_string();
    let response = match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::from(Error::QueryCanceled(format!(
            "request timeout of {} s",
            timeout.as_secs_f64()
        )))
        .into_response(),
    };
    let seconds = started.elapsed().as_secs_f64();
    api.engine()
        .metrics()
        .http_request(&endpoint, &method, response.status().as_u16(), seconds);
    response
}

/// A handler that panicked: 500 XX000, and the server goes on.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a request handler panicked".into());
    tracing::error!(message, "HTTP handler panicked");
    ApiError::from(Error::Internal(message)).into_response()
}
