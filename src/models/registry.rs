//! The model registry: every model, its versions (algorithm, options, counts, metrics, the
//! training curve) and which version is active, stored in RocksDB next to the tables. Trained
//! parameters are stored per version and loaded on first use, then kept in memory.

use crate::error::{Error, Result};
use crate::ml::{Metrics, TrainedModel};
use crate::models::graphs::ItemGraphs;
use crate::models::item_index::ItemIndex;
use crate::models::policy::RetrainPolicy;
use crate::sql::names;
use crate::storage::keys::VersionPart;
use crate::storage::{Staging, Store, WriteSet, keys};
use datafusion::sql::sqlparser::ast::visit_relations;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// Bytes of a new version written through a write batch; larger ones are staged in files.
const MODEL_WRITE_BUFFER: usize = 64 << 20;

/// The SQL type of a model's ids, as in its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdType {
    /// TEXT ids.
    Text,
    /// Integer ids (returned as BIGINT).
    BigInt,
}

/// One point of a training curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// 1-based iteration.
    pub iteration: usize,
    /// Training loss.
    pub loss: f64,
    /// Seconds since the fit started.
    pub seconds: f64,
}

/// How long one phase of a TRAIN took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// The phase: `read source`, `aggregate`, `split`, `fit`, `evaluate`, `refit`,
    /// `encode`, `write`.
    pub name: String,
    /// Its seconds.
    pub seconds: f64,
}

impl Phase {
    /// The phase `name`, which began at `started` and ends now.
    pub fn since(name: &str, started: Instant) -> Phase {
        Phase {
            name: name.to_string(),
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

/// Everything recorded about one trained version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// Model name.
    pub model: String,
    /// Version number, from 1.
    pub version: u32,
    /// Algorithm name.
    pub algorithm: String,
    /// The options as given.
    pub params: BTreeMap<String, String>,
    /// The FROM clause (table name or query text).
    pub source: String,
    /// Source rows read.
    pub events: u64,
    /// Distinct users.
    pub users: u64,
    /// Distinct items.
    pub items: u64,
    /// Distinct (user, item) pairs.
    pub pairs: u64,
    /// Seconds the training took.
    pub train_seconds: f64,
    /// Holdout metrics (none with `holdout = 0`).
    pub metrics: Option<Metrics>,
    /// Creation time, microseconds since the Unix epoch.
    pub created_micros: i64,
    /// The type of the user ids.
    pub user_type: IdType,
    /// The type of the item ids.
    pub item_type: IdType,
    /// The training curve of the final fit.
    pub log: Vec<LogLine>,
    /// What the version was trained from, recorded at TRAIN.
    #[serde(default)]
    pub depends_on: Dependencies,
    /// What started the training: `TRAIN`, or the retraining policy's trigger.
    #[serde(default)]
    pub trigger: String,
    /// Whether the version was made active when it was trained, and why.
    #[serde(default)]
    pub promotion: String,
    /// The seconds of each phase of the TRAIN statement, in order (none for versions trained
    /// before phases were recorded).
    #[serde(default)]
    pub phases: Vec<Phase>,
}

/// What a version's answers depend on, recorded when it is trained: the relations its source
/// read, the columns that hold user and item ids, and for each stored table without primary
/// key the row-id watermark below which every row had been written when training read it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dependencies {
    /// The tables (and views) the source read.
    pub tables: Vec<String>,
    /// The column of user ids in the source.
    pub user_column: String,
    /// The column of item ids in the source.
    pub item_column: String,
    /// Row-id watermarks of the stored tables without primary key, by table.
    pub watermarks: BTreeMap<String, u64>,
}

/// A model's registry record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Model name.
    pub name: String,
    /// The version `recommend` serves, if any.
    pub active_version: Option<u32>,
    /// The number the next version gets.
    pub next_version: u32,
    /// When it is retrained and which new versions become active.
    #[serde(default)]
    pub policy: RetrainPolicy,
    /// Other names of versions (`ALTER MODEL m SET ALIAS challenger = 4`), served as
    /// `recommend('m@challenger', …)`.
    #[serde(default)]
    pub aliases: BTreeMap<String, u32>,
}

/// Which version of a model a call serves: `m` or `m@active` the active one, `m@name` the
/// version the alias `name` points to, `m@3` version 3.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pin {
    /// The active version.
    Active,
    /// The version of an alias.
    Alias(String),
    /// A version by its number.
    Version(u32),
}

impl Pin {
    /// Splits `model@pin` into the model's name and the pin (`model` alone: the active
    /// version).
    pub fn split(text: &str) -> (&str, Pin) {
        let Some((model, pin)) = text.split_once('@') else {
            return (text, Pin::Active);
        };
        let pin = match pin.parse::<u32>() {
            Ok(number) => Pin::Version(number),
            Err(_) if pin.eq_ignore_ascii_case(ACTIVE) => Pin::Active,
            Err(_) => Pin::Alias(pin.to_lowercase()),
        };
        (model, pin)
    }

    /// The pin as written after `@` (`active` for the active version).
    pub fn name(&self) -> String {
        match self {
            Pin::Active => ACTIVE.to_string(),
            Pin::Alias(alias) => alias.clone(),
            Pin::Version(number) => number.to_string(),
        }
    }
}

/// The alias that always names the active version.
pub const ACTIVE: &str = "active";

/// A model with all its versions, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEntry {
    /// The record.
    pub record: ModelRecord,
    /// Its versions.
    pub versions: Vec<ModelVersion>,
}

impl ModelEntry {
    /// The active version's metadata.
    pub fn active(&self) -> Option<&ModelVersion> {
        self.pinned(&Pin::Active)
    }

    /// The metadata of the version `pin` names, if there is one.
    pub fn pinned(&self, pin: &Pin) -> Option<&ModelVersion> {
        let number = match pin {
            Pin::Active => self.record.active_version?,
            Pin::Alias(alias) => *self.record.aliases.get(alias)?,
            Pin::Version(number) => *number,
        };
        self.versions.iter().find(|v| v.version == number)
    }

    /// The version `pin` names; 42704 naming what is missing.
    pub fn require(&self, pin: &Pin) -> Result<&ModelVersion> {
        let name = &self.record.name;
        self.pinned(pin).ok_or_else(|| match pin {
            Pin::Active => {
                Error::UndefinedObject(format!("model \"{name}\" has no active version"))
            }
            Pin::Alias(alias) => {
                Error::UndefinedObject(format!("model \"{name}\" has no alias \"{alias}\""))
            }
            Pin::Version(number) => {
                Error::UndefinedObject(format!("model \"{name}\" has no version {number}"))
            }
        })
    }

    /// The aliases of `version`, by name.
    pub fn aliases_of(&self, version: u32) -> Vec<&str> {
        let aliases = self.record.aliases.iter();
        aliases
            .filter(|(_, v)| **v == version)
            .map(|(alias, _)| alias.as_str())
            .collect()
    }
}

/// The registry of one data directory.
#[derive(Debug)]
pub struct ModelRegistry {
    store: Arc<Store>,
    models: RwLock<BTreeMap<String, ModelEntry>>,
    loaded: Mutex<HashMap<(String, u32), Arc<TrainedModel>>>,
    /// Held while a version's parameters are decoded.
    loading: Mutex<()>,
    /// Item graphs loaded or built so far.
    graphs: ItemGraphs,
    /// Serialises registry writes.
    write: Mutex<()>,
    /// Policy runs that failed since the model's last successful one.
    failures: Mutex<HashMap<String, RetrainFailure>>,
}

/// Policy runs of one model that failed in a row.
#[derive(Debug, Clone)]
pub struct RetrainFailure {
    /// How many.
    pub count: u32,
    /// The last one's error.
    pub error: String,
    /// When the next run may start.
    pub retry_at: std::time::Instant,
}

impl ModelRegistry {
    /// Loads the registry of `store`.
    pub fn load(store: Arc<Store>) -> Result<ModelRegistry> {
        let mut models = BTreeMap::new();
        let records: Vec<ModelRecord> = store.records(&keys::model(""), "model record")?;
        for record in records {
            let (start, end) = keys::model_versions_range(&record.name, VersionPart::Metadata);
            let mut versions: Vec<ModelVersion> =
                store.records_between(&start, &end, "model version")?;
            versions.iter_mut().for_each(recorded_before_dependencies);
            models.insert(record.name.clone(), ModelEntry { record, versions });
        }
        Ok(ModelRegistry {
            store,
            models: RwLock::new(models),
            loaded: Mutex::new(HashMap::new()),
            loading: Mutex::new(()),
            graphs: ItemGraphs::default(),
            write: Mutex::new(()),
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// Every model, by name.
    pub fn models(&self) -> Vec<ModelEntry> {
        self.read().values().cloned().collect()
    }

    /// Whether the model `name` exists (without copying its versions, as `get` does).
    pub fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// The model `name`; 42704 when there is none.
    pub fn get(&self, name: &str) -> Result<ModelEntry> {
        self.read().get(name).cloned().ok_or_else(|| missing(name))
    }

    /// Stores a new version of `name` (the model is created on its first version) and makes
    /// it active when `activate` is set or no version is active. Returns the version number.
    /// With `graphs`, the version's HNSW item graphs are built in the background and stored
    /// with it when done (see [`ItemGraphs`]).
    pub fn add_version(
        &self,
        mut version: ModelVersion,
        model: TrainedModel,
        graphs: bool,
        activate: bool,
    ) -> Result<u32> {
        let _write = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let name = version.model.clone();
        let mut entry = self.read().get(&name).cloned().unwrap_or(ModelEntry {
            record: ModelRecord {
                name: name.clone(),
                active_version: None,
                next_version: 1,
                policy: RetrainPolicy::default(),
                aliases: BTreeMap::new(),
            },
            versions: Vec::new(),
        });
        version.version = entry.record.next_version;
        entry.record.next_version += 1;
        if activate || entry.record.active_version.is_none() {
            entry.record.active_version = Some(version.version);
        }
        // A large model is encoded a piece at a time into files staged for RocksDB: it is
        // never copied whole, neither in one buffer nor in a write batch, the write-ahead log
        // and a memtable.
        let encoding = Instant::now();
        let mut batch = Staging::new(&self.store, MODEL_WRITE_BUFFER);
        let parameters = keys::model_data(&name, version.version);
        batch.put_large_from(&parameters, |out| model.encode_to(out))?;
        version.phases.push(Phase::since("encode", encoding));
        let writing = Instant::now();
        let version_key = keys::model_version(&name, version.version);
        batch.put(&version_key, &to_json(&version)?)?;
        batch.put(&keys::model(&name), &to_json(&entry.record)?)?;
        batch.commit()?;
        // The write's own time is known once it is done: the version's record is written
        // again with it (a crash between the two leaves the version without that phase).
        version.phases.push(Phase::since("write", writing));
        let mut timed = WriteSet::default();
        timed.put(&version_key, to_json(&version)?);
        self.store.write(timed)?;
        let (number, created) = (version.version, version.created_micros);
        entry.versions.push(version);
        let model = Arc::new(model);
        self.loaded().insert((name.clone(), number), model.clone());
        if graphs {
            let store = self.store.clone();
            self.graphs
                .build_and_store(store, &name, number, created, model);
        }
        self.models
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, entry);
        Ok(number)
    }

    /// Makes `version` of `name` the active one; 42704 when either does not exist.
    pub fn set_active(&self, name: &str, version: u32) -> Result<()> {
        let _write = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut entry = self.get(name)?;
        if !entry.versions.iter().any(|v| v.version == version) {
            return Err(Error::UndefinedObject(format!(
                "model \"{name}\" has no version {version}"
            )));
        }
        entry.record.active_version = Some(version);
        self.store_record(entry)
    }

    /// Points the alias `alias` of `name` at `version` (moving it if it exists); 42704 when
    /// the model or the version does not exist, 42939 for the reserved alias `active`.
    pub fn set_alias(&self, name: &str, alias: &str, version: u32) -> Result<()> {
        let _write = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut entry = self.get(name)?;
        if alias == ACTIVE || alias.parse::<u32>().is_ok() || alias.contains('@') {
            return Err(Error::ReservedName(format!(
                "\"{alias}\" cannot be an alias: \"{ACTIVE}\" names the active version, and \
                 numbers name versions"
            )));
        }
        if !entry.versions.iter().any(|v| v.version == version) {
            return Err(Error::UndefinedObject(format!(
                "model \"{name}\" has no version {version}"
            )));
        }
        entry.record.aliases.insert(alias.to_string(), version);
        self.store_record(entry)
    }

    /// Removes the alias `alias` of `name`. False when it does not exist and `if_exists`;
    /// 42704 when it does not exist otherwise.
    pub fn drop_alias(&self, name: &str, alias: &str, if_exists: bool) -> Result<bool> {
        let _write = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut entry = self.get(name)?;
        if entry.record.aliases.remove(alias).is_none() {
            return match if_exists {
                true => Ok(false),
                false => Err(Error::UndefinedObject(format!(
                    "model \"{name}\" has no alias \"{alias}\""
                ))),
            };
        }
        self.store_record(entry)?;
        Ok(true)
    }

    /// Stores `entry`'s changed record and keeps the entry (the caller holds `self.write`).
    fn store_record(&self, entry: ModelEntry) -> Result<()> {
        let mut batch = WriteSet::default();
        batch.put(keys::model(&entry.record.name), to_json(&entry.record)?);
        self.store.write(batch)?;
        self.models
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(entry.record.name.clone(), entry);
        Ok(())
    }

    /// Sets `name`'s retraining policy.
    pub fn set_policy(&self, name: &str, policy: RetrainPolicy) -> Result<()> {
        let _write = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut entry = self.get(name)?;
        entry.record.policy = policy;
        self.store_record(entry)?;
        self.failures().remove(name);
        Ok(())
    }

    /// Records the outcome of a policy run of `name`: `Ok` forgets earlier failures; an error
    /// is counted and the next run waits `backoff(count)`.
    pub fn retrain_ended(
        &self,
        name: &str,
        outcome: std::result::Result<(), String>,
        backoff: impl Fn(u32) -> std::time::Duration,
    ) {
        let mut failures = self.failures();
        match outcome {
            Ok(()) => {
                failures.remove(name);
            }
            Err(error) => {
                let count = failures.get(name).map_or(0, |f| f.count) + 1;
                let retry_at = std::time::Instant::now() + backoff(count);
                failures.insert(
                    name.to_string(),
                    RetrainFailure {
                        count,
                        error,
                        retry_at,
                    },
                );
            }
        }
    }

    /// The policy runs of `name` that failed in a row, if the last one did.
    pub fn retrain_failure(&self, name: &str) -> Option<RetrainFailure> {
        self.failures().get(name).cloned()
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, RetrainFailure>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops `name` with all its versions. Returns false, changing nothing, when it does not
    /// exist and `if_exists` is set.
    pub fn drop_model(&self, name: &str, if_exists: bool) -> Result<bool> {
        let _write = self.write.lock().unwrap_or_else(|p| p.into_inner());
        if !self.read().contains_key(name) {
            return if if_exists {
                Ok(false)
            } else {
                Err(missing(name))
            };
        }
        // first, so that no build of its graphs writes after the keys are deleted
        self.graphs.forget(name);
        let mut batch = WriteSet::default();
        batch.delete(keys::model(name));
        for part in [VersionPart::Metadata, VersionPart::Data, VersionPart::Index] {
            let (start, end) = keys::model_versions_range(name, part);
            batch.delete_range(start, end);
        }
        self.store.write(batch)?;
        self.models
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.loaded().retain(|(model, _), _| model != name);
        self.failures().remove(name);
        Ok(true)
    }

    /// The number and creation time of `name`'s active version, if it has one.
    pub fn active_stamp(&self, name: &str) -> Option<(u32, i64)> {
        self.pinned_stamp(name, &Pin::Active)
    }

    /// The number and creation time of the version of `name` that `pin` names, if any.
    pub fn pinned_stamp(&self, name: &str, pin: &Pin) -> Option<(u32, i64)> {
        let models = self.read();
        let version = models.get(name)?.pinned(pin)?;
        Some((version.version, version.created_micros))
    }

    /// Whether the version of `name` with `stamp` (number, creation time) is served: it is
    /// the active one or an alias names it.
    pub fn serves(&self, name: &str, stamp: (u32, i64)) -> bool {
        let models = self.read();
        let Some(entry) = models.get(name) else {
            return false;
        };
        let mut numbers =
            (entry.record.active_version.into_iter()).chain(entry.record.aliases.values().copied());
        let current = (entry.versions.iter()).any(|v| (v.version, v.created_micros) == stamp);
        current && numbers.any(|n| n == stamp.0)
    }

    /// The active version of `name` with its trained parameters.
    pub fn active(&self, name: &str) -> Result<(ModelVersion, Arc<TrainedModel>)> {
        self.pinned(name, &Pin::Active)
    }

    /// The version of `name` that `pin` names, with its trained parameters.
    pub fn pinned(&self, name: &str, pin: &Pin) -> Result<(ModelVersion, Arc<TrainedModel>)> {
        // the one version, not the model's every version
        let version = match self.read().get(name) {
            Some(entry) => entry.require(pin)?.clone(),
            None => return Err(missing(name)),
        };
        let key = (name.to_string(), version.version);
        if let Some(model) = self.loaded().get(&key) {
            return Ok((version, model.clone()));
        }
        // one decode at a time: a request that comes while the same version is being loaded
        // (by another request, or by `warm`) waits for it instead of decoding it again
        let _turn = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(model) = self.loaded().get(&key) {
            return Ok((version, model.clone()));
        }
        let bytes = self
            .store
            .get_large(&keys::model_data(name, version.version))?
            .ok_or_else(|| {
                Error::Corrupt(format!(
                    "model \"{name}\" version {} has no data",
                    version.version
                ))
            })?;
        let model = Arc::new(TrainedModel::decode(&bytes)?);
        self.loaded().insert(key, model.clone());
        Ok((version, model))
    }

    /// Loads every model's active version (parameters, id lookups, and the item graphs of
    /// versions with more items than `ann_threshold`), so that the first requests after a
    /// start do not wait for them, and returns the versions loaded (`models::warm` runs it on
    /// a blocking thread as the server starts). A model that cannot be loaded is logged and
    /// left to its first request.
    pub fn warm(&self, ann_threshold: usize) -> Vec<(ModelVersion, Arc<TrainedModel>)> {
        let mut loaded = Vec::new();
        for entry in self.models() {
            let name = &entry.record.name;
            if entry.active().is_none() {
                continue;
            }
            let version = self.active(name).and_then(|(version, trained)| {
                trained.index_ids();
                if trained.item_ids.len() > ann_threshold {
                    self.item_index(name, &version, &trained)?;
                }
                Ok((version, trained))
            });
            match version {
                Ok(version) => loaded.push(version),
                Err(e) => tracing::warn!("loading model {name} at start: {e}"),
            }
        }
        loaded
    }

    /// The HNSW item graphs of `version` of `name` (whose parameters are `trained`), if it
    /// has them; a factor model's version without stored ones gets them built in the
    /// background (see [`ItemGraphs`]), and is scored exactly until then.
    pub fn item_index(
        &self,
        name: &str,
        version: &ModelVersion,
        trained: &Arc<TrainedModel>,
    ) -> Result<Option<Arc<ItemIndex>>> {
        let (number, created) = (version.version, version.created_micros);
        self.graphs.get(&self.store, name, number, created, trained)
    }

    /// Where the HNSW item graphs of `version` of `name` stand in this process: `building`,
    /// `ready` (in memory), or `None` (none, or not asked for since the start).
    pub fn graphs_state(&self, name: &str, version: u32) -> Option<&'static str> {
        self.graphs.state(name, version)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ModelEntry>> {
        self.models.read().unwrap_or_else(|p| p.into_inner())
    }

    fn loaded(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), Arc<TrainedModel>>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Versions stored before dependencies were recorded get them from their source text and
/// options, once, when they are read.
fn recorded_before_dependencies(version: &mut ModelVersion) {
    if !version.depends_on.tables.is_empty() {
        return;
    }
    let option = |name: &str, default: &str| {
        version
            .params
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    version.depends_on = Dependencies {
        tables: tables_in(&version.source),
        user_column: option("user_column", "user_id"),
        item_column: option("item_column", "item_id"),
        watermarks: BTreeMap::new(),
    };
}

/// The relations a stored source text names: the table itself, or every relation of a
/// parenthesised query (none when the text does not parse).
fn tables_in(source: &str) -> Vec<String> {
    let text = source.trim();
    if !text.starts_with('(') {
        return vec![text.to_string()];
    }
    let query = text.trim_start_matches('(').trim_end_matches(')');
    let mut tables = Vec::new();
    if let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, query) {
        let _ = visit_relations(&statements, |name| {
            if let Ok(table) = names::table_name(name)
                && !tables.contains(&table)
            {
                tables.push(table);
            }
            ControlFlow::<()>::Continue(())
        });
    }
    tables
}

fn missing(name: &str) -> Error {
    Error::UndefinedObject(format!("model \"{name}\" does not exist"))
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_stored_before_dependencies_get_them_from_their_source() {
        assert_eq!(tables_in("events"), ["events"]);
        assert_eq!(
            tables_in("(SELECT e.user_id FROM events e JOIN public.Items i ON e.x = i.x)"),
            ["events", "items"]
        );
        assert!(tables_in("(not sql at all").is_empty());
    }
}
