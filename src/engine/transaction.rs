//! Which transaction a statement runs in. A connection's open block (or an embedded caller's
//! [`Engine::begin`]) is set around the statement with [`within`]; plans of the statement carry
//! it to their scans and writes in DataFusion's session config, since DataFusion runs parts
//! of a plan on tasks of its own. Without one, reads see the latest commits and each write
//! statement commits on its own. `docs/transactions.md` says what a block guarantees.

use crate::engine::Engine;
use crate::storage::{Isolation, Transaction};
use datafusion::execution::SessionState;
use std::future::Future;
use std::sync::Arc;

tokio::task_local! {
    static CURRENT: Arc<Transaction>;
}

/// Runs `future` (a statement of the engine) inside `txn`: under READ COMMITTED, on a
/// snapshot taken now.
pub async fn within<F: Future>(txn: Arc<Transaction>, future: F) -> F::Output {
    txn.refresh();
    CURRENT.scope(txn, future).await
}

/// Runs `future` inside `txn` when there is one.
pub async fn maybe_within<F: Future>(txn: Option<Arc<Transaction>>, future: F) -> F::Output {
    match txn {
        Some(txn) => within(txn, future).await,
        None => future.await,
    }
}

/// The transaction of the statement running on this task, if it runs in one.
pub fn current() -> Option<Arc<Transaction>> {
    CURRENT.try_with(Arc::clone).ok()
}

impl Engine {
    /// Begins a transaction (REPEATABLE READ: snapshot isolation): run statements in it with
    /// [`within`], then [`Transaction::commit`] it, or drop it to roll it back.
    pub fn begin(&self) -> Arc<Transaction> {
        self.begin_at(Isolation::default())
    }

    /// Begins a transaction at `isolation` (see [`Engine::begin`]).
    pub fn begin_at(&self, isolation: Isolation) -> Arc<Transaction> {
        Arc::new(Transaction::begin(self.catalog().store(), isolation))
    }

    /// The session state plans of the current statement run with: the engine's, carrying the
    /// statement's transaction when it has one.
    pub(crate) fn statement_state(&self) -> SessionState {
        let mut state = self.session_context().state();
        if let Some(txn) = current() {
            state.config_mut().set_extension(txn);
        }
        state
    }
}
