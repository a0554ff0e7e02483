//! Serving in SQL: the table functions `recommend(model, user, k)` and
//! `similar_items(model, item, k)`, and the scalar `predict(model, user, item)`. Each reads
//! the model's active version from the registry (loaded once, then kept in memory).

use crate::error::{Error, Result};
use crate::ml::TrainedModel;
use crate::models::ModelRegistry;
use crate::models::ranking_table::{Ranking, RankingTable, Serving};
use crate::models::recommend_items::RecommendItems;
use crate::sql::execution_table::ExecutionTable;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use std::sync::Arc;

/// Registers `recommend`, `similar_items`, `explain_recommendation`, `recommend_items` and
/// `predict` on `ctx`.
pub fn register_functions(ctx: &SessionContext, serving: Serving) {
    let registry = serving.registry.clone();
    ctx.register_udtf(
        "recommend",
        Arc::new(Recommend {
            serving: serving.clone(),
        }),
    );
    crate::models::explain::register_function(ctx, &serving);
    ctx.register_udtf("similar_items", Arc::new(SimilarItems { serving }));
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
    serving: Serving,
}

impl TableFunctionImpl for Recommend {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        RankingTable::new(self.serving.clone(), Ranking::Recommend, args.exprs())
            .map(ExecutionTable::of)
            .map_err(Error::into_datafusion)
    }
}

/// `similar_items('model', item, k)`: the items whose factors are closest in cosine.
#[derive(Debug)]
struct SimilarItems {
    serving: Serving,
}

impl TableFunctionImpl for SimilarItems {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        RankingTable::new(self.serving.clone(), Ranking::SimilarItems, args.exprs())
            .map(ExecutionTable::of)
            .map_err(Error::into_datafusion)
    }
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
