//! [`ItemGraphs`]: the HNSW item graphs of model versions, as serving asks for them. Graphs
//! are never built inside a statement: a TRAIN whose version has more items than
//! `tastedb.ann_threshold` (the versions serving will search) starts their build on a thread of
//! its own and returns, and until they are ready serving scores that version exactly. A
//! version trained below the threshold has none; should serving come to need them (the
//! threshold lowered later, or a build cut short by a stop of the server), they are built
//! then, once, in the background. Every build stores its graphs with the version when done,
//! stamped with the version's creation time: graphs a build wrote for a version since dropped
//! (and made again under the same name and number) are never taken for the new version's.

use crate::blocking::Stopped;
use crate::error::Result;
use crate::ml::{Scorer, TrainedModel};
use crate::models::item_index::ItemIndex;
use crate::storage::{Staging, Store, keys};
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
    builders: Mutex<Vec<Builder>>,
}

/// A build under way on its own thread, and what stops it.
struct Builder {
    version: Version,
    stopped: Stopped,
    thread: JoinHandle<()>,
}

/// Bytes of graphs written through a write batch; larger ones are staged in files.
const GRAPHS_WRITE_BUFFER: usize = 64 << 20;

impl std::fmt::Debug for ItemGraphs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemGraphs").finish_non_exhaustive()
    }
}

impl ItemGraphs {
    /// The graphs of `version` of `name` (created at `created`, whose parameters are
    /// `trained`): the stored ones, else, for a factor model, `None` now and a build started
    /// in the background. Stored graphs that cannot be read (damaged, written by an older
    /// build, or stamped for another version of the same number) are built again.
    pub fn get(
        &self,
        store: &Arc<Store>,
        name: &str,
        version: u32,
        created: i64,
        trained: &Arc<TrainedModel>,
    ) -> Result<Option<Arc<ItemIndex>>> {
        let key = (name.to_string(), version);
        match self.map().get(&key) {
            Some(Graphs::Ready(index)) => return Ok(index.clone()),
            Some(Graphs::Building) => return Ok(None),
            None => {}
        }
        let stored = store.get_large(&keys::model_index(name, version))?;
        let read = stored
            .as_deref()
            .map(|bytes| match bytes.split_at_checked(8) {
                Some((stamp, graphs)) if stamp == created.to_le_bytes() => {
                    ItemIndex::decode(graphs)
                }
                _ => Err(crate::error::Error::Corrupt(
                    "not stamped with this version's creation time".into(),
                )),
            });
        let index = match read {
            Some(Ok(index)) => Some(Arc::new(index)),
            unread => {
                if let Some(Err(e)) = unread {
                    tracing::warn!(
                        "item graphs of model {name} version {version} are unreadable ({e}); \
                         building them again"
                    );
                }
                if matches!(trained.scorer, Scorer::Factors { .. }) {
                    self.build_later(key, created, trained.clone(), store.clone());
                    return Ok(None);
                }
                None
            }
        };
        self.map().insert(key, Graphs::Ready(index.clone()));
        Ok(index)
    }

    /// `building` while the graphs of `version` of `name` are being built, `ready` once they
    /// are in memory, `None` otherwise (none, or not asked for since the start).
    pub fn state(&self, name: &str, version: u32) -> Option<&'static str> {
        match self.map().get(&(name.to_string(), version))? {
            Graphs::Building => Some("building"),
            Graphs::Ready(Some(_)) => Some("ready"),
            Graphs::Ready(None) => None,
        }
    }

    /// Starts building the graphs of the new `version` of `name` (created at `created`, whose
    /// parameters are `trained`) in the background; they are stored with the version once
    /// built, unless the model is dropped first.
    pub fn build_and_store(
        &self,
        store: Arc<Store>,
        name: &str,
        version: u32,
        created: i64,
        trained: Arc<TrainedModel>,
    ) {
        self.build_later((name.to_string(), version), created, trained, store);
    }

    /// Forgets every version of `name`, and stops and waits for the builds of its graphs, so
    /// that none writes after the model is dropped. Call it before the model's keys are
    /// deleted.
    pub fn forget(&self, name: &str) {
        self.map().retain(|(model, _), _| model != name);
        let stopping: Vec<Builder> = {
            let mut builders = lock(&self.builders);
            let (theirs, others) = builders.drain(..).partition(|b| b.version.0 == name);
            *builders = others;
            theirs
        };
        for builder in stopping {
            builder.stopped.set();
            let _ = builder.thread.join();
        }
    }

    /// Starts building the graphs of `key` (created at `created`) on a thread of its own,
    /// unless one already is; the graphs are written to `store` once built.
    fn build_later(
        &self,
        key: Version,
        created: i64,
        trained: Arc<TrainedModel>,
        store: Arc<Store>,
    ) {
        {
            let mut map = self.map();
            if map.contains_key(&key) {
                return;
            }
            map.insert(key.clone(), Graphs::Building);
        }
        let graphs = self.graphs.clone();
        let stopped = Stopped::default();
        let stop = stopped.clone();
        let version = key.clone();
        let build = move || {
            let Scorer::Factors { factors, items, .. } = &trained.scorer else {
                return;
            };
            let built = ItemIndex::build(items, *factors, u64::from(key.1), &stopped);
            let index = match built {
                Ok(index) => Some(Arc::new(index)),
                Err(e) => {
                    if !stopped.is_set() {
                        tracing::warn!("item graphs of model {} version {}: {e}", key.0, key.1);
                    }
                    None
                }
            };
            let mut map = lock(&graphs);
            // a version dropped meanwhile, or a registry closing, keeps nothing; the write
            // happens under the map's lock, which `forget` takes before the model's keys go
            if !map.contains_key(&key) || stopped.is_set() {
                return;
            }
            if let Some(index) = &index
                && let Err(e) = store_graphs(&store, &key, created, index)
            {
                tracing::warn!(
                    "item graphs of model {} version {} were built but not stored: {e}",
                    key.0,
                    key.1
                );
            }
            map.insert(key, Graphs::Ready(index));
        };
        let mut builders = lock(&self.builders);
        builders.retain(|b| !b.thread.is_finished());
        match std::thread::Builder::new()
            .name("item graphs".into())
            .spawn(build)
        {
            Ok(thread) => builders.push(Builder {
                version,
                stopped: stop,
                thread,
            }),
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
        let builders: Vec<Builder> = lock(&self.builders).drain(..).collect();
        for builder in &builders {
            builder.stopped.set();
        }
        for builder in builders {
            let _ = builder.thread.join();
        }
    }
}

/// Writes `index` as the graphs of `version` (created at `created`, the stamp they are
/// stored with), in one atomic, durable write.
fn store_graphs(store: &Store, version: &Version, created: i64, index: &ItemIndex) -> Result<()> {
    let graphs = index.encode()?;
    let mut write = Staging::new(store, GRAPHS_WRITE_BUFFER);
    write.put_large_from(&keys::model_index(&version.0, version.1), |out| {
        out(&created.to_le_bytes())?;
        out(&graphs)
    })?;
    write.commit()
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

    /// Asks for the graphs until they are built; the index.
    fn built(
        graphs: &ItemGraphs,
        store: &Arc<Store>,
        created: i64,
        model: &Arc<TrainedModel>,
    ) -> Arc<ItemIndex> {
        let started = Instant::now();
        loop {
            if let Some(index) = graphs.get(store, "m", 1, created, model).unwrap() {
                return index;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "never built");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn graphs_of_a_new_version_are_built_after_it_and_stored_unless_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let graphs = ItemGraphs::default();
        let model = factor_model(300, 8);
        graphs.build_and_store(store.clone(), "m", 1, 42, model.clone());
        let started = Instant::now();
        while store.get(&keys::model_index("m", 1)).unwrap().is_none() {
            assert!(started.elapsed() < Duration::from_secs(60), "never stored");
            std::thread::sleep(Duration::from_millis(5));
        }
        // a fresh registry (a restart) reads them instead of building them
        let restarted = ItemGraphs::default();
        let index = restarted
            .get(&store, "m", 1, 42, &model)
            .unwrap()
            .expect("stored graphs");
        assert_eq!(index.len(), 300);
        assert!(lock(&restarted.builders).is_empty());
        // another version 1 of "m" (dropped and made again) does not take them for its own
        let again = ItemGraphs::default();
        assert!(again.get(&store, "m", 1, 43, &model).unwrap().is_none());

        // dropped while its graphs are being built: the build stops and writes nothing
        let big = factor_model(20_000, 16);
        graphs.build_and_store(store.clone(), "n", 1, 42, big);
        graphs.forget("n");
        assert!(lock(&graphs.builders).iter().all(|b| b.version.0 != "n"));
        assert!(store.get(&keys::model_index("n", 1)).unwrap().is_none());
    }

    #[test]
    fn unreadable_graphs_are_built_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let mut damage = WriteSet::default();
        damage.put(keys::model_index("m", 1), b"not a graph");
        store.write(damage).unwrap();
        let graphs = ItemGraphs::default();
        let model = factor_model(10, 4);
        assert!(graphs.get(&store, "m", 1, 7, &model).unwrap().is_none());
        assert_eq!(built(&graphs, &store, 7, &model).len(), 10);
    }

    #[test]
    fn graphs_a_version_lacks_are_built_once_in_the_background_and_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let graphs = ItemGraphs::default();
        let model = factor_model(300, 8);
        // the first ask starts the build and is answered by exact scoring
        assert!(graphs.get(&store, "m", 1, 7, &model).unwrap().is_none());
        let index = built(&graphs, &store, 7, &model);
        assert_eq!(index.len(), 300);
        assert!(lock(&graphs.builders).len() <= 1, "built once");
        let stored = store.get_large(&keys::model_index("m", 1)).unwrap();
        assert_eq!(stored.unwrap()[..8], 7i64.to_le_bytes(), "stamped");
        // a dropped model forgets them
        graphs.forget("m");
        assert!(!graphs.map().contains_key(&("m".to_string(), 1)));
    }
}
