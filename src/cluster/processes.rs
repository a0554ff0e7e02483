//! `tastedb scheduler` and `tastedb executor`: a Ballista cluster of the same version as the
//! client in this binary, reading archives through the same object stores (the local file
//! system, and S3-compatible stores configured from the standard `AWS_*` environment).

use crate::archive::Stores;
use crate::error::{Error, Result};
use ballista_core::RuntimeProducer;
use ballista_core::utils::default_session_builder;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How a scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// An executor not heard from for this long is lost: its tasks run elsewhere.
    pub executor_timeout: Duration,
    /// How long a job waits for an executor when there is none before it fails (08006 for
    /// the statement waiting for it).
    pub no_executor_grace: Duration,
}

/// How an executor runs.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler, `host:port`.
    pub scheduler: String,
    /// Address to listen on: Arrow Flight (where results are fetched) on its port, the gRPC
    /// service the scheduler sends tasks to on the next one. Not port 0: the executor tells
    /// the scheduler where it is.
    pub listen: SocketAddr,
    /// Tasks it runs at once.
    pub cores: usize,
    /// How often it tells the scheduler it is alive.
    pub heartbeat: Duration,
}

/// Runs a scheduler; `bound` is told the address it listens on once it does. Returns when the
/// scheduler stops (an error of its server).
pub async fn run_scheduler(
    options: SchedulerOptions,
    bound: impl FnOnce(SocketAddr),
) -> Result<()> {
    let session_builder: ballista_scheduler::SessionBuilder = Arc::new(|config| {
        let state = default_session_builder(config)?;
        let runtime = archive_runtime().map_err(Error::into_datafusion)?;
        Ok(SessionStateBuilder::new_from_existing(state)
            .with_runtime_env(runtime)
            .build())
    });
    // bound first, so that the address the scheduler tells executors is the real one (port 0)
    let listener = crate::server::listen(options.listen).await?;
    let bound_at = listener.local_addr()?;
    let external_host = match bound_at.ip() {
        ip if ip.is_unspecified() => "localhost".to_string(),
        ip => ip.to_string(),
    };
    let config = SchedulerConfig {
        bind_host: bound_at.ip().to_string(),
        bind_port: bound_at.port(),
        external_host,
        executor_timeout_seconds: options.executor_timeout.as_secs().max(1),
        expire_dead_executor_interval_seconds: (options.executor_timeout.as_secs() / 3).max(1),
        no_executors_grace_period_seconds: options.no_executor_grace.as_secs().max(1),
        override_session_builder: Some(session_builder),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(cluster_error)?;
    let scheduler =
        create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::new(config))
            .await
            .map_err(cluster_error)?;
    bound(bound_at);
    start_grpc_service_with_listener(listener, scheduler)
        .await
        .map_err(cluster_error)
}

/// Runs an executor of the scheduler in `options` until it stops (SIGINT, SIGTERM, or an
/// error).
pub async fn run_executor(options: ExecutorOptions) -> Result<()> {
    let (host, port) = options.scheduler.rsplit_once(':').ok_or_else(|| {
        Error::InvalidParameter(format!("--scheduler {}: not host:port", options.scheduler))
    })?;
    let port: u16 = port.parse().map_err(|_| {
        Error::InvalidParameter(format!("--scheduler {}: not host:port", options.scheduler))
    })?;
    if options.listen.port() == 0 || options.listen.port() == u16::MAX {
        return Err(Error::InvalidParameter(
            "an executor needs a port of its own (and the next one), not 0: it tells the scheduler \
             where it is"
                .into(),
        ));
    }
    // Ballista logs a port it cannot bind and then ends as if stopped: refuse it here instead
    for port in [options.listen.port(), options.listen.port() + 1] {
        let address = SocketAddr::new(options.listen.ip(), port);
        std::net::TcpListener::bind(address).map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("the executor cannot listen on {address}: {e}"),
            ))
        })?;
    }
    let runtime: RuntimeProducer = Arc::new(|_| archive_runtime().map_err(Error::into_datafusion));
    let config = ExecutorProcessConfig {
        bind_host: options.listen.ip().to_string(),
        port: options.listen.port(),
        grpc_port: options.listen.port() + 1,
        scheduler_host: host.to_string(),
        scheduler_port: port,
        vcores: options.cores.max(1),
        executor_heartbeat_interval_seconds: options.heartbeat.as_secs().max(1),
        override_runtime_producer: Some(runtime),
        print_thread_info: false,
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(cluster_error)
}

/// A runtime that reads archives through TasteDB's object stores and never caches file
/// listings (archives grow while they are read).
fn archive_runtime() -> Result<Arc<RuntimeEnv>> {
    let caches = CacheManagerConfig::default().with_list_files_cache_limit(0);
    Ok(RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(Stores::default()))
        .with_cache_manager(caches)
        .build_arc()?)
}

/// A failure of Ballista's while a scheduler or executor starts or runs: an I/O error as one
/// (58030), a scheduler an executor cannot reach as 08001, the rest as internal (XX000).
fn cluster_error(e: ballista_core::error::BallistaError) -> Error {
    use ballista_core::error::BallistaError;
    match e {
        BallistaError::IoError(io) => Error::Io(io),
        BallistaError::GrpcConnectionError(message) => {
            Error::ConnectionNotEstablished(format!("cluster: {message}"))
        }
        other => Error::Internal(format!("cluster: {other}")),
    }
}
