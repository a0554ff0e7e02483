//! Cluster execution on Apache Ballista, DataFusion's distributed engine: with
//! `SET tastedb.cluster = 'df://host:50050'` (or `tastedb serve --cluster`), a plan that reads
//! archives (`archive('events')`: Parquet files the cluster reads itself) and nothing stored
//! here, with DataFusion's own functions only, runs on the cluster and only its rows come back:
//! queries, the definitions of feature views, the source query of `TRAIN MODEL … FROM (…)`.
//! Everything else runs here ([`placement`]); `EXPLAIN` says which and why. `tastedb scheduler`
//! and `tastedb executor` run a cluster of the same Ballista version ([`processes`]).
//!
//! A cluster that does not answer a connection within [`CONNECT_TIMEOUT`] is 08001; one lost
//! while a query runs is 08006 ([`errors`]); a statement stopped here (timeout, cancel, a
//! dropped connection) cancels its job on the cluster.

mod errors;
mod placement;
pub mod processes;

use crate::error::{Error, Result};
use crate::sql::config::TasteConfig;
use ballista_core::execution_plans::DistributedQueryExec;
use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use ballista_core::serde::protobuf::CancelJobParams;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, SessionStateBuilder};
use datafusion::logical_expr::{LogicalPlan, Statement as PlanStatement};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::protobuf::LogicalPlanNode;
use futures::{Stream, StreamExt, TryStreamExt};
pub use placement::{Placement, placement};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The setting naming the cluster (`df://host:port`; empty: none).
pub const SETTING: &str = "tastedb.cluster";

/// How long a cluster has to answer a connection before a statement gives up with 08001.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The scheduler's `host:port` in a cluster URL, `df://host[:port]` (port 50050 by default).
pub fn scheduler_address(url: &str) -> Result<String> {
    let bad = |why: &str| {
        Error::InvalidParameter(format!(
            "invalid value for parameter \"tastedb.cluster\": \"{url}\" ({why}; a cluster is \
             df://host:port)"
        ))
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if parsed.scheme() != "df" {
        return Err(bad("not a df:// URL"));
    }
    let host = parsed.host_str().ok_or_else(|| bad("no host"))?;
    Ok(format!("{host}:{}", parsed.port().unwrap_or(50050)))
}

/// The cluster plans run on: `tastedb.cluster`, and how long a plan may take there
/// (`tastedb.cluster_timeout_seconds`, 0 for no limit).
#[derive(Debug, Clone)]
pub struct Target {
    /// `df://host:port`.
    pub url: String,
    /// After this long on the cluster a plan is stopped (57014) and its job cancelled.
    pub timeout: Option<Duration>,
}

impl Target {
    /// The cluster of `config`, if one is set.
    pub fn of(config: &TasteConfig) -> Option<Target> {
        (!config.cluster.is_empty()).then(|| Target {
            url: config.cluster.clone(),
            timeout: (config.cluster_timeout_seconds > 0)
                .then(|| Duration::from_secs(config.cluster_timeout_seconds)),
        })
    }
}

/// Runs `plan` on the cluster of `target` and streams its rows here.
pub async fn execute(target: &Target, plan: LogicalPlan) -> Result<SendableRecordBatchStream> {
    let url = target.url.as_str();
    let address = scheduler_address(url)?;
    reachable(url, &address).await?;
    let ctx = context(&address)?;
    let lost = |e: DataFusionError| errors::from_cluster(url, e);
    let frame = ctx.execute_logical_plan(plan).await.map_err(lost)?;
    let physical = frame.create_physical_plan().await.map_err(lost)?;
    let rows = execute_stream(physical.clone(), ctx.task_ctx()).map_err(lost)?;
    Ok(Box::pin(ClusterRows {
        rows,
        job: physical,
        url: url.to_string(),
        address,
        ended: false,
        deadline: target
            .timeout
            .map(|limit| (limit, Box::pin(tokio::time::sleep(limit)))),
    }))
}

/// Runs `plan` on the cluster of `target` when it can run there ([`placement`]), here by `here`
/// otherwise; an `EXPLAIN` runs where its statement would and gets a row saying where, and why.
pub async fn execute_or_here<F, Fut>(
    target: &Target,
    plan: LogicalPlan,
    here: F,
) -> Result<SendableRecordBatchStream>
where
    F: FnOnce(LogicalPlan) -> Fut,
    Fut: Future<Output = Result<SendableRecordBatchStream>>,
{
    let (placed, explained) = match &plan {
        LogicalPlan::Explain(explain) => (placement(&explain.plan), true),
        other => (placement(other), false),
    };
    let rows = match placed {
        Placement::Cluster => execute(target, plan).await?,
        Placement::Local(_) => here(plan).await?,
    };
    if !explained {
        return Ok(rows);
    }
    let schema = rows.schema();
    let mut batches: Vec<RecordBatch> = rows.try_collect().await?;
    let place = match &placed {
        Placement::Cluster => format!("on the cluster at {}", target.url),
        Placement::Local(reason) => format!("here: {reason}"),
    };
    let runs = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["runs"])),
            Arc::new(StringArray::from(vec![place])),
        ],
    )?;
    batches.push(runs);
    Ok(Box::pin(MemoryStream::try_new(batches, schema, None)?))
}

/// Refuses a `SET tastedb.cluster` whose value is not a cluster URL (22023); who may set it at
/// all is `engine::access::check_setting`'s.
pub fn check_setting(plan: &LogicalPlan) -> Result<()> {
    let LogicalPlan::Statement(PlanStatement::SetVariable(set)) = plan else {
        return Ok(());
    };
    if !set.variable.eq_ignore_ascii_case(SETTING) {
        return Ok(());
    }
    match set.value.trim() {
        "" => Ok(()),
        url => scheduler_address(url).map(|_| ()),
    }
}

/// 08001 unless the scheduler at `address` takes a connection within [`CONNECT_TIMEOUT`]
/// (Ballista's own client would wait longer, and then again for every retry).
async fn reachable(url: &str, address: &str) -> Result<()> {
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(errors::unreachable(url, e)),
        Err(_) => Err(errors::unreachable(
            url,
            format!("no answer in {} s", CONNECT_TIMEOUT.as_secs()),
        )),
    }
}

/// A Ballista client session for the scheduler at `address`: DataFusion's defaults and
/// functions, none of this engine's tables, functions or settings (which the cluster has not).
fn context(address: &str) -> Result<SessionContext> {
    let mut config = SessionConfig::new_with_ballista();
    config.options_mut().set(
        "ballista.client.grpc_connect_timeout_seconds",
        &CONNECT_TIMEOUT.as_secs().to_string(),
    )?;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build()
        .upgrade_for_ballista(format!("http://{address}"))?;
    Ok(SessionContext::new_with_state(state))
}

/// The rows of a job on the cluster; dropped before its end (the statement stopped), it
/// cancels the job.
struct ClusterRows {
    rows: SendableRecordBatchStream,
    job: Arc<dyn ExecutionPlan>,
    url: String,
    address: String,
    ended: bool,
    /// `tastedb.cluster_timeout_seconds`, and the sleep that ends with it.
    deadline: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
}

impl Stream for ClusterRows {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.rows.poll_next_unpin(cx);
        if polled.is_pending()
            && let Some((limit, sleep)) = &mut self.deadline
            && sleep.as_mut().poll(cx).is_ready()
        {
            let limit = *limit;
            self.deadline = None;
            // not ended: dropping the rows cancels the job
            let stopped = Error::QueryCanceled(format!(
                "canceling statement due to tastedb.cluster_timeout_seconds ({} s) on the \
                 cluster at {}: is any executor running there?",
                limit.as_secs(),
                self.url
            ));
            return Poll::Ready(Some(Err(DataFusionError::External(Box::new(stopped)))));
        }
        match polled {
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                self.ended = true;
                let ours = errors::from_cluster(&self.url, e);
                Poll::Ready(Some(Err(DataFusionError::External(Box::new(ours)))))
            }
            other => other,
        }
    }
}

impl RecordBatchStream for ClusterRows {
    fn schema(&self) -> SchemaRef {
        self.rows.schema()
    }
}

impl Drop for ClusterRows {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let job = (self
            .job
            .downcast_ref::<DistributedQueryExec<LogicalPlanNode>>())
        .and_then(DistributedQueryExec::job_id);
        let (Some(job), Ok(runtime)) = (job, tokio::runtime::Handle::try_current()) else {
            return;
        };
        let scheduler = format!("http://{}", self.address);
        runtime.spawn(async move {
            let job_id: String = job.into();
            let cancelled = async {
                let mut client = SchedulerGrpcClient::connect(scheduler).await?;
                client
                    .cancel_job(CancelJobParams {
                        job_id: job_id.clone(),
                    })
                    .await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, cancelled).await {
                Ok(Ok(())) => tracing::debug!(job_id, "cancelled on the cluster"),
                Ok(Err(e)) => tracing::warn!(job_id, "cannot cancel on the cluster: {e}"),
                Err(_) => tracing::warn!(job_id, "cannot cancel on the cluster: no answer"),
            }
        });
    }
}
