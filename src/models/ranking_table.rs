//! The table behind `recommend(…)` and `similar_items(…)`: computed when the query runs, not
//! when it is planned, so that a prepared statement binds its `$n` parameters into the
//! arguments and serves the model version that is active at execution.
//!
//! Its `$n` parameters are read through `sql::arguments` when the query executes; it is an
//! `sql::execution_table::Answer`, which tells Describe which types they have.

use crate::error::{Error, Result};
use crate::ml::TrainedModel;
use crate::ml::diversity::mmr;
use crate::ml::kernels::dot;
use crate::models::ModelRegistry;
use crate::models::cache::{CacheKey, PredictionCache};
use crate::models::experiments::impressions::{ImpressionLog, Shown};
use crate::models::experiments::{Arm, Experiment, Experiments};
use crate::models::explain;
use crate::models::item_index::ItemIndex;
use crate::models::live::{Delta, Live};
use crate::models::new_items::NewItems;
use crate::models::ranking;
use crate::models::registry::IdType;
use crate::models::registry::{ModelVersion, Pin};
use crate::sql::arguments::{self, Arg};
use crate::sql::config::TasteConfig;
use crate::sql::execution_table::{Answer, Answered, Planning};
use crate::sql::query_arguments::{QueryArguments, QuerySignature, run_plan};
use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, LogicalPlan};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The arguments of `recommend` and `similar_items`: (model, id, k), then a filter query,
/// `exact`, `log`, `explain`, and `diversity` with `diversity_column` of the table `items`, by position
/// or by name.
pub const RANKING_SIGNATURES: [QuerySignature; 2] = [
    ranking_signature("recommend"),
    ranking_signature("similar_items"),
];

const fn ranking_signature(function: &'static str) -> QuerySignature {
    QuerySignature {
        function,
        positional: &["model", "id", "k"],
        named: &[
            "filter",
            "exact",
            "log",
            "explain",
            "diversity",
            "diversity_column",
            "items",
        ],
        query: 3,
        tables: &["items"],
    }
}

/// Which ranking a table computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranking {
    /// `recommend(model, user, k)`.
    Recommend,
    /// `similar_items(model, item, k)`.
    SimilarItems,
}

impl Ranking {
    fn name(self) -> &'static str {
        match self {
            Ranking::Recommend => "recommend",
            Ranking::SimilarItems => "similar_items",
        }
    }
}

/// What serving needs: the registry, the prediction cache, and the filter queries planned
/// ahead of the statement.
#[derive(Debug, Clone)]
pub struct Serving {
    /// The model registry.
    pub registry: Arc<ModelRegistry>,
    /// Cached `recommend` answers.
    pub cache: Arc<ServingCache>,
    /// Query arguments planned ahead (filters), by token.
    pub inputs: Arc<QueryArguments>,
    /// The events written since each served version was trained.
    pub live: Arc<ServingLive>,
    /// The experiments, which `recommend` takes in place of a model.
    pub experiments: Arc<Experiments>,
    /// Where answers served through experiments are logged.
    pub impressions: Arc<ImpressionLog>,
}

/// The cache of `recommend` answers.
pub type ServingCache = PredictionCache<Arc<Ranked>>;

/// The live deltas behind `recommend` answers.
pub type ServingLive = Live<Arc<Ranked>>;

/// A computed ranking: (item index, score), best first; whether the user was unknown and
/// had no events (popularity), and whether their events newer than the version were folded
/// in.
#[derive(Debug)]
pub struct Ranked {
    items: Vec<(usize, f32)>,
    cold_start: bool,
    folded_in: bool,
    /// The rows it was first served as: a cached ranking is served again as the same arrays.
    rows: OnceLock<RecordBatch>,
    /// The propensities its items were last logged with through an experiment: the same
    /// until the other arms' lists for the user change, which only a new version of an arm
    /// does (new events of the user drop the ranking itself from the cache).
    propensities: Mutex<Option<Propensities>>,
}

/// The probability each item of a ranking had of being shown through an experiment, and
/// what it was computed from: the experiment (held, so that another one cannot take its
/// place at the same address) and the version each of its arms served.
#[derive(Debug)]
struct Propensities {
    experiment: Arc<Experiment>,
    arms: Vec<Option<(u32, i64)>>,
    values: Vec<f64>,
}

/// A candidate filter: the query whose first column lists the eligible item ids.
#[derive(Debug)]
struct Filter {
    plan: LogicalPlan,
    sql: String,
}

/// Re-ranking for diversity (maximal marginal relevance, `ml::diversity`): its λ, and the
/// query over the items table with the column of their categories (items of one category are
/// alike); without them, items are as alike as their vectors (cosine).
#[derive(Debug)]
struct Diversity {
    lambda: f32,
    categories: Option<(Filter, String)>,
}

impl Diversity {
    /// `diversity`, `diversity_column` and `items` as given (the table as its query's token).
    fn new(
        function: &str,
        serving: &Serving,
        version: &ModelVersion,
        [lambda, column, items]: [Option<&Expr>; 3],
    ) -> Result<Option<Diversity>> {
        fn given(arg: Option<&Expr>) -> Option<&Expr> {
            arg.filter(|e| !matches!(e, Expr::Literal(ScalarValue::Null, _)))
        }
        let invalid = |what: String| Error::InvalidParameter(format!("{function}(): {what}"));
        let (lambda, column, items) = (given(lambda), given(column), given(items));
        let Some(lambda) = lambda else {
            return match column.or(items) {
                None => Ok(None),
                Some(_) => Err(invalid(
                    "diversity_column and items go with diversity".into(),
                )),
            };
        };
        let value = arguments::constant(function, lambda)?.cast_to(&DataType::Float64);
        let lambda = match value {
            Ok(ScalarValue::Float64(Some(v))) if (0.0..=1.0).contains(&v) => v as f32,
            _ => {
                return Err(invalid(format!(
                    "diversity must be between 0 and 1, not {lambda}"
                )));
            }
        };
        let text = |arg: &Expr| match arg {
            Expr::Literal(ScalarValue::Utf8(Some(text)), _) => Some(text.clone()),
            _ => None,
        };
        let categories = match (column, items) {
            (None, None) if matches!(version.algorithm.as_str(), "als" | "bpr") => None,
            (None, None) => {
                return Err(invalid(format!(
                    "a {} model has no item vectors to tell alike items: name the items' \
                     categories with diversity_column and items",
                    version.algorithm
                )));
            }
            (Some(column), Some(items)) => {
                let (column, token) = (text(column), text(items));
                let planned = token.and_then(|t| serving.inputs.take(&t));
                match (column, planned) {
                    (Some(column), Some((plan, sql))) => Some((Filter { plan, sql }, column)),
                    _ => {
                        return Err(invalid(
                            "items names a table, and diversity_column its column".into(),
                        ));
                    }
                }
            }
            _ => return Err(invalid("diversity_column and items go together".into())),
        };
        Ok(Some(Diversity { lambda, categories }))
    }

    /// What the answer's cache entry depends on.
    fn key(&self) -> String {
        match &self.categories {
            Some((items, column)) => format!("{}|{}|{column}", self.lambda, items.sql),
            None => self.lambda.to_string(),
        }
    }

    /// How many candidates MMR chooses `k` items from.
    fn candidates(k: usize) -> usize {
        k.saturating_mul(5).max(50)
    }

    /// The `k` items of `ranked` chosen by MMR, by the items' `categories` (indexed by item)
    /// or their vectors.
    fn rerank(
        &self,
        ranked: &[(usize, f32)],
        k: usize,
        trained: &TrainedModel,
        new: &NewItems,
        categories: Option<&[Option<u32>]>,
    ) -> Vec<(usize, f32)> {
        match categories {
            Some(categories) => {
                let of = |i: usize| categories.get(i).copied().flatten();
                let alike = |a: usize, b: usize| match (of(a), of(b)) {
                    (Some(a), Some(b)) if a == b => 1.0,
                    _ => 0.0,
                };
                mmr(ranked, k, self.lambda, alike)
            }
            None => {
                let row = |i: usize| trained.item_row(i, new.vectors()).unwrap_or(&[]);
                let norm = |v: &[f32]| dot(v, v).sqrt().max(1e-10);
                let cosine = |a: usize, b: usize| {
                    (dot(row(a), row(b)) / (norm(row(a)) * norm(row(b)))).clamp(0.0, 1.0)
                };
                mmr(ranked, k, self.lambda, cosine)
            }
        }
    }
}

/// What a ranking call names: a version of a model, or an experiment on one.
#[derive(Debug, Clone)]
enum Target {
    /// `model` (its active version) or `model@alias`.
    Model { model: String, pin: Pin },
    /// An experiment: each user gets the version of their arm.
    Experiment { name: String, model: String },
}

impl Target {
    /// What `text` names: `model@alias`, a model, or else an experiment.
    fn resolve(registry: &ModelRegistry, experiments: &Experiments, text: &str) -> Target {
        let (model, pin) = Pin::split(text);
        let target = Target::Model {
            model: model.to_string(),
            pin,
        };
        if text.contains('@') || registry.contains(model) {
            return target;
        }
        match experiments.shared(text) {
            Some(experiment) => Target::Experiment {
                name: experiment.name.clone(),
                model: experiment.model.clone(),
            },
            None => target,
        }
    }

    fn model(&self) -> &str {
        match self {
            Target::Model { model, .. } | Target::Experiment { model, .. } => model,
        }
    }
}

/// Which version serves one request, and whether its answer is logged.
struct Route {
    pin: Pin,
    /// The running experiment and the user's arm.
    arm: Option<(Arc<Experiment>, Arm)>,
    log: bool,
}

/// A ranking and the version that computed it.
struct Served {
    version: ModelVersion,
    trained: Arc<TrainedModel>,
    delta: Arc<Delta>,
    new: Arc<NewItems>,
    ranked: Arc<Ranked>,
}

impl Served {
    fn item_id(&self, item: usize) -> &str {
        match self.trained.item_ids.get(item) {
            Some(id) => id,
            None => self.new.id(item).unwrap_or_default(),
        }
    }
}

/// A served version with what ranking needs: its item graphs (unless exact), its live
/// delta and new items, the items the filter allows and the items' categories.
struct Inputs {
    version: ModelVersion,
    trained: Arc<TrainedModel>,
    index: Option<Arc<ItemIndex>>,
    delta: Arc<Delta>,
    new: Arc<NewItems>,
    eligible: Option<Vec<bool>>,
    categories: Option<Vec<Option<u32>>>,
}

/// The lazily computed ranking of one call.
#[derive(Debug)]
pub struct RankingTable {
    serving: Serving,
    ranking: Ranking,
    target: Target,
    id: Arg,
    k: Arg,
    filter: Option<Filter>,
    exact: bool,
    log: bool,
    /// Whether each row says `because` of which of the user's items it was recommended.
    explain: bool,
    diversity: Option<Diversity>,
    id_type: IdType,
    schema: SchemaRef,
}

impl RankingTable {
    /// The table of `ranking` over `args` (model, id, k, then optionally a filter, `exact`
    /// and `log`); the model must be a constant, as it decides the columns.
    pub fn new(serving: Serving, ranking: Ranking, args: &[Expr]) -> Result<Self> {
        let function = ranking.name();
        let signature = ranking_signature(function);
        let named = |name: &str| signature.position(name).and_then(|at| args.get(at));
        let (model, id, k) = match args {
            [model, id, k, rest @ ..] if rest.len() <= signature.named.len() => (model, id, k),
            _ => {
                return Err(Error::InvalidParameter(format!(
                    "{function}() takes (model, id, k [, filter => query] [, exact => bool] \
                     [, log => bool] [, explain => bool] [, diversity => λ …]), not {} arguments",
                    args.len()
                )));
            }
        };
        let Arg::Value(model) = Arg::from_expr(function, model)? else {
            return Err(Error::FeatureNotSupported(format!(
                "{function}(): the model name must be written in the query, not a parameter"
            )));
        };
        let text = arguments::text(function, "model", &model)?;
        let target = Target::resolve(&serving.registry, &serving.experiments, &text);
        let entry = serving.registry.get(target.model())?;
        let version = match &target {
            Target::Model { pin, .. } => entry.require(pin)?,
            Target::Experiment { name, .. } => {
                let first = serving.experiments.get(name).map(|e| e.arms[0].clone());
                let first = first.map(|arm| Experiment::pin(&arm));
                match first.as_ref().and_then(|pin| entry.pinned(pin)) {
                    Some(version) => version,
                    None => entry.require(&Pin::Active)?,
                }
            }
        };
        let (id, k) = (Arg::from_expr(function, id)?, Arg::from_expr(function, k)?);
        if k.is_constant() {
            count(function, &k.resolve(function)?)?;
        }
        let filter = match named("filter") {
            None | Some(Expr::Literal(ScalarValue::Null, _)) => None,
            Some(Expr::Literal(ScalarValue::Utf8(Some(token)), _)) => {
                let (plan, sql) = serving.inputs.take(token).ok_or_else(|| {
                    Error::InvalidParameter(format!("{function}(): the filter must be a query"))
                })?;
                Some(Filter { plan, sql })
            }
            Some(other) => {
                return Err(Error::InvalidParameter(format!(
                    "{function}(): the filter must be a query, not {other}"
                )));
            }
        };
        let flag = |name: &str| match named(name) {
            None | Some(Expr::Literal(ScalarValue::Null, _)) => Ok(false),
            Some(Expr::Literal(ScalarValue::Boolean(Some(value)), _)) => Ok(*value),
            Some(other) => Err(Error::InvalidParameter(format!(
                "{function}(): {name} must be true or false, not {other}"
            ))),
        };
        let (exact, log, explain) = (flag("exact")?, flag("log")?, flag("explain")?);
        if explain && ranking == Ranking::SimilarItems {
            return Err(Error::FeatureNotSupported(
                "similar_items(): explain => true names the user's items behind each \
                 recommendation; use recommend(), or explain_recommendation()"
                    .into(),
            ));
        }
        if explain {
            explain::explainable(function, &version.algorithm)?;
        }
        if log && ranking == Ranking::SimilarItems {
            return Err(Error::FeatureNotSupported(
                "similar_items(): log => true logs lists served to users; use recommend()".into(),
            ));
        }
        let diversity_args = ["diversity", "diversity_column", "items"].map(named);
        let diversity = Diversity::new(function, &serving, version, diversity_args)?;
        let id_type = match ranking {
            Ranking::Recommend => version.user_type,
            Ranking::SimilarItems => version.item_type,
        };
        let schema = schema(version.item_type, ranking == Ranking::Recommend, explain);
        Ok(RankingTable {
            serving,
            ranking,
            target,
            id,
            k,
            filter,
            exact,
            log,
            explain,
            diversity,
            id_type,
            schema,
        })
    }

    /// The version that serves `user`, and whether the answer is logged: a running
    /// experiment's arm for the user (logged), or the version the call names.
    fn route(&self, user: &str) -> Result<Route> {
        let name = match &self.target {
            Target::Model { pin, .. } => {
                return Ok(Route {
                    pin: pin.clone(),
                    arm: None,
                    log: self.log,
                });
            }
            Target::Experiment { name, .. } => name,
        };
        let experiment = self.serving.experiments.shared(name).ok_or_else(|| {
            Error::UndefinedObject(format!("experiment \"{name}\" does not exist"))
        })?;
        Ok(match experiment.arm_serving(user).cloned() {
            Some(arm) => Route {
                pin: Experiment::pin(&arm),
                arm: Some((experiment, arm)),
                log: true,
            },
            None => Route {
                pin: Pin::Active,
                arm: None,
                log: self.log,
            },
        })
    }

    /// The ranking of `pin`'s version for `user`: from the prediction cache, or computed with
    /// the user's events since the version was trained and kept there.
    async fn rank(
        &self,
        pin: &Pin,
        user: &str,
        k: usize,
        config: &TasteConfig,
        planning: &Planning<'_>,
    ) -> Result<Served> {
        let model = self.target.model();
        let inputs = self.inputs(pin, config, planning).await?;
        let Inputs {
            version,
            trained,
            index,
            delta,
            new,
            eligible,
            ..
        } = &inputs;
        let compute = || {
            let known = trained.user_index(user);
            let newer: Vec<(usize, f32)> = delta
                .newer(user)
                .into_iter()
                .filter_map(|(item, weight)| {
                    let index = trained.item_index(&item).or_else(|| new.index(&item));
                    Some((index?, weight))
                })
                .collect();
            let profile = match newer.is_empty() {
                true => trained.profile(known),
                false => trained.profile_with(known, &newer, delta.fold(), new.vectors()),
            };
            let items = ranking::recommend(
                trained,
                new,
                &profile,
                self.wanted(k),
                index.as_deref(),
                eligible.as_deref(),
            );
            let items = self.diversify(items, k, &inputs);
            Arc::new(Ranked {
                items,
                cold_start: known.is_none() && newer.is_empty(),
                folded_in: !newer.is_empty(),
                rows: OnceLock::new(),
                propensities: Mutex::new(None),
            })
        };
        let ranked = if config.cache_ttl_seconds == 0 {
            compute()
        } else {
            let cache = &self.serving.cache;
            let key = CacheKey {
                model: model.to_string(),
                pin: pin.name(),
                user: user.to_string(),
                k,
                options: format!(
                    "{}|{}|{}",
                    self.filter.as_ref().map_or("", |f| f.sql.as_str()),
                    self.exact,
                    self.diversity
                        .as_ref()
                        .map_or(String::new(), Diversity::key)
                ),
            };
            let ttl = Duration::from_secs(config.cache_ttl_seconds);
            let stamp = (version.version, version.created_micros);
            match cache.get(&key, stamp, ttl) {
                (Some(found), _) => found,
                (None, ticket) => {
                    let ranked = compute();
                    cache.put(key, ranked.clone(), ticket, config.cache_max_entries);
                    ranked
                }
            }
        };
        Ok(Served {
            version: inputs.version,
            trained: inputs.trained,
            delta: inputs.delta,
            new: inputs.new,
            ranked,
        })
    }

    /// `pin`'s version of the model with what ranking it needs now.
    async fn inputs(
        &self,
        pin: &Pin,
        config: &TasteConfig,
        planning: &Planning<'_>,
    ) -> Result<Inputs> {
        let (version, trained) = (self.serving.registry).pinned(self.target.model(), pin)?;
        let index = self.item_index(config, &version, &trained)?;
        let live = &self.serving.live;
        let delta = live.delta(planning, &version, &trained).await?;
        let new = delta.new_items();
        let eligible = match &self.filter {
            Some(filter) => {
                let state = planning.state();
                Some(eligible_items(&*state, &filter.plan, &trained, &new).await?)
            }
            None => None,
        };
        let categories = self.categories(planning, &version, &trained, &new).await?;
        Ok(Inputs {
            version,
            trained,
            index,
            delta,
            new,
            eligible,
            categories,
        })
    }

    /// How many items to rank for an answer of `k`: more when MMR chooses among them.
    fn wanted(&self, k: usize) -> usize {
        self.diversity
            .as_ref()
            .map_or(k, |_| Diversity::candidates(k))
    }

    /// `ranked` re-ranked to `k` items for diversity, when it is asked for.
    fn diversify(&self, ranked: Vec<(usize, f32)>, k: usize, inputs: &Inputs) -> Vec<(usize, f32)> {
        match &self.diversity {
            Some(d) => d.rerank(
                &ranked,
                k,
                &inputs.trained,
                &inputs.new,
                inputs.categories.as_deref(),
            ),
            None => ranked,
        }
    }

    /// The category of each item of `trained` and `new` (by index; categories numbered in
    /// the order met) when diversity is asked for by category: the items table read now,
    /// its rows matched by the model's item column (or `item_id`).
    async fn categories(
        &self,
        planning: &Planning<'_>,
        version: &ModelVersion,
        trained: &TrainedModel,
        new: &NewItems,
    ) -> Result<Option<Vec<Option<u32>>>> {
        let Some((items, column)) = self.diversity.as_ref().and_then(|d| d.categories.as_ref())
        else {
            return Ok(None);
        };
        let state = planning.state();
        let schema = items.plan.schema();
        let find = |name: &str| schema.fields().iter().position(|f| f.name() == name);
        let id_column = (find(&version.depends_on.item_column).or_else(|| find("item_id")))
            .ok_or_else(|| {
                Error::UndefinedColumn(format!(
                    "{} (the items table's item ids)",
                    version.depends_on.item_column
                ))
            })?;
        let category_column = find(column).ok_or_else(|| Error::UndefinedColumn(column.clone()))?;
        let mut numbers: HashMap<String, u32> = HashMap::new();
        let mut categories = vec![None; trained.item_ids.len() + new.len()];
        for batch in run_plan(&*state, &items.plan).await? {
            let ids = cast(batch.column(id_column), &DataType::Utf8)?;
            let values = cast(batch.column(category_column), &DataType::Utf8)?;
            let (ids, values) = (ids.as_string::<i32>(), values.as_string::<i32>());
            for row in 0..batch.num_rows() {
                if ids.is_null(row) || values.is_null(row) {
                    continue;
                }
                let id = ids.value(row);
                let Some(at) = trained.item_index(id).or_else(|| new.index(id)) else {
                    continue;
                };
                let next = numbers.len() as u32;
                let number = *numbers.entry(values.value(row).to_string()).or_insert(next);
                categories[at] = Some(number);
            }
        }
        Ok(Some(categories))
    }

    /// The HNSW graphs to rank `trained`'s items through, unless the ranking is exact.
    fn item_index(
        &self,
        config: &TasteConfig,
        version: &ModelVersion,
        trained: &Arc<TrainedModel>,
    ) -> Result<Option<Arc<ItemIndex>>> {
        match !self.exact && trained.item_ids.len() > config.ann_threshold {
            true => (self.serving.registry).item_index(self.target.model(), version, trained),
            false => Ok(None),
        }
    }

    /// Logs `served` as shown to `user`, with the probability each item had of being shown.
    async fn log(
        &self,
        route: &Route,
        user: &str,
        k: usize,
        config: &TasteConfig,
        planning: &Planning<'_>,
        served: &Served,
    ) {
        let items = &served.ranked.items;
        let propensity = match &route.arm {
            Some((experiment, arm)) => {
                (self.propensities(experiment, arm, user, k, config, planning, served)).await
            }
            None => vec![1.0; items.len()],
        };
        let arm = route.pin.name();
        let shown = Shown {
            experiment: route.arm.as_ref().map(|(e, _)| e.name.as_str()),
            arm: &arm,
            model: self.target.model(),
            version: served.version.version,
            user,
            items: (items.iter().zip(propensity))
                .map(|(&(item, score), p)| (served.item_id(item), f64::from(score), p.min(1.0)))
                .collect(),
        };
        self.serving.impressions.log(shown);
    }

    /// The probability each item `served` to `user` through `arm` of `experiment` had of
    /// being shown: the sum of the shares of the arms whose list for the user holds it (their
    /// lists are ranked, or found in the cache, for this). Kept with the served ranking while
    /// every arm serves the same version.
    #[allow(clippy::too_many_arguments)]
    async fn propensities(
        &self,
        experiment: &Arc<Experiment>,
        arm: &Arm,
        user: &str,
        k: usize,
        config: &TasteConfig,
        planning: &Planning<'_>,
        served: &Served,
    ) -> Vec<f64> {
        let registry = &self.serving.registry;
        let model = self.target.model();
        let arms: Vec<Option<(u32, i64)>> = (experiment.arms.iter())
            .map(|a| registry.pinned_stamp(model, &Experiment::pin(a)))
            .collect();
        let memo = &served.ranked.propensities;
        if let Some(kept) = memo.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && Arc::ptr_eq(&kept.experiment, experiment)
            && kept.arms == arms
        {
            return kept.values.clone();
        }
        let items = &served.ranked.items;
        let mut values = vec![experiment.share(arm); items.len()];
        // (a list is short: a scan costs less than hashing its ids)
        let shown: Vec<&str> = (items.iter())
            .map(|&(item, _)| served.item_id(item))
            .collect();
        let mut complete = true;
        for other in experiment.arms.iter().filter(|a| a.alias != arm.alias) {
            let pin = Experiment::pin(other);
            match self.rank(&pin, user, k, config, planning).await {
                Ok(theirs) => {
                    for &(item, _) in &theirs.ranked.items {
                        let id = theirs.item_id(item);
                        if let Some(at) = shown.iter().position(|s| *s == id) {
                            values[at] += experiment.share(other);
                        }
                    }
                }
                Err(e) => {
                    complete = false;
                    tracing::debug!("arm {} of {}: {e}", other.alias, experiment.name);
                }
            }
        }
        if complete {
            *memo.lock().unwrap_or_else(|p| p.into_inner()) = Some(Propensities {
                experiment: experiment.clone(),
                arms,
                values: values.clone(),
            });
        }
        values
    }
}

#[async_trait]
impl Answer for RankingTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn parameter_types(&self) -> Vec<(String, DataType)> {
        let id_type = match self.id_type {
            IdType::Text => DataType::Utf8,
            IdType::BigInt => DataType::Int64,
        };
        let mut types = self.id.parameter_types(id_type);
        types.extend(self.k.parameter_types(DataType::Int64));
        types
    }

    fn answers_without_planning(&self) -> bool {
        self.filter.is_none()
            && self
                .diversity
                .as_ref()
                .is_none_or(|d| d.categories.is_none())
    }

    async fn answer(&self, config: &TasteConfig, planning: Planning<'_>) -> Result<RecordBatch> {
        Ok(self.answer_reused(config, planning).await?.rows)
    }

    async fn answer_reused(
        &self,
        config: &TasteConfig,
        planning: Planning<'_>,
    ) -> Result<Answered> {
        let function = self.ranking.name();
        let id = arguments::text(function, "id", &self.id.resolve(function)?)?;
        let k = count(function, &self.k.resolve(function)?)?;
        match self.ranking {
            Ranking::Recommend => {
                let route = self.route(&id)?;
                let served = self.rank(&route.pin, &id, k, config, &planning).await?;
                if route.log {
                    self.log(&route, &id, k, config, &planning, &served).await;
                }
                let ranked = &served.ranked;
                // a cached ranking keeps the rows it was first served as
                if let Some(rows) = ranked.rows.get()
                    && rows.schema() == self.schema
                {
                    let rows = rows.clone();
                    return Ok(Answered { rows, reused: true });
                }
                let flags = (ranked.cold_start, ranked.folded_in);
                let because = self.explain.then(|| because(&served, &id));
                let rows = batch(
                    &self.schema,
                    &served.trained,
                    &served.new,
                    &ranked.items,
                    served.version.item_type,
                    (Some(flags), because),
                )?;
                if self.explain {
                    return Ok(Answered {
                        rows,
                        reused: false,
                    });
                }
                let _ = ranked.rows.set(rows.clone());
                Ok(Answered {
                    rows,
                    reused: false,
                })
            }
            Ranking::SimilarItems => {
                let pin = match &self.target {
                    Target::Model { pin, .. } => pin.clone(),
                    Target::Experiment { .. } => Pin::Active,
                };
                let inputs = self.inputs(&pin, config, &planning).await?;
                let ranked = ranking::similar(
                    self.target.model(),
                    &inputs.version.algorithm,
                    &inputs.trained,
                    &inputs.new,
                    &id,
                    self.wanted(k),
                    inputs.index.as_deref(),
                    inputs.eligible.as_deref(),
                )?;
                let ranked = self.diversify(ranked, k, &inputs);
                let (version, trained, new) = (&inputs.version, &inputs.trained, &inputs.new);
                let item_type = version.item_type;
                let rows = batch(&self.schema, trained, new, &ranked, item_type, (None, None))?;
                Ok(Answered {
                    rows,
                    reused: false,
                })
            }
        }
    }
}

/// The number and creation time of the version that `recommend(name, user, …)` serves now:
/// the version `name` (`model`, `model@alias`) names, or the user's arm's in the experiment
/// `name`.
pub fn serving_stamp(
    registry: &ModelRegistry,
    experiments: &Experiments,
    name: &str,
    user: &str,
) -> Option<(u32, i64)> {
    match Target::resolve(registry, experiments, name) {
        Target::Model { model, pin } => registry.pinned_stamp(&model, &pin),
        Target::Experiment { name, model } => {
            let experiment = experiments.shared(&name)?;
            let pin = match experiment.arm_serving(user) {
                Some(arm) => Experiment::pin(arm),
                None => Pin::Active,
            };
            registry.pinned_stamp(&model, &pin)
        }
    }
}

/// Which items of `trained` and `new` the filter query's first column names.
async fn eligible_items(
    state: &dyn Session,
    plan: &LogicalPlan,
    trained: &TrainedModel,
    new: &NewItems,
) -> Result<Vec<bool>> {
    let batches = run_plan(state, plan).await?;
    let mut eligible = vec![false; trained.item_ids.len() + new.len()];
    for batch in &batches {
        let Some(column) = batch.columns().first() else {
            continue;
        };
        let ids = cast(column, &DataType::Utf8)?;
        let ids = ids.as_string::<i32>();
        for row in 0..ids.len() {
            if ids.is_valid(row)
                && let Some(i) = trained
                    .item_index(ids.value(row))
                    .or_else(|| new.index(ids.value(row)))
            {
                eligible[i] = true;
            }
        }
    }
    Ok(eligible)
}

fn schema(item_type: IdType, user_flags: bool, because: bool) -> SchemaRef {
    let id_type = match item_type {
        IdType::Text => DataType::Utf8,
        IdType::BigInt => DataType::Int64,
    };
    let mut fields = vec![
        Field::new("item_id", id_type.clone(), false),
        Field::new("score", DataType::Float64, false),
        Field::new("rank", DataType::Int64, false),
    ];
    if user_flags {
        fields.push(Field::new("cold_start", DataType::Boolean, false));
        fields.push(Field::new("folded_in", DataType::Boolean, false));
    }
    if because {
        fields.push(Field::new("because", id_type, true));
    }
    Arc::new(Schema::new(fields))
}

/// The `because` column's values: an item id, or none, per row.
type Reasons<'a> = Vec<Option<&'a str>>;

/// For each item served to `user`, the user's item that contributed most to its score (see
/// [`explain::because`]): the `because` column of `recommend(…, explain => true)`.
fn because<'a>(served: &'a Served, user: &str) -> Reasons<'a> {
    let (trained, delta, new) = (&served.trained, &served.delta, &served.new);
    let weights = explain::user_weights(trained, delta, new, user);
    (served.ranked.items.iter())
        .map(|&(item, _)| explain::because(trained, delta, new, &weights, item))
        .map(|reason| reason.map(|r| served.item_id(r)))
        .collect()
}

fn count(function: &str, value: &ScalarValue) -> Result<usize> {
    match arguments::integer(value) {
        Some(k) if k > 0 => Ok(k.min(1_000_000) as usize),
        _ => Err(Error::InvalidParameter(format!(
            "{function}(): k must be a positive integer, not {value}"
        ))),
    }
}

fn batch(
    schema: &SchemaRef,
    model: &TrainedModel,
    new: &NewItems,
    ranked: &[(usize, f32)],
    item_type: IdType,
    (user_flags, because): (Option<(bool, bool)>, Option<Reasons<'_>>),
) -> Result<RecordBatch> {
    let ids =
        StringArray::from_iter_values(ranked.iter().map(|&(i, _)| match model.item_ids.get(i) {
            Some(id) => id.as_str(),
            None => new.id(i).unwrap_or_default(),
        }));
    let ids: ArrayRef = match item_type {
        IdType::Text => Arc::new(ids),
        IdType::BigInt => cast(&ids, &DataType::Int64)?,
    };
    let mut columns: Vec<ArrayRef> = vec![
        ids,
        Arc::new(Float64Array::from_iter_values(
            ranked.iter().map(|(_, s)| f64::from(*s)),
        )),
        Arc::new(Int64Array::from_iter_values(1..=ranked.len() as i64)),
    ];
    if let Some((cold_start, folded_in)) = user_flags {
        for flag in [cold_start, folded_in] {
            columns.push(Arc::new(BooleanArray::from(vec![flag; ranked.len()])));
        }
    }
    if let Some(because) = because {
        let reasons = StringArray::from(because);
        columns.push(match item_type {
            IdType::Text => Arc::new(reasons),
            IdType::BigInt => cast(&reasons, &DataType::Int64)?,
        });
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
