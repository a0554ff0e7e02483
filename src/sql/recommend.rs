//! Serving in SQL: the table functions `recommend(model, user, k)` and
//! `similar_items(model, item, k)`, and the scalar `predict(model, user, item)`. Each reads
//! the model's active version from the registry (loaded once, then kept in memory).

use crate::catalog::ModelRegistry;
use crate::catalog::models::IdType;
use crate::error::{Error, Result};
use crate::ml::TrainedModel;
use crate::ml::model::{Scorer, dot, top_k};
use crate::sql::recommend_items::RecommendItems;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use std::sync::Arc;

/// Registers `recommend`, `similar_items`, `recommend_items` and `predict` on `ctx`.
pub fn register(ctx: &SessionContext, registry: Arc<ModelRegistry>) {
    ctx.register_udtf(
        "recommend",
        Arc::new(Recommend {
            registry: registry.clone(),
        }),
    );
    ctx.register_udtf(
        "similar_items",
        Arc::new(SimilarItems {
            registry: registry.clone(),
        }),
    );
    ctx.register_udf(ScalarUDF::from(RecommendItems::new(registry.clone())));
    ctx.register_udf(ScalarUDF::from(Predict {
        registry,
        signature: Signature::any(3, Volatility::Volatile),
    }));
}

/// `recommend('model', user, k)`: item_id, score, rank (1..k), and whether the user was
/// unknown to the model (`cold_start`, then the ranking is by popularity).
#[derive(Debug)]
struct Recommend {
    registry: Arc<ModelRegistry>,
}

impl TableFunctionImpl for Recommend {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        let run = || -> Result<Arc<dyn TableProvider>> {
            let [model, user, k] = constant_args("recommend", args.exprs())?;
            let (version, trained) =
                self.registry
                    .active(&text_arg("recommend", "model", &model)?)?;
            let user = text_arg("recommend", "user", &user)?;
            let k = k_arg("recommend", &k)?;
            let index = trained.user_index(&user);
            let ranked = trained.recommend(index, k);
            let cold = vec![index.is_none(); ranked.len()];
            let table = ranking(&trained, &ranked, version.item_type, Some(cold))?;
            Ok(table)
        };
        run().map_err(Error::into_datafusion)
    }
}

/// `similar_items('model', item, k)`: the items whose factors are closest in cosine.
#[derive(Debug)]
struct SimilarItems {
    registry: Arc<ModelRegistry>,
}

impl TableFunctionImpl for SimilarItems {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        let run = || -> Result<Arc<dyn TableProvider>> {
            let [model, item, k] = constant_args("similar_items", args.exprs())?;
            let name = text_arg("similar_items", "model", &model)?;
            let (version, trained) = self.registry.active(&name)?;
            let item = text_arg("similar_items", "item", &item)?;
            let k = k_arg("similar_items", &k)?;
            let Some(index) = trained.item_index(&item) else {
                return Err(Error::InvalidParameter(format!(
                    "item \"{item}\" is not known to model \"{name}\""
                )));
            };
            let Scorer::Factors { factors, items, .. } = &trained.scorer else {
                return Err(Error::FeatureNotSupported(format!(
                    "model \"{name}\" ({}) has no item vectors; similar_items needs a factor model such as als",
                    version.algorithm
                )));
            };
            let norm = |v: &[f32]| dot(v, v).sqrt().max(1e-10);
            let target = &items[index * factors..(index + 1) * factors];
            let mut scores: Vec<f32> = items
                .chunks_exact(*factors)
                .map(|y| dot(target, y) / (norm(target) * norm(y)))
                .collect();
            scores[index] = f32::NEG_INFINITY;
            ranking(&trained, &top_k(&scores, k), version.item_type, None)
        };
        run().map_err(Error::into_datafusion)
    }
}

/// The arguments as constants; placeholders and columns are refused with a clear error.
fn constant_args(function: &str, exprs: &[Expr]) -> Result<[ScalarValue; 3]> {
    let values: Vec<ScalarValue> = exprs
        .iter()
        .map(|expr| match expr {
            Expr::Literal(value, _) => Ok(value.clone()),
            Expr::Placeholder(p) => Err(Error::FeatureNotSupported(format!(
                "{function}() cannot take the parameter {} yet; put the value in the query text",
                p.id
            ))),
            other => Err(Error::FeatureNotSupported(format!(
                "{function}() takes constants, not {other}"
            ))),
        })
        .collect::<Result<_>>()?;
    values.try_into().map_err(|values: Vec<ScalarValue>| {
        Error::InvalidParameter(format!(
            "{function}() takes 3 arguments (model, id, k), not {}",
            values.len()
        ))
    })
}

fn text_arg(function: &str, what: &str, value: &ScalarValue) -> Result<String> {
    if value.is_null() {
        return Err(Error::InvalidParameter(format!(
            "{function}(): {what} is NULL"
        )));
    }
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Ok(s.clone()),
        v if v.data_type().is_integer() => Ok(v.to_string()),
        other => Err(Error::DatatypeMismatch(format!(
            "{function}(): {what} must be text or an integer, not {}",
            other.data_type()
        ))),
    }
}

fn k_arg(function: &str, value: &ScalarValue) -> Result<usize> {
    let k = match value.cast_to(&DataType::Int64) {
        Ok(ScalarValue::Int64(Some(k))) => k,
        _ => {
            return Err(Error::InvalidParameter(format!(
                "{function}(): k must be a positive integer, not {value}"
            )));
        }
    };
    if k <= 0 {
        return Err(Error::InvalidParameter(format!(
            "{function}(): k must be a positive integer, not {k}"
        )));
    }
    Ok(k.min(1_000_000) as usize)
}

/// A ranking as a table: item_id (in the source's type), score, rank, [cold_start].
fn ranking(
    model: &TrainedModel,
    ranked: &[(usize, f32)],
    item_type: IdType,
    cold_start: Option<Vec<bool>>,
) -> Result<Arc<dyn TableProvider>> {
    let ids = StringArray::from_iter_values(ranked.iter().map(|(i, _)| &model.item_ids[*i]));
    let (id_type, ids): (DataType, ArrayRef) = match item_type {
        IdType::Text => (DataType::Utf8, Arc::new(ids)),
        IdType::BigInt => (DataType::Int64, cast(&ids, &DataType::Int64)?),
    };
    let mut fields = vec![
        Field::new("item_id", id_type, false),
        Field::new("score", DataType::Float64, false),
        Field::new("rank", DataType::Int64, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        ids,
        Arc::new(Float64Array::from_iter_values(
            ranked.iter().map(|(_, s)| f64::from(*s)),
        )),
        Arc::new(Int64Array::from_iter_values(1..=ranked.len() as i64)),
    ];
    if let Some(cold) = cold_start {
        fields.push(Field::new("cold_start", DataType::Boolean, false));
        columns.push(Arc::new(BooleanArray::from(cold)));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// `predict('model', user, item)`: the model's score for each (user, item) row; NULL when
/// either is unknown to the model.
#[derive(Debug)]
struct Predict {
    registry: Arc<ModelRegistry>,
    signature: Signature,
}

impl PartialEq for Predict {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.registry, &other.registry)
    }
}

impl Eq for Predict {}

impl std::hash::Hash for Predict {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "predict".hash(state);
    }
}

impl ScalarUDFImpl for Predict {
    fn name(&self) -> &str {
        "predict"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let rows = args.number_rows;
        let run = || -> Result<ColumnarValue> {
            let arrays: Vec<ArrayRef> = args
                .args
                .iter()
                .map(|a| {
                    a.to_array(rows)
                        .and_then(|a| Ok(cast(&a, &DataType::Utf8)?))
                })
                .collect::<datafusion::common::Result<_>>()?;
            let [models, users, items] =
                [&arrays[0], &arrays[1], &arrays[2]].map(|a| a.as_string::<i32>());
            let mut scores = Vec::with_capacity(rows);
            let mut current: Option<(String, Arc<TrainedModel>)> = None;
            for row in 0..rows {
                if models.is_null(row) || users.is_null(row) || items.is_null(row) {
                    scores.push(None);
                    continue;
                }
                let name = models.value(row);
                if current.as_ref().is_none_or(|(n, _)| n != name) {
                    current = Some((name.to_string(), self.registry.active(name)?.1));
                }
                let Some((_, model)) = &current else { continue };
                let user = model.user_index(users.value(row));
                let item = model.item_index(items.value(row));
                scores.push(item.map(|i| f64::from(model.score(user, i))));
            }
            Ok(ColumnarValue::Array(Arc::new(Float64Array::from(scores))))
        };
        run().map_err(Error::into_datafusion)
    }
}
