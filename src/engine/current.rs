//! [`CurrentEngine`]: the engine a server serves right now. A read replica replaces it with a
//! newer checkpoint's (`backups::follow`) while connections stay: each statement takes the
//! engine current when it starts and keeps it until it ends, so nothing running sees two.

use super::Engine;
use std::sync::{Arc, RwLock};

/// A shared, replaceable handle to the engine that serves.
#[derive(Clone)]
pub struct CurrentEngine(Arc<RwLock<Engine>>);

impl CurrentEngine {
    /// A handle serving `engine`.
    pub fn new(engine: Engine) -> Self {
        CurrentEngine(Arc::new(RwLock::new(engine)))
    }

    /// The engine serving now.
    pub fn get(&self) -> Engine {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serves `engine` from now on; returns the one it replaces, which closes when the last
    /// statement running on it ends.
    pub fn replace(&self, engine: Engine) -> Engine {
        let mut slot = self.0.write().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut slot, engine)
    }
}

impl From<Engine> for CurrentEngine {
    fn from(engine: Engine) -> Self {
        CurrentEngine::new(engine)
    }
}

impl std::fmt::Debug for CurrentEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CurrentEngine").field(&self.get()).finish()
    }
}
