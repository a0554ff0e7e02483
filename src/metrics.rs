//! [`Metrics`]: what `GET /metrics` reports in Prometheus' text format — requests and their
//! latency per HTTP endpoint, statements per kind, rows written, training runs, and (read when
//! scraped) the prediction cache, active model versions, connections and RocksDB's sizes.
//! Built on the Prometheus project's own `prometheus-client`, one registry per engine (no
//! process-global recorder, so that engines embedded side by side count apart).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatementLabels {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrainingLabels {
    model: String,
    outcome: String,
}

/// Latency buckets from 50 µs to about 100 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.00005, 2.0, 22))
}

/// What is read from the engine's state when metrics are scraped.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Prediction cache hits, misses, evictions, invalidations (totals) and entries.
    pub cache: [u64; 5],
    /// (model, active version) per model with an active version.
    pub active_versions: Vec<(String, i64)>,
    /// Wire-protocol sessions connected.
    pub connections: u64,
    /// RocksDB's live SST bytes.
    pub storage_bytes: u64,
    /// RocksDB's estimated pending compaction bytes.
    pub pending_compaction_bytes: u64,
}

/// The metrics of one engine.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<EndpointLabels, Histogram>,
    statements: Family<StatementLabels, Counter>,
    statement_seconds: Family<KindLabels, Histogram>,
    rows_written: Counter,
    training_runs: Family<TrainingLabels, Counter>,
    training_seconds: Family<ModelLabels, Histogram>,
    cache: [Counter; 4],
    cache_entries: Gauge,
    active_version: Family<ModelLabels, Gauge>,
    connections: Gauge,
    storage_bytes: Gauge,
    pending_compaction_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric, registered and at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tastedb");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by endpoint, method and status",
            requests.clone(),
        );
        let request_seconds =
            Family::<EndpointLabels, Histogram>::new_with_constructor(latency as fn() -> _);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by endpoint",
            request_seconds.clone(),
        );
        let statements = Family::<StatementLabels, Counter>::default();
        registry.register(
            "statements",
            "SQL statements by kind (first word) and outcome (ok or error)",
            statements.clone(),
        );
        let statement_seconds =
            Family::<KindLabels, Histogram>::new_with_constructor(latency as fn() -> _);
        registry.register(
            "statement_duration_seconds",
            "Time until a statement's answer starts (rows of a query stream after it)",
            statement_seconds.clone(),
        );
        let rows_written = Counter::default();
        registry.register(
            "rows_written",
            "Rows inserted, copied, updated or deleted",
            rows_written.clone(),
        );
        let training_runs = Family::<TrainingLabels, Counter>::default();
        registry.register(
            "training_runs",
            "TRAIN MODEL runs by model and outcome",
            training_runs.clone(),
        );
        let training_seconds =
            Family::<ModelLabels, Histogram>::new_with_constructor(latency as fn() -> _);
        registry.register(
            "training_duration_seconds",
            "Wall time of TRAIN MODEL runs",
            training_seconds.clone(),
        );
        let cache: [Counter; 4] = Default::default();
        let names = [
            (
                "cache_hits",
                "recommend answers served from the prediction cache",
            ),
            ("cache_misses", "recommend answers computed"),
            ("cache_evictions", "cache entries dropped for size or age"),
            (
                "cache_invalidations",
                "cache entries dropped by new versions or events",
            ),
        ];
        for (counter, (name, help)) in cache.iter().zip(names) {
            registry.register(name, help, counter.clone());
        }
        let cache_entries = Gauge::default();
        registry.register(
            "cache_entries",
            "Entries in the prediction cache",
            cache_entries.clone(),
        );
        let active_version = Family::<ModelLabels, Gauge>::default();
        registry.register(
            "model_active_version",
            "The active version of each model",
            active_version.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Wire-protocol sessions connected",
            connections.clone(),
        );
        let storage_bytes = Gauge::default();
        registry.register(
            "storage_bytes",
            "RocksDB live SST file bytes",
            storage_bytes.clone(),
        );
        let pending_compaction_bytes = Gauge::default();
        registry.register(
            "storage_pending_compaction_bytes",
            "RocksDB's estimate of bytes compaction has yet to rewrite",
            pending_compaction_bytes.clone(),
        );
        Metrics {
            registry,
            requests,
            request_seconds,
            statements,
            statement_seconds,
            rows_written,
            training_runs,
            training_seconds,
            cache,
            cache_entries,
            active_version,
            connections,
            storage_bytes,
            pending_compaction_bytes,
        }
    }

    /// Counts an HTTP request to `endpoint` (its route pattern) that took `seconds`.
    pub fn http_request(&self, endpoint: &str, method: &str, status: u16, seconds: f64) {
        let labels = RequestLabels {
            endpoint: endpoint.to_string(),
            method: method.to_string(),
            status: status.to_string(),
        };
        self.requests.get_or_create(&labels).inc();
        let endpoint = EndpointLabels {
            endpoint: labels.endpoint,
        };
        self.request_seconds
            .get_or_create(&endpoint)
            .observe(seconds);
    }

    /// Counts a statement of `kind` (its first word, upper case) that ended `ok` or not.
    pub fn statement(&self, kind: &str, ok: bool, seconds: f64) {
        let outcome = if ok { "ok" } else { "error" };
        let labels = StatementLabels {
            kind: kind.to_string(),
            outcome: outcome.to_string(),
        };
        self.statements.get_or_create(&labels).inc();
        let kind = KindLabels { kind: labels.kind };
        self.statement_seconds.get_or_create(&kind).observe(seconds);
    }

    /// Counts `rows` written.
    pub fn rows_written(&self, rows: u64) {
        self.rows_written.inc_by(rows);
    }

    /// Counts a training run of `model` that took `seconds`.
    pub fn training(&self, model: &str, ok: bool, seconds: f64) {
        let outcome = if ok { "ok" } else { "error" };
        let labels = TrainingLabels {
            model: model.to_string(),
            outcome: outcome.to_string(),
        };
        self.training_runs.get_or_create(&labels).inc();
        let model = ModelLabels {
            model: labels.model,
        };
        self.training_seconds.get_or_create(&model).observe(seconds);
    }

    /// The OpenMetrics text exposition (ending in `# EOF`), with the scraped values of `now`.
    pub fn render(&self, now: &Snapshot) -> String {
        for (counter, total) in self.cache.iter().zip(now.cache) {
            // counters only go up: add what happened since the last scrape
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        self.cache_entries.set(gauge(now.cache[4]));
        self.active_version.clear();
        for (model, version) in &now.active_versions {
            let labels = ModelLabels {
                model: model.clone(),
            };
            self.active_version.get_or_create(&labels).set(*version);
        }
        self.connections.set(gauge(now.connections));
        self.storage_bytes.set(gauge(now.storage_bytes));
        self.pending_compaction_bytes
            .set(gauge(now.pending_compaction_bytes));
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(error = %e, "metrics could not be encoded");
        }
        text
    }
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The kind of a statement for metrics: its first word, upper case (`SELECT`, `TRAIN`, …).
pub fn statement_kind(sql: &str) -> String {
    let word: String = sql
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .take(16)
        .collect();
    match word.is_empty() {
        true => "OTHER".to_string(),
        false => word.to_ascii_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_scraped_values() {
        let metrics = Metrics::new();
        metrics.http_request("/v1/models/{model}/recommend", "GET", 200, 0.001);
        metrics.statement("SELECT", true, 0.002);
        metrics.rows_written(5);
        let now = Snapshot {
            cache: [3, 1, 0, 0, 2],
            active_versions: vec![("recs".into(), 2)],
            ..Snapshot::default()
        };
        let text = metrics.render(&now);
        assert!(text.contains(
            "tastedb_http_requests_total{endpoint=\"/v1/models/{model}/recommend\",method=\"GET\",status=\"200\"} 1"
        ));
        assert!(text.contains("tastedb_rows_written_total 5"));
        assert!(text.contains("tastedb_cache_hits_total 3"));
        assert!(text.contains("tastedb_model_active_version{model=\"recs\"} 2"));
        // a second scrape adds only what changed
        let later = Snapshot {
            cache: [4, 1, 0, 0, 2],
            ..now
        };
        assert!(
            metrics
                .render(&later)
                .contains("tastedb_cache_hits_total 4")
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn statement_kinds_are_first_words() {
        assert_eq!(statement_kind("  select 1"), "SELECT");
        assert_eq!(statement_kind("TRAIN MODEL m"), "TRAIN");
        assert_eq!(statement_kind("(select 1)"), "OTHER");
    }
}
