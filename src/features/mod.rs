//! The feature store: named SQL definitions of feature rows per entity (feature views), their
//! latest row per entity in an online store in RocksDB, and point-in-time correct training
//! sets. `docs/features.md` describes the SQL surface.

mod historical;
mod materialize;
mod online;
mod parser;
mod statements;
mod system_tables;
mod ttl;

pub use historical::{HistoricalFeatures, SIGNATURE as HISTORICAL_SIGNATURE, point_in_time};
pub use materialize::{
    FeatureRows, MaterializeMode, Materialized, SourceMark, latest_rows, write_latest,
};
pub use online::OnlineFeatures;
pub use parser::{CreateFeatureView, FeatureStatement};
pub use ttl::parse_ttl;

use crate::engine::{Command, Family, FunctionObject};
use crate::error::{Error, Result};
use crate::roles::ObjectKind;
use crate::schema::TableDef;
use crate::sql::query_arguments::QueryArguments;
use crate::storage::{Store, WriteSet, keys};
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// The feature-store statements: CREATE, DROP, SHOW and MATERIALIZE FEATURE VIEW.
pub const STATEMENTS: Family = Family {
    name: "features",
    parse: |parser| Ok(parser::feature_statement(parser)?.map(|s| Arc::new(s) as Arc<dyn Command>)),
};

/// Registers the feature store's table functions, `online_features` and
/// `historical_features`, over `views`.
pub fn register_functions(
    ctx: &SessionContext,
    views: &Arc<FeatureViews>,
    arguments: &Arc<QueryArguments>,
) {
    ctx.register_udtf(
        "online_features",
        Arc::new(OnlineFeatures::new(views.clone())),
    );
    ctx.register_udtf(
        "historical_features",
        Arc::new(HistoricalFeatures::new(views.clone(), arguments.clone())),
    );
}

/// A feature view as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureView {
    /// View name.
    pub name: String,
    /// The entity key column.
    pub entity: String,
    /// The feature timestamp column.
    pub timestamp: String,
    /// The TTL as written (`None`: rows never expire).
    pub ttl: Option<String>,
    /// The TTL in microseconds.
    pub ttl_micros: Option<i64>,
    /// The definition's SQL.
    pub definition: String,
    /// The definition's columns, with the entity column as primary key (the `id` is unused).
    pub columns: TableDef,
    /// Creation time, microseconds since the Unix epoch.
    pub created_micros: i64,
    /// What the last MATERIALIZE left.
    pub materialized: Option<Materialized>,
}

impl FeatureView {
    /// Index of the entity column in `columns`.
    pub fn entity_index(&self) -> usize {
        self.columns.primary_key.first().copied().unwrap_or(0)
    }

    /// Index of the timestamp column in `columns`.
    pub fn timestamp_index(&self) -> usize {
        self.columns
            .columns
            .iter()
            .position(|c| c.name == self.timestamp)
            .unwrap_or(0)
    }

    /// True when a feature row stamped `feature_micros` is still valid at `at_micros`.
    pub fn is_fresh(&self, feature_micros: i64, at_micros: i64) -> bool {
        self.ttl_micros
            .is_none_or(|ttl| at_micros.saturating_sub(feature_micros) <= ttl)
    }
}

/// Every feature view of a data directory.
#[derive(Debug)]
pub struct FeatureViews {
    store: Arc<Store>,
    views: RwLock<BTreeMap<String, FeatureView>>,
    /// Serialises CREATE, DROP and the commits of MATERIALIZE.
    write: Mutex<()>,
    /// Serialises MATERIALIZE runs (held across their queries).
    materializing: tokio::sync::Mutex<()>,
}

impl FeatureViews {
    /// Loads the feature views of `store`.
    pub fn load(store: Arc<Store>) -> Result<FeatureViews> {
        let stored: Vec<FeatureView> = store.records(&keys::feature_view(""), "feature view")?;
        let views = stored
            .into_iter()
            .map(|view| (view.name.clone(), view))
            .collect();
        Ok(FeatureViews {
            store,
            views: RwLock::new(views),
            write: Mutex::new(()),
            materializing: tokio::sync::Mutex::new(()),
        })
    }

    /// The store the online rows live in.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// All views, by name.
    pub fn list(&self) -> Vec<FeatureView> {
        self.read().values().cloned().collect()
    }

    /// The view `name`, or 42704.
    pub fn get(&self, name: &str) -> Result<FeatureView> {
        self.read().get(name).cloned().ok_or_else(|| {
            Error::UndefinedObject(format!("feature view \"{name}\" does not exist"))
        })
    }

    /// Stores a new view. Returns false, changing nothing, when the name exists and
    /// `if_not_exists` is set; 42710 when it exists otherwise.
    pub fn create(&self, view: FeatureView, if_not_exists: bool) -> Result<bool> {
        let _write = self.lock();
        if self.read().contains_key(&view.name) {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(Error::DuplicateObject(format!(
                    "feature view \"{}\" already exists",
                    view.name
                )))
            };
        }
        self.store_view(view, WriteSet::default())?;
        Ok(true)
    }

    /// Drops the view and its online rows. Returns false when it does not exist and
    /// `if_exists` is set; 42704 when it does not exist otherwise.
    pub fn drop_view(&self, name: &str, if_exists: bool) -> Result<bool> {
        let _write = self.lock();
        if !self.read().contains_key(name) {
            return if if_exists {
                Ok(false)
            } else {
                Err(Error::UndefinedObject(format!(
                    "feature view \"{name}\" does not exist"
                )))
            };
        }
        let mut batch = WriteSet::default();
        batch.delete(keys::feature_view(name));
        let (start, end) = keys::online_range(name);
        batch.delete_range(start, end);
        self.store.write(batch)?;
        self.views
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        Ok(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lock MATERIALIZE runs under, one at a time.
    pub fn materializing(&self) -> &tokio::sync::Mutex<()> {
        &self.materializing
    }

    /// Writes `batch` (online rows) together with the view's new state, atomically; 42704 when
    /// the view was dropped (or dropped and created again) since `view` was read.
    pub fn commit(&self, view: FeatureView, batch: WriteSet) -> Result<()> {
        let _write = self.lock();
        let current = self.read().get(&view.name).map(|v| v.created_micros);
        if current != Some(view.created_micros) {
            return Err(Error::UndefinedObject(format!(
                "feature view \"{}\" was dropped while it was materialised",
                view.name
            )));
        }
        self.store_view(view, batch)
    }

    /// Writes `batch` with the view's definition and state, then keeps the view in memory.
    fn store_view(&self, view: FeatureView, mut batch: WriteSet) -> Result<()> {
        batch.put(keys::feature_view(&view.name), to_json(&view)?);
        self.store.write(batch)?;
        self.views
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(view.name.clone(), view);
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, FeatureView>> {
        self.views.read().unwrap_or_else(|p| p.into_inner())
    }
}

fn to_json(view: &FeatureView) -> Result<Vec<u8>> {
    serde_json::to_vec(view).map_err(|e| Error::Internal(e.to_string()))
}

pub use crate::clock::now_micros;

/// The feature functions, which read the feature view their first argument names.
pub const FUNCTION_OBJECTS: &[FunctionObject] = &[
    FunctionObject {
        function: "online_features",
        kind: ObjectKind::FeatureView,
    },
    FunctionObject {
        function: "historical_features",
        kind: ObjectKind::FeatureView,
    },
];
