//! What belongs to one connection rather than to the engine: the values `currval` and
//! `lastval` answer. The wire server runs each connection inside [`within_session`], so every
//! statement it plans binds the sequence functions to that connection's values; an embedded
//! engine is one session of its own.

use crate::catalog::sequences::SessionValues;
use std::future::Future;
use std::sync::Arc;

tokio::task_local! {
    static SESSION: Arc<SessionValues>;
}

/// Runs `future` (a connection) with its own session values.
pub async fn within_session<F: Future>(future: F) -> F::Output {
    SESSION
        .scope(Arc::new(SessionValues::default()), future)
        .await
}

/// The session values of the connection running on this task, if any.
pub(crate) fn current_session() -> Option<Arc<SessionValues>> {
    SESSION.try_with(Arc::clone).ok()
}
