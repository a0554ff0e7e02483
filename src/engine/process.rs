//! [`Process`]: what outlives one engine in a read replica, which replaces its engine with a
//! newer checkpoint's ([`Engine::open_replacement`]) while connections stay: the connections
//! and their cancel keys (`pg_stat_activity`), the metrics, and the memory pool and object
//! stores that statements run with.

use super::{Activity, Engine, memory};
use crate::archive::Stores;
use crate::error::Result;
use crate::metrics::Metrics;
use datafusion::execution::runtime_env::RuntimeEnv;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The parts an engine shares with the engines that replace it.
pub(super) struct Process {
    pub activity: Arc<Activity>,
    pub metrics: Arc<Metrics>,
    pub stores: Arc<Stores>,
    pub runtime: Arc<RuntimeEnv>,
}

impl Process {
    /// New parts, for an engine that replaces none, with `memory_limit` bytes for statements.
    pub fn new(memory_limit: usize) -> Result<Process> {
        let stores = Arc::new(Stores::default());
        Ok(Process {
            activity: Arc::default(),
            metrics: Arc::new(Metrics::new()),
            runtime: memory::runtime(memory_limit, stores.clone())?,
            stores,
        })
    }

    /// The parts `engine` runs with.
    pub fn of(engine: &Engine) -> Process {
        Process {
            activity: engine.activity().clone(),
            metrics: engine.metrics().clone(),
            stores: engine.archives().stores().clone(),
            runtime: engine.inner.ctx.runtime_env(),
        }
    }
}

/// A number no other engine opened by this process has: what a prepared statement compares
/// to know that it was planned by the engine it runs on.
pub(super) fn next_instance() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
