//! `explain_recommendation('recs', 'u42', 'i7' [, n])`: the user's items that contributed most
//! to the item's score, with their contribution (see [`crate::ml::explain`]): `item_id`,
//! `contribution`, `rank`, the user's summed `weight` on that item, and the `score` the
//! contributions of all their items add up to. The user's items are those the version was
//! trained with and their events since (the live delta), as `recommend` folds them in.

use crate::error::{Error, Result};
use crate::ml::TrainedModel;
use crate::ml::explain::explain;
use crate::models::live::Delta;
use crate::models::new_items::NewItems;
use crate::models::ranking_table::Serving;
use crate::models::registry::{IdType, Pin};
use crate::sql::arguments::{self, Arg};
use crate::sql::config::TasteConfig;
use crate::sql::execution_table::{Answer, ExecutionTable, Planning};
use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::prelude::SessionContext;
use std::collections::BTreeMap;
use std::sync::Arc;

const FUNCTION: &str = "explain_recommendation";

/// Reasons listed when `n` is not given.
const DEFAULT_REASONS: i64 = 10;

/// Registers `explain_recommendation` on `ctx`.
pub fn register_function(ctx: &SessionContext, serving: &Serving) {
    let serving = serving.clone();
    ctx.register_udtf(FUNCTION, Arc::new(ExplainFunction { serving }));
}

#[derive(Debug)]
struct ExplainFunction {
    serving: Serving,
}

impl TableFunctionImpl for ExplainFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        Explanation::new(self.serving.clone(), args.exprs())
            .map(ExecutionTable::of)
            .map_err(Error::into_datafusion)
    }
}

/// The explanation of one (user, item), computed when the query runs.
#[derive(Debug)]
struct Explanation {
    serving: Serving,
    model: String,
    pin: Pin,
    user: Arg,
    item: Arg,
    n: Option<Arg>,
    types: (IdType, IdType),
}

impl Explanation {
    fn new(serving: Serving, args: &[datafusion::logical_expr::Expr]) -> Result<Explanation> {
        let (model, user, item, n) = match args {
            [model, user, item] => (model, user, item, None),
            [model, user, item, n] => (model, user, item, Some(n)),
            _ => {
                return Err(Error::InvalidParameter(format!(
                    "{FUNCTION}() takes (model, user, item [, n]), not {} arguments",
                    args.len()
                )));
            }
        };
        let model = arguments::text(FUNCTION, "model", &arguments::constant(FUNCTION, model)?)?;
        let (model, pin) = Pin::split(&model);
        let entry = serving.registry.get(model)?;
        let version = entry.require(&pin)?;
        explainable(FUNCTION, &version.algorithm)?;
        Ok(Explanation {
            types: (version.user_type, version.item_type),
            model: model.to_string(),
            pin,
            user: Arg::from_expr(FUNCTION, user)?,
            item: Arg::from_expr(FUNCTION, item)?,
            n: n.map(|n| Arg::from_expr(FUNCTION, n)).transpose()?,
            serving,
        })
    }
}

/// Refuses (0A000) to explain a model of `algorithm` when its scores have no decomposition by
/// the user's items (BPR); `function` names the caller.
pub fn explainable(function: &str, algorithm: &str) -> Result<()> {
    match algorithm {
        "bpr" => Err(Error::FeatureNotSupported(format!(
            "{function}(): BPR's scores have no decomposition by the user's items; ALS, EASE, \
             item k-NN and popularity models are explained"
        ))),
        _ => Ok(()),
    }
}

/// The user's summed weight on each item (by index): the events the version was trained with
/// and those since (the live delta), as `recommend` folds them in.
pub fn user_weights(
    trained: &TrainedModel,
    delta: &Delta,
    new: &NewItems,
    user: &str,
) -> BTreeMap<usize, f32> {
    let mut weights: BTreeMap<usize, f32> = BTreeMap::new();
    if let Some(u) = trained.user_index(user) {
        let (items, values) = trained.seen.row(u);
        for (&i, &w) in items.iter().zip(values) {
            *weights.entry(i as usize).or_default() += w;
        }
    }
    for (id, w) in delta.newer(user) {
        if let Some(i) = trained.item_index(&id).or_else(|| new.index(&id)) {
            *weights.entry(i).or_default() += w;
        }
    }
    weights
}

/// The item of the user's (`weights`) that contributed most to `item`'s score, if one
/// contributed at all: what `recommend(…, explain => true)` shows as `because`. None for a
/// user without events and for popularity models, whose scores no item of the user's makes.
pub fn because(
    trained: &TrainedModel,
    delta: &Delta,
    new: &NewItems,
    weights: &BTreeMap<usize, f32>,
    item: usize,
) -> Option<usize> {
    if weights.is_empty() || matches!(trained.scorer, crate::ml::Scorer::Popularity(_)) {
        return None;
    }
    let reasons = explain(trained, weights, item, delta.fold(), new.vectors())?;
    let best = reasons.into_iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
    (best.1 > 0.0).then_some(best.0)
}

fn arrow_type(id: IdType) -> DataType {
    match id {
        IdType::Text => DataType::Utf8,
        IdType::BigInt => DataType::Int64,
    }
}

#[async_trait]
impl Answer for Explanation {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("item_id", arrow_type(self.types.1), false),
            Field::new("contribution", DataType::Float64, false),
            Field::new("rank", DataType::Int64, false),
            Field::new("weight", DataType::Float64, true),
            Field::new("score", DataType::Float64, false),
        ]))
    }

    fn parameter_types(&self) -> Vec<(String, DataType)> {
        let mut types = self.user.parameter_types(arrow_type(self.types.0));
        types.extend(self.item.parameter_types(arrow_type(self.types.1)));
        if let Some(n) = &self.n {
            types.extend(n.parameter_types(DataType::Int64));
        }
        types
    }

    async fn answer(&self, _: &TasteConfig, planning: Planning<'_>) -> Result<RecordBatch> {
        let user = arguments::text(FUNCTION, "user", &self.user.resolve(FUNCTION)?)?;
        let item = arguments::text(FUNCTION, "item", &self.item.resolve(FUNCTION)?)?;
        let n = match &self.n {
            Some(n) => arguments::integer(&n.resolve(FUNCTION)?),
            None => Some(DEFAULT_REASONS),
        };
        let n = match n {
            Some(n) if n > 0 => n as usize,
            _ => {
                return Err(Error::InvalidParameter(format!(
                    "{FUNCTION}(): n must be a positive integer"
                )));
            }
        };
        let (version, trained) = self.serving.registry.pinned(&self.model, &self.pin)?;
        let delta = self
            .serving
            .live
            .delta(&planning, &version, &trained)
            .await?;
        let new = delta.new_items();
        let target = (trained.item_index(&item).or_else(|| new.index(&item))).ok_or_else(|| {
            Error::InvalidParameter(format!(
                "{FUNCTION}(): item \"{item}\" is unknown to model \"{}\"",
                self.model
            ))
        })?;
        let weights = user_weights(&trained, &delta, &new, &user);
        let reasons = explain(&trained, &weights, target, delta.fold(), new.vectors());
        let mut reasons = reasons.ok_or_else(|| {
            Error::FeatureNotSupported(format!(
                "{FUNCTION}(): model \"{}\" version {} has no explanation",
                self.model, version.version
            ))
        })?;
        let score: f64 = reasons.iter().map(|&(_, share)| f64::from(share)).sum();
        reasons.sort_by(|a, b| b.1.total_cmp(&a.1));
        reasons.truncate(n);
        let id_of = |i: usize| match trained.item_ids.get(i) {
            Some(id) => id.as_str(),
            None => new.id(i).unwrap_or_default(),
        };
        let ids = StringArray::from_iter_values(reasons.iter().map(|&(i, _)| id_of(i)));
        let columns: Vec<ArrayRef> = vec![
            cast(&ids, &arrow_type(self.types.1))?,
            Arc::new(Float64Array::from_iter_values(
                reasons.iter().map(|&(_, share)| f64::from(share)),
            )),
            Arc::new(Int64Array::from_iter_values(1..=reasons.len() as i64)),
            Arc::new(Float64Array::from_iter(
                reasons
                    .iter()
                    .map(|(i, _)| weights.get(i).map(|&w| f64::from(w))),
            )),
            Arc::new(Float64Array::from_iter_values(
                reasons.iter().map(|_| score),
            )),
        ];
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}
