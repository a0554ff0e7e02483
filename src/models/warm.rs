//! [`warm`]: what serving needs, loaded before the first request after a start.

use crate::engine::Engine;
use crate::sql::execution_table::Planning;

/// Loads every model's active version (parameters, id lookups, stored item graphs; see
/// `ModelRegistry::warm`) and builds its live delta (the events written to its source since it
/// was trained, read from storage), so that the first requests after a start do not wait for
/// them. The server runs it as it starts; what fails is logged and left to the first request.
pub async fn warm(engine: Engine) {
    let threshold = engine.taste_config().ann_threshold;
    let registry = engine.models().clone();
    let Ok(loaded) = tokio::task::spawn_blocking(move || registry.warm(threshold)).await else {
        return;
    };
    let planning = || engine.statement_state();
    for (version, trained) in loaded {
        let built = (engine.live())
            .delta(&Planning::Later(&planning), &version, &trained)
            .await;
        if let Err(e) = built {
            tracing::warn!("the live delta of model {} at start: {e}", version.model);
        }
    }
}
