//! The table behind `recommend(…)` and `similar_items(…)`: computed when the query runs, not
//! when it is planned, so that a prepared statement binds its `$n` parameters into the
//! arguments and serves the model version that is active at execution.
//!
//! Its `$n` parameters are read through `sql::arguments` when the query executes; it is an
//! `sql::execution_table::Answer`, which tells Describe which types they have.

use crate::error::{Error, Result};
use crate::ml::TrainedModel;
use crate::models::ModelRegistry;
use crate::models::cache::{CacheKey, PredictionCache};
use crate::models::live::Live;
use crate::models::new_items::NewItems;
use crate::models::ranking;
use crate::models::registry::IdType;
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
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The arguments of `recommend` and `similar_items`: (model, id, k), then a filter query and
/// `exact`, by position or by name.
pub const RANKING_SIGNATURES: [QuerySignature; 2] = [
    ranking_signature("recommend"),
    ranking_signature("similar_items"),
];

const fn ranking_signature(function: &'static str) -> QuerySignature {
    QuerySignature {
        function,
        positional: &["model", "id", "k"],
        named: &["filter", "exact"],
        query: 3,
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
    /// The events written since each model's active version was trained.
    pub live: Arc<ServingLive>,
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
}

/// A candidate filter: the query whose first column lists the eligible item ids.
#[derive(Debug)]
struct Filter {
    plan: LogicalPlan,
    sql: String,
}

/// The lazily computed ranking of one call.
#[derive(Debug)]
pub struct RankingTable {
    serving: Serving,
    ranking: Ranking,
    model: String,
    id: Arg,
    k: Arg,
    filter: Option<Filter>,
    exact: bool,
    id_type: IdType,
    schema: SchemaRef,
}

impl RankingTable {
    /// The table of `ranking` over `args` (model, id, k, then optionally a filter and
    /// `exact`); the model must be a constant, as it decides the columns.
    pub fn new(serving: Serving, ranking: Ranking, args: &[Expr]) -> Result<Self> {
        let function = ranking.name();
        let signature = ranking_signature(function);
        let named = |name: &str| signature.position(name).and_then(|at| args.get(at));
        let (model, id, k) = match args {
            [model, id, k, rest @ ..] if rest.len() <= signature.named.len() => (model, id, k),
            _ => {
                return Err(Error::InvalidParameter(format!(
                    "{function}() takes (model, id, k [, filter => query] [, exact => bool]), \
                     not {} arguments",
                    args.len()
                )));
            }
        };
        let Arg::Value(model) = Arg::from_expr(function, model)? else {
            return Err(Error::FeatureNotSupported(format!(
                "{function}(): the model name must be written in the query, not a parameter"
            )));
        };
        let model = arguments::text(function, "model", &model)?;
        let entry = serving.registry.get(&model)?;
        let version = entry.active().ok_or_else(|| {
            Error::UndefinedObject(format!("model \"{model}\" has no active version"))
        })?;
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
        let exact = match named("exact") {
            None | Some(Expr::Literal(ScalarValue::Null, _)) => false,
            Some(Expr::Literal(ScalarValue::Boolean(Some(exact)), _)) => *exact,
            Some(other) => {
                return Err(Error::InvalidParameter(format!(
                    "{function}(): exact must be true or false, not {other}"
                )));
            }
        };
        let id_type = match ranking {
            Ranking::Recommend => version.user_type,
            Ranking::SimilarItems => version.item_type,
        };
        let schema = schema(version.item_type, ranking == Ranking::Recommend);
        Ok(RankingTable {
            serving,
            ranking,
            model,
            id,
            k,
            filter,
            exact,
            id_type,
            schema,
        })
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
        let registry = &self.serving.registry;
        let (version, trained) = registry.active(&self.model)?;
        let id = arguments::text(function, "id", &self.id.resolve(function)?)?;
        let k = count(function, &self.k.resolve(function)?)?;
        let item_type = version.item_type;
        let use_index = !self.exact && trained.item_ids.len() > config.ann_threshold;
        let index = match use_index {
            true => registry.item_index(&self.model, &version, &trained)?,
            false => None,
        };
        let delta = self
            .serving
            .live
            .delta(&planning, &version, &trained)
            .await?;
        let new = delta.new_items();
        let eligible = match &self.filter {
            Some(filter) => {
                let state = planning.state();
                Some(eligible_items(&*state, &filter.plan, &trained, &new).await?)
            }
            None => None,
        };
        match self.ranking {
            Ranking::Recommend => {
                let compute = || {
                    let user = trained.user_index(&id);
                    let newer: Vec<(usize, f32)> = delta
                        .newer(&id)
                        .into_iter()
                        .filter_map(|(item, weight)| {
                            let index = trained.item_index(&item).or_else(|| new.index(&item));
                            Some((index?, weight))
                        })
                        .collect();
                    let profile = match newer.is_empty() {
                        true => trained.profile(user),
                        false => trained.profile_with(user, &newer, delta.fold(), new.vectors()),
                    };
                    let items = ranking::recommend(
                        &trained,
                        &new,
                        &profile,
                        k,
                        index.as_deref(),
                        eligible.as_deref(),
                    );
                    Arc::new(Ranked {
                        items,
                        cold_start: user.is_none() && newer.is_empty(),
                        folded_in: !newer.is_empty(),
                        rows: OnceLock::new(),
                    })
                };
                let ranked = if config.cache_ttl_seconds == 0 {
                    compute()
                } else {
                    let cache = &self.serving.cache;
                    let key = CacheKey {
                        model: self.model.clone(),
                        user: id.clone(),
                        k,
                        options: format!(
                            "{}|{}",
                            self.filter.as_ref().map_or("", |f| f.sql.as_str()),
                            self.exact
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
                // a cached ranking keeps the rows it was first served as
                if let Some(rows) = ranked.rows.get()
                    && rows.schema() == self.schema
                {
                    let rows = rows.clone();
                    return Ok(Answered { rows, reused: true });
                }
                let flags = (ranked.cold_start, ranked.folded_in);
                let rows = batch(
                    &self.schema,
                    &trained,
                    &new,
                    &ranked.items,
                    item_type,
                    Some(flags),
                )?;
                let _ = ranked.rows.set(rows.clone());
                Ok(Answered {
                    rows,
                    reused: false,
                })
            }
            Ranking::SimilarItems => {
                let ranked = ranking::similar(
                    &self.model,
                    &version.algorithm,
                    &trained,
                    &new,
                    &id,
                    k,
                    index.as_deref(),
                    eligible.as_deref(),
                )?;
                let rows = batch(&self.schema, &trained, &new, &ranked, item_type, None)?;
                Ok(Answered {
                    rows,
                    reused: false,
                })
            }
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

fn schema(item_type: IdType, user_flags: bool) -> SchemaRef {
    let id_type = match item_type {
        IdType::Text => DataType::Utf8,
        IdType::BigInt => DataType::Int64,
    };
    let mut fields = vec![
        Field::new("item_id", id_type, false),
        Field::new("score", DataType::Float64, false),
        Field::new("rank", DataType::Int64, false),
    ];
    if user_flags {
        fields.push(Field::new("cold_start", DataType::Boolean, false));
        fields.push(Field::new("folded_in", DataType::Boolean, false));
    }
    Arc::new(Schema::new(fields))
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
    user_flags: Option<(bool, bool)>,
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
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
