//! Live serving: what users did after a served version was trained counts at once. For each
//! version in use (the active one, or one an alias names), a [`Delta`] holds the events
//! written to its source since the version's row-id watermark — read from storage when the
//! delta is first needed (also after a restart), then kept current by every acknowledged
//! write — so that `recommend` excludes the items a user interacted with since, and folds
//! their current events into their taste (see [`crate::ml::fold_in`]); items the version was
//! not trained with get vectors of their own (see [`crate::models::new_items`]).
//!
//! A source is live when it reads one stored table without primary key (row ids are what tell
//! new rows from old) through filters and projections only: the table itself, or a query such
//! as `(SELECT user_id, item_id FROM events WHERE event_type = 'buy')`. Other sources (joins,
//! aggregates, tables with a primary key) are served as the snapshot they were trained on.

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::ml::fold_in::FoldIn;
use crate::ml::{Algorithm, Scorer, TrainOptions, TrainedModel};
use crate::models::cache::PredictionCache;
use crate::models::events::EventColumns;
use crate::models::new_items::NewItems;
use crate::models::registry::{ModelRegistry, ModelVersion};
use crate::schema::TableDef;
use crate::sql::execution_table::Planning;
use crate::storage::{RowKeys, WrittenBatch, reader};
use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// The live deltas of an engine's models.
pub struct Live<V> {
    catalog: Arc<Catalog>,
    registry: Arc<ModelRegistry>,
    cache: Arc<PredictionCache<V>>,
    /// By model and version number.
    slots: Mutex<HashMap<(String, u32), Arc<Slot>>>,
}

impl<V> std::fmt::Debug for Live<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish()
    }
}

/// One model version's delta, and the lock that one builder holds while it reads storage.
#[derive(Default)]
struct Slot {
    build: tokio::sync::Mutex<()>,
    delta: RwLock<Option<Arc<Delta>>>,
}

/// The events written to one model version's source after its watermark.
pub struct Delta {
    /// The version: its number and creation time.
    stamp: (u32, i64),
    model: String,
    trained: Arc<TrainedModel>,
    /// `None` when the source is not live: the version serves its snapshot.
    source: Option<LiveSource>,
    /// Folds users in against the item factors.
    fold: Option<FoldIn>,
    /// Folds new items in against the user factors, built when the first one appears.
    item_fold: OnceLock<Option<FoldIn>>,
    state: Mutex<DeltaState>,
}

/// How rows of the source's table become events.
struct LiveSource {
    table: String,
    steps: Vec<Step>,
    columns: EventColumns,
    options: TrainOptions,
}

#[derive(Default)]
struct DeltaState {
    /// Row ids already counted (the first read and the writes it overlaps see some twice).
    applied: HashSet<u64>,
    /// Newer events by user id: (item id, weight).
    users: HashMap<String, Vec<(String, f32)>>,
    /// Newer events on items the version does not know, by item id: summed weight by user
    /// index (users the version does not know have no vector to fold an item in against).
    item_events: HashMap<String, BTreeMap<usize, f32>>,
    /// New items whose vectors are older than their events.
    stale_items: HashSet<String>,
    new_items: Option<Arc<NewItems>>,
}

/// What counting some rows changed.
#[derive(Default)]
struct Changes {
    /// The users with new events.
    users: HashSet<String>,
    /// Whether a new item's vector changed (any user's answer may).
    items: bool,
}

/// One step of a source query over a batch of table rows.
enum Step {
    /// Keeps these columns (a scan's projection).
    Columns(Vec<usize>),
    /// Keeps the rows for which the predicate is true.
    Filter(Arc<dyn PhysicalExpr>),
    /// Computes the named columns.
    Project(Vec<(String, Arc<dyn PhysicalExpr>)>),
}

impl<V: Clone> Live<V> {
    /// The deltas of `registry`'s models over `catalog`'s tables; writes that change them
    /// drop answers from `cache`.
    pub fn new(
        catalog: Arc<Catalog>,
        registry: Arc<ModelRegistry>,
        cache: Arc<PredictionCache<V>>,
    ) -> Self {
        Live {
            catalog,
            registry,
            cache,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The delta of a served `version` (`trained`: the active one or an alias's), built on
    /// first use; `planning` plans the source query then.
    pub async fn delta(
        &self,
        planning: &Planning<'_>,
        version: &ModelVersion,
        trained: &Arc<TrainedModel>,
    ) -> Result<Arc<Delta>> {
        let stamp = (version.version, version.created_micros);
        let slot = lock(&self.slots)
            .entry((version.model.clone(), version.version))
            .or_default()
            .clone();
        let current = || {
            read(&slot.delta)
                .as_ref()
                .filter(|d| d.stamp == stamp)
                .cloned()
        };
        if let Some(delta) = current() {
            return Ok(delta);
        }
        let _building = slot.build.lock().await;
        if let Some(delta) = current() {
            return Ok(delta);
        }
        let options = options(version)?;
        let source = live_source(&planning.state(), &self.catalog, version, &options).await?;
        let delta = Arc::new(Delta {
            stamp,
            model: version.model.clone(),
            trained: trained.clone(),
            fold: fold_in(trained, &options),
            item_fold: OnceLock::new(),
            source,
            state: Mutex::new(DeltaState::default()),
        });
        // Writes from now on reach the delta; the rows before are read from storage (rows in
        // both are counted once).
        *write(&slot.delta) = Some(delta.clone());
        if let Some(source) = &delta.source
            && let Some(table) = self.catalog.get(&source.table)
        {
            let first = version
                .depends_on
                .watermarks
                .get(&source.table)
                .copied()
                .unwrap_or(0);
            reader::scan_from_row_id(self.catalog.store(), &table.def, first, |ids, batch| {
                delta.apply(&ids, batch.columns(), &table.def);
                Ok(())
            })?;
        }
        Ok(delta)
    }

    /// Whether a delta in use reads `table` (and so wants the rows written to it).
    pub fn watches(&self, table: &TableDef) -> bool {
        let slots: Vec<Arc<Slot>> = lock(&self.slots).values().cloned().collect();
        slots.iter().any(|slot| {
            read(&slot.delta).as_ref().is_some_and(|delta| {
                (delta.source.as_ref()).is_some_and(|source| source.table == table.name)
            })
        })
    }

    /// Counts rows of `table` that were just written into the deltas over it, and drops the
    /// cached answers of the users they change.
    pub fn rows_written(&self, table: &TableDef, batches: &[WrittenBatch]) {
        let slots: Vec<Arc<Slot>> = lock(&self.slots).values().cloned().collect();
        for slot in slots {
            let Some(delta) = read(&slot.delta).clone() else {
                continue;
            };
            if !self.registry.serves(&delta.model, delta.stamp) {
                // The version is no longer served: its delta is built again if it comes back.
                *write(&slot.delta) = None;
                continue;
            }
            if delta.source.as_ref().is_none_or(|s| s.table != table.name) {
                continue;
            }
            let mut changed = Changes::default();
            for batch in batches {
                if let RowKeys::RowIds { first } = batch.keys {
                    let rows = batch.columns.first().map_or(0, |c| c.len()) as u64;
                    let ids: Vec<u64> = (first..first + rows).collect();
                    let more = delta.apply(&ids, &batch.columns, table);
                    changed.users.extend(more.users);
                    changed.items |= more.items;
                }
            }
            if changed.items {
                self.cache.model_changed(&delta.model);
            } else if !changed.users.is_empty() {
                self.cache.users_changed(&delta.model, &changed.users);
            }
        }
    }
}

impl<V: Clone> Live<V> {
    /// After rows of `table` were removed or changed: the deltas over it are read again from
    /// storage when next needed, and the answers of their models are dropped from the cache
    /// (what a user's removed events changed is not known without reading them again).
    pub fn rows_removed(&self, table: &TableDef) {
        let slots: Vec<Arc<Slot>> = lock(&self.slots).values().cloned().collect();
        for slot in slots {
            let Some(delta) = read(&slot.delta).clone() else {
                continue;
            };
            let reads_table = delta.source.as_ref().is_some_and(|s| s.table == table.name);
            if reads_table || !self.registry.serves(&delta.model, delta.stamp) {
                *write(&slot.delta) = None;
                self.cache.model_changed(&delta.model);
            }
        }
    }
}

impl Delta {
    /// Whether the version's source is live (see the module documentation).
    pub fn is_live(&self) -> bool {
        self.source.is_some()
    }

    /// The fold-in of the version's factor model.
    pub fn fold(&self) -> Option<&FoldIn> {
        self.fold.as_ref()
    }

    /// The events of user `user` since the version's watermark: (item id, weight).
    pub fn newer(&self, user: &str) -> Vec<(String, f32)> {
        lock(&self.state)
            .users
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    /// The items the version was not trained with that users it knows have interacted with
    /// since, their vectors current (empty for models without factors).
    pub fn new_items(&self) -> Arc<NewItems> {
        let mut state = lock(&self.state);
        let state = &mut *state;
        let factors = match &self.trained.scorer {
            Scorer::Factors { factors, .. } => *factors,
            _ => 0,
        };
        let new = state
            .new_items
            .get_or_insert_with(|| Arc::new(NewItems::new(factors, self.trained.item_ids.len())));
        if state.stale_items.is_empty() {
            return new.clone();
        }
        let Some(fold) = self.item_fold() else {
            return new.clone();
        };
        let new_now = Arc::make_mut(new);
        let users = match &self.trained.scorer {
            Scorer::Factors { users, .. } => users.as_slice(),
            _ => &[],
        };
        for item in state.stale_items.drain() {
            let Some(events) = state.item_events.get(&item) else {
                continue;
            };
            let vector = fold.solve(
                events
                    .iter()
                    .filter_map(|(&u, &w)| Some((users.get(u * factors..(u + 1) * factors)?, w))),
            );
            if let Err(e) = new_now.set(&item, &vector) {
                tracing::warn!(model = %self.model, "new item {item} not indexed: {e}");
            }
        }
        new.clone()
    }

    /// The fold-in of new items against the user factors, built on first use.
    fn item_fold(&self) -> Option<&FoldIn> {
        self.item_fold
            .get_or_init(|| {
                let Scorer::Factors { factors, users, .. } = &self.trained.scorer else {
                    return None;
                };
                let options = &self.source.as_ref()?.options;
                Some(FoldIn::new(
                    users,
                    *factors,
                    options.regularization,
                    options.alpha,
                ))
            })
            .as_ref()
    }

    /// Counts the rows `ids` (columns of `table`) not counted yet; what they changed.
    fn apply(&self, ids: &[u64], columns: &[ArrayRef], table: &TableDef) -> Changes {
        let mut changed = Changes::default();
        let Some(source) = &self.source else {
            return changed;
        };
        let mut state = lock(&self.state);
        let fresh: BooleanArray = ids
            .iter()
            .map(|id| Some(!state.applied.contains(id)))
            .collect();
        if fresh.true_count() == 0 {
            return changed;
        }
        let events = RecordBatch::try_new(table.input_schema(), columns.to_vec())
            .and_then(|batch| filter_record_batch(&batch, &fresh))
            .map_err(Error::from)
            .and_then(|batch| source.events(batch));
        let batch = match events {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(model = %self.model, "new rows not counted live: {e}");
                return changed;
            }
        };
        state.applied.extend(ids.iter().copied());
        let mut added = Vec::new();
        let read = source.columns.for_each(&batch, &source.options, |e| {
            added.push((e.user.to_string(), e.item.to_string(), e.weight));
        });
        if let Err(e) = read {
            tracing::warn!(model = %self.model, "new rows not counted live: {e}");
        }
        let factors = matches!(self.trained.scorer, Scorer::Factors { .. });
        for (user, item, weight) in added {
            if factors
                && self.trained.item_index(&item).is_none()
                && let Some(u) = self.trained.user_index(&user)
            {
                *state
                    .item_events
                    .entry(item.clone())
                    .or_default()
                    .entry(u)
                    .or_default() += weight;
                state.stale_items.insert(item.clone());
                changed.items = true;
            }
            state
                .users
                .entry(user.clone())
                .or_default()
                .push((item, weight));
            changed.users.insert(user);
        }
        changed
    }
}

impl LiveSource {
    /// The source query's rows for `batch`, rows of its table.
    fn events(&self, mut batch: RecordBatch) -> Result<RecordBatch> {
        for step in &self.steps {
            batch = match step {
                Step::Columns(columns) => batch.project(columns)?,
                Step::Filter(predicate) => {
                    let keep = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
                    let keep = keep
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .ok_or_else(|| Error::Internal("a filter that is not boolean".into()))?;
                    filter_record_batch(&batch, keep)?
                }
                Step::Project(exprs) => {
                    let rows = batch.num_rows();
                    let mut fields = Vec::with_capacity(exprs.len());
                    let mut arrays = Vec::with_capacity(exprs.len());
                    for (name, expr) in exprs {
                        let array = expr.evaluate(&batch)?.into_array(rows)?;
                        fields.push(Field::new(name, array.data_type().clone(), true));
                        arrays.push(array);
                    }
                    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?
                }
            };
        }
        Ok(batch)
    }
}

/// The live form of `version`'s source, or `None` when it is not live.
async fn live_source(
    state: &SessionState,
    catalog: &Catalog,
    version: &ModelVersion,
    options: &TrainOptions,
) -> Result<Option<LiveSource>> {
    let [table] = version.depends_on.tables.as_slice() else {
        return Ok(None);
    };
    if !version.depends_on.watermarks.contains_key(table) || catalog.get(table).is_none() {
        return Ok(None);
    }
    let sql = match version.source.starts_with('(') {
        true => format!("SELECT * FROM {} AS source", version.source),
        false => format!("SELECT * FROM \"{}\"", version.source.replace('"', "\"\"")),
    };
    let plan = match state.create_logical_plan(&sql).await {
        Ok(plan) => plan,
        Err(e) => {
            tracing::debug!(model = %version.model, "source not live: {e}");
            return Ok(None);
        }
    };
    let Some(steps) = steps(state, &plan, table) else {
        return Ok(None);
    };
    let columns = EventColumns::find(plan.schema().as_arrow(), options)?;
    Ok(Some(LiveSource {
        table: table.clone(),
        steps,
        columns,
        options: options.clone(),
    }))
}

/// The steps that compute `plan`'s rows from rows of `table`, if it only filters and projects
/// them.
fn steps(state: &SessionState, plan: &LogicalPlan, table: &str) -> Option<Vec<Step>> {
    match plan {
        LogicalPlan::TableScan(scan)
            if scan.table_name.table() == table
                && scan.filters.is_empty()
                && scan.fetch.is_none() =>
        {
            Some(
                scan.projection
                    .clone()
                    .map(Step::Columns)
                    .into_iter()
                    .collect(),
            )
        }
        LogicalPlan::SubqueryAlias(alias) => steps(state, &alias.input, table),
        LogicalPlan::Filter(filter) => {
            let mut steps = steps(state, &filter.input, table)?;
            let predicate = state
                .create_physical_expr(filter.predicate.clone(), filter.input.schema())
                .ok()?;
            steps.push(Step::Filter(predicate));
            Some(steps)
        }
        LogicalPlan::Projection(projection) => {
            let mut steps = steps(state, &projection.input, table)?;
            let exprs = projection
                .expr
                .iter()
                .zip(projection.schema.fields())
                .map(|(expr, field)| {
                    let physical = state
                        .create_physical_expr(expr.clone(), projection.input.schema())
                        .ok()?;
                    Some((field.name().clone(), physical))
                })
                .collect::<Option<Vec<_>>>()?;
            steps.push(Step::Project(exprs));
            Some(steps)
        }
        _ => None,
    }
}

/// The fold-in of a factor model (ALS's own step; BPR's vectors projected the same way).
fn fold_in(trained: &TrainedModel, options: &TrainOptions) -> Option<FoldIn> {
    let Scorer::Factors { factors, items, .. } = &trained.scorer else {
        return None;
    };
    Some(FoldIn::new(
        items,
        *factors,
        options.regularization,
        options.alpha,
    ))
}

/// The options `version` was trained with.
fn options(version: &ModelVersion) -> Result<TrainOptions> {
    let given: Vec<(String, String)> = version
        .params
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    TrainOptions::parse(Algorithm::named(&version.algorithm)?, &given)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}
