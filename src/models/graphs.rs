//! [`ItemGraphs`]: the HNSW item graphs of model versions, as serving asks for them. TRAIN
//! builds and stores graphs only for versions with more items than `tastedb.ann_threshold`
//! (the ones serving will search); a version trained below it is scored exactly, and should
//! serving come to need its graphs (the threshold lowered later), they are built then, once,
//! on a thread of their own, while exact scoring answers meanwhile. Graphs built that way
//! live in memory only: they are derived data, and a restart builds them again when needed.

use crate::blocking::Stopped;
use crate::error::Result;
use crate::ml::{Scorer, TrainedModel};
use crate::models::item_index::ItemIndex;
use crate::storage::{Store, keys};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Model name and version.
type Version = (String, u32);

/// Where a version's graphs stand.
#[derive(Clone)]
enum Graphs {
    /// Known: the graphs, or `None` for a version served by exact scoring.
    Ready(Option<Arc<ItemIndex>>),
    /// Being built in the background.
    Building,
}

/// Graphs by model version, loaded from the store or built on demand.
#[derive(Default)]
pub struct ItemGraphs {
    graphs: Arc<Mutex<HashMap<Version, Graphs>>>,
    builders: Mutex<Vec<JoinHandle<()>>>,
    /// Set when the registry goes away, so a build in progress gives up.
    closing: Stopped,
}

impl std::fmt::Debug for ItemGraphs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemGraphs").finish_non_exhaustive()
    }
}

impl ItemGraphs {
    /// The graphs of `version` of `name` (whose parameters are `trained`): the stored ones,
    /// else, for a factor model, `None` now and a build started in the background. Stored
    /// graphs that cannot be read (damaged, or written by a build before TasteDB's own HNSW)
    /// are logged and the version is served by exact scoring.
    pub fn get(
        &self,
        store: &Store,
        name: &str,
        version: u32,
        trained: &Arc<TrainedModel>,
    ) -> Result<Option<Arc<ItemIndex>>> {
        let key = (name.to_string(), version);
        match self.map().get(&key) {
            Some(Graphs::Ready(index)) => return Ok(index.clone()),
            Some(Graphs::Building) => return Ok(None),
            None => {}
        }
        let stored = match store.get_large(&keys::model_index(name, version))? {
            Some(bytes) => match ItemIndex::decode(&bytes) {
                Ok(index) => Some(Arc::new(index)),
                Err(e) => {
                    tracing::warn!(
                        "item graphs of model {name} version {version} are unreadable ({e}); \
                         serving it by exact scoring"
                    );
                    None
                }
            },
            None if matches!(trained.scorer, Scorer::Factors { .. }) => {
                self.build_later(key, trained.clone());
                return Ok(None);
            }
            None => None,
        };
        self.map().insert(key, Graphs::Ready(stored.clone()));
        Ok(stored)
    }

    /// Keeps the graphs a TRAIN built and stored (`None`: it built none).
    pub fn insert(&self, name: &str, version: u32, index: Option<ItemIndex>) {
        let graphs = match index {
            Some(index) => Graphs::Ready(Some(Arc::new(index))),
            None => return,
        };
        self.map().insert((name.to_string(), version), graphs);
    }

    /// Forgets every version of `name` (a build under way finds it gone and keeps nothing).
    pub fn forget(&self, name: &str) {
        self.map().retain(|(model, _), _| model != name);
    }

    /// Starts building the graphs of `key` on a thread of its own, unless one already is.
    fn build_later(&self, key: Version, trained: Arc<TrainedModel>) {
        {
            let mut map = self.map();
            if map.contains_key(&key) {
                return;
            }
            map.insert(key.clone(), Graphs::Building);
        }
        let (graphs, closing) = (self.graphs.clone(), self.closing.clone());
        let build = move || {
            let Scorer::Factors { factors, items, .. } = &trained.scorer else {
                return;
            };
            let built = ItemIndex::build(items, *factors, u64::from(key.1), &closing);
            let index = match built {
                Ok(index) => Some(Arc::new(index)),
                Err(e) => {
                    tracing::warn!("item graphs of model {} version {}: {e}", key.0, key.1);
                    None
                }
            };
            let mut map = lock(&graphs);
            // a version dropped meanwhile, or a registry closing, keeps nothing
            if map.contains_key(&key) && !closing.is_set() {
                map.insert(key, Graphs::Ready(index));
            }
        };
        let mut builders = lock(&self.builders);
        builders.retain(|b| !b.is_finished());
        match std::thread::Builder::new()
            .name("item graphs".into())
            .spawn(build)
        {
            Ok(handle) => builders.push(handle),
            Err(e) => tracing::warn!("cannot start building item graphs: {e}"),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<Version, Graphs>> {
        lock(&self.graphs)
    }
}

impl Drop for ItemGraphs {
    /// Stops builds under way and waits for them, so none outlives the data directory.
    fn drop(&mut self) {
        self.closing.set();
        for builder in lock(&self.builders).drain(..) {
            let _ = builder.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::interactions::Csr;
    use crate::storage::WriteSet;
    use std::time::{Duration, Instant};

    fn factor_model(items: usize, factors: usize) -> Arc<TrainedModel> {
        let vectors = (0..items * factors)
            .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
            .collect();
        Arc::new(TrainedModel::new(
            Vec::new(),
            (0..items).map(|i| format!("i{i}")).collect(),
            Csr::default(),
            vec![0.0; items],
            Scorer::Factors {
                factors,
                users: Vec::new(),
                items: vectors,
            },
        ))
    }

    #[test]
    fn unreadable_graphs_mean_exact_scoring() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut damage = WriteSet::default();
        damage.put(keys::model_index("m", 1), b"not a graph");
        store.write(damage).unwrap();
        let graphs = ItemGraphs::default();
        let model = factor_model(10, 4);
        assert!(graphs.get(&store, "m", 1, &model).unwrap().is_none());
        assert!(graphs.get(&store, "m", 1, &model).unwrap().is_none());
    }

    #[test]
    fn graphs_a_version_lacks_are_built_once_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let graphs = ItemGraphs::default();
        let model = factor_model(300, 8);
        // the first ask starts the build and is answered by exact scoring
        assert!(graphs.get(&store, "m", 1, &model).unwrap().is_none());
        let started = Instant::now();
        let index = loop {
            if let Some(index) = graphs.get(&store, "m", 1, &model).unwrap() {
                break index;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "never built");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(index.len(), 300);
        assert!(lock(&graphs.builders).len() <= 1, "built once");
        // nothing was written: the graphs are derived data kept in memory
        assert!(store.get(&keys::model_index("m", 1)).unwrap().is_none());
        // a dropped model forgets them
        graphs.forget("m");
        assert!(!graphs.map().contains_key(&("m".to_string(), 1)));
    }
}
