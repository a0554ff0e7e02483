//! The table behind `recommend(…)` and `similar_items(…)`: computed when the query runs, not
//! when it is planned, so that a prepared statement binds its `$n` parameters into the
//! arguments and serves the model version that is active at execution.
//!
//! DataFusion binds parameter values into expressions of the plan, but a table function's
//! arguments live inside its provider, where binding cannot reach; the wire server therefore
//! runs a bound statement inside [`with_parameters`], and the table reads its parameters from
//! there. [`parameter_types`] tells Describe which types those parameters have.

use crate::catalog::ModelRegistry;
use crate::catalog::models::IdType;
use crate::error::{Error, Result};
use crate::ml::TrainedModel;
use crate::ml::kernels::dot;
use crate::ml::model::{Scorer, top_k};
use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::datasource::{MemTable, TableType, source_as_provider};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

tokio::task_local! {
    static PARAMETERS: ParamValues;
}

/// Runs `future` with `values` bound to the `$n` parameters of ranking tables it plans.
pub async fn with_parameters<F: Future>(values: ParamValues, future: F) -> F::Output {
    PARAMETERS.scope(values, future).await
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

/// An argument: a constant, or a `$n` parameter bound at execution.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A constant.
    Value(ScalarValue),
    /// The parameter `$n`.
    Parameter(String),
}

impl Arg {
    /// The argument `expr` of `function`; columns and other expressions are refused.
    pub fn from_expr(function: &str, expr: &Expr) -> Result<Arg> {
        match expr {
            Expr::Literal(value, _) => Ok(Arg::Value(value.clone())),
            Expr::Placeholder(p) => Ok(Arg::Parameter(p.id.clone())),
            other => Err(Error::FeatureNotSupported(format!(
                "{function}() takes constants or parameters, not {other}; \
                 for a column of users use recommend_items()"
            ))),
        }
    }

    fn resolve(&self, function: &str) -> Result<ScalarValue> {
        match self {
            Arg::Value(value) => Ok(value.clone()),
            Arg::Parameter(id) => PARAMETERS
                .try_with(|values| values.get_placeholders_with_values(id))
                .map_err(|_| {
                    Error::InvalidParameter(format!("{function}(): no value bound for {id}"))
                })?
                .map(|bound| bound.value)
                .map_err(Error::from),
        }
    }
}

/// The lazily computed ranking of one call.
#[derive(Debug)]
pub struct RankingTable {
    registry: Arc<ModelRegistry>,
    ranking: Ranking,
    model: String,
    id: Arg,
    k: Arg,
    id_type: IdType,
    schema: SchemaRef,
}

impl RankingTable {
    /// The table of `ranking` over `args` (model, id, k); the model must be a constant, as
    /// it decides the columns.
    pub fn new(registry: Arc<ModelRegistry>, ranking: Ranking, args: &[Expr]) -> Result<Self> {
        let function = ranking.name();
        let [model, id, k] = args else {
            return Err(Error::InvalidParameter(format!(
                "{function}() takes 3 arguments (model, id, k), not {}",
                args.len()
            )));
        };
        let Arg::Value(model) = Arg::from_expr(function, model)? else {
            return Err(Error::FeatureNotSupported(format!(
                "{function}(): the model name must be written in the query, not a parameter"
            )));
        };
        let model = text(function, "model", &model)?;
        let entry = registry.get(&model)?;
        let version = entry.active().ok_or_else(|| {
            Error::UndefinedObject(format!("model \"{model}\" has no active version"))
        })?;
        let (id, k) = (Arg::from_expr(function, id)?, Arg::from_expr(function, k)?);
        if let Arg::Value(k) = &k {
            count(function, k)?;
        }
        let id_type = match ranking {
            Ranking::Recommend => version.user_type,
            Ranking::SimilarItems => version.item_type,
        };
        let schema = schema(version.item_type, ranking == Ranking::Recommend);
        Ok(RankingTable {
            registry,
            ranking,
            model,
            id,
            k,
            id_type,
            schema,
        })
    }

    /// The types of this call's `$n` parameters.
    fn parameter_types(&self) -> Vec<(String, DataType)> {
        let mut types = Vec::new();
        if let Arg::Parameter(id) = &self.id {
            let id_type = match self.id_type {
                IdType::Text => DataType::Utf8,
                IdType::BigInt => DataType::Int64,
            };
            types.push((id.clone(), id_type));
        }
        if let Arg::Parameter(k) = &self.k {
            types.push((k.clone(), DataType::Int64));
        }
        types
    }

    fn rows(&self) -> Result<RecordBatch> {
        let function = self.ranking.name();
        let (version, trained) = self.registry.active(&self.model)?;
        let id = text(function, "id", &self.id.resolve(function)?)?;
        let k = count(function, &self.k.resolve(function)?)?;
        let item_type = version.item_type;
        match self.ranking {
            Ranking::Recommend => {
                let index = trained.user_index(&id);
                let ranked = trained.recommend(index, k);
                let cold = vec![index.is_none(); ranked.len()];
                batch(&self.schema, &trained, &ranked, item_type, Some(cold))
            }
            Ranking::SimilarItems => {
                let ranked = similar(&self.model, &version.algorithm, &trained, &id, k)?;
                batch(&self.schema, &trained, &ranked, item_type, None)
            }
        }
    }
}

#[async_trait]
impl TableProvider for RankingTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let rows = self.rows().map_err(Error::into_datafusion)?;
        let table = MemTable::try_new(self.schema.clone(), vec![vec![rows]])?;
        table.scan(state, projection, filters, limit).await
    }
}

/// Types of the `$n` parameters that ranking tables in `plan` take.
pub fn parameter_types(plan: &LogicalPlan) -> HashMap<String, DataType> {
    let mut types = HashMap::new();
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(table) = provider.downcast_ref::<RankingTable>()
        {
            types.extend(table.parameter_types());
        }
        let _ = node.apply_subqueries(|subquery| {
            types.extend(parameter_types(subquery));
            Ok(TreeNodeRecursion::Continue)
        });
        Ok(TreeNodeRecursion::Continue)
    });
    types
}

fn schema(item_type: IdType, cold_start: bool) -> SchemaRef {
    let id_type = match item_type {
        IdType::Text => DataType::Utf8,
        IdType::BigInt => DataType::Int64,
    };
    let mut fields = vec![
        Field::new("item_id", id_type, false),
        Field::new("score", DataType::Float64, false),
        Field::new("rank", DataType::Int64, false),
    ];
    if cold_start {
        fields.push(Field::new("cold_start", DataType::Boolean, false));
    }
    Arc::new(Schema::new(fields))
}

fn similar(
    name: &str,
    algorithm: &str,
    trained: &TrainedModel,
    item: &str,
    k: usize,
) -> Result<Vec<(usize, f32)>> {
    let Some(index) = trained.item_index(item) else {
        return Err(Error::InvalidParameter(format!(
            "item \"{item}\" is not known to model \"{name}\""
        )));
    };
    let Scorer::Factors { factors, items, .. } = &trained.scorer else {
        return Err(Error::FeatureNotSupported(format!(
            "model \"{name}\" ({algorithm}) has no item vectors; similar_items needs a factor \
             model such as als"
        )));
    };
    let norm = |v: &[f32]| dot(v, v).sqrt().max(1e-10);
    let target = &items[index * factors..(index + 1) * factors];
    let mut scores: Vec<f32> = items
        .chunks_exact(*factors)
        .map(|y| dot(target, y) / (norm(target) * norm(y)))
        .collect();
    scores[index] = f32::NEG_INFINITY;
    Ok(top_k(&scores, k))
}

fn text(function: &str, what: &str, value: &ScalarValue) -> Result<String> {
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

fn count(function: &str, value: &ScalarValue) -> Result<usize> {
    match value.cast_to(&DataType::Int64) {
        Ok(ScalarValue::Int64(Some(k))) if k > 0 => Ok(k.min(1_000_000) as usize),
        _ => Err(Error::InvalidParameter(format!(
            "{function}(): k must be a positive integer, not {value}"
        ))),
    }
}

fn batch(
    schema: &SchemaRef,
    model: &TrainedModel,
    ranked: &[(usize, f32)],
    item_type: IdType,
    cold_start: Option<Vec<bool>>,
) -> Result<RecordBatch> {
    let ids = StringArray::from_iter_values(ranked.iter().map(|(i, _)| &model.item_ids[*i]));
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
    if let Some(cold) = cold_start {
        columns.push(Arc::new(BooleanArray::from(cold)));
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
