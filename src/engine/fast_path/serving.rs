//! Prepared serving queries: `SELECT columns FROM f(…)` where `f` is a table function whose
//! table is computed at execution (`recommend`, `similar_items` without a filter,
//! `online_features`, `nearest`; see `sql::execution_table`), answered at each execution by
//! that table itself, without DataFusion binding, optimising and planning the query again.

use crate::engine::{Engine, Outcome};
use crate::error::Result;
use crate::sql::arguments::with_parameters;
use crate::sql::execution_table::{Answer, ExecutionTable, Planning};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ParamValues;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, LogicalPlan};
use std::sync::Arc;

/// A recognised serving query: the table function's answer its plan reads, and which of its
/// columns.
#[derive(Debug, Clone)]
pub struct ServingQuery {
    answer: Arc<dyn Answer>,
    projection: Vec<usize>,
    schema: SchemaRef,
}

impl ServingQuery {
    /// Recognises `Projection(columns) ← [SubqueryAlias] ← TableScan(execution table)`, a
    /// table function's columns without a filter, order or limit.
    pub fn recognise(plan: &LogicalPlan) -> Option<ServingQuery> {
        let LogicalPlan::Projection(projection) = plan else {
            return None;
        };
        let scanned = match projection.input.as_ref() {
            LogicalPlan::SubqueryAlias(alias) => alias.input.as_ref(),
            other => other,
        };
        let LogicalPlan::TableScan(scan) = scanned else {
            return None;
        };
        if scan.fetch.is_some() || !scan.filters.is_empty() || scan.projection.is_some() {
            return None;
        }
        let table = source_as_provider(&scan.source).ok()?;
        let answer = table.downcast_ref::<ExecutionTable>()?.0.clone();
        if !answer.answers_without_planning() {
            return None;
        }
        let columns = answer.schema();
        let projection = (projection.expr.iter())
            .map(|expr| match expr {
                Expr::Column(column) => columns.index_of(&column.name).ok(),
                _ => None,
            })
            .collect::<Option<Vec<usize>>>()?;
        let schema = Arc::new(plan.schema().as_arrow().clone());
        let types_match = (projection.iter().zip(schema.fields()))
            .all(|(&i, field)| columns.field(i).data_type() == field.data_type());
        types_match.then_some(ServingQuery {
            answer,
            projection,
            schema,
        })
    }

    /// The table function's answer for `values`, as the prepared query's rows.
    pub async fn run(&self, engine: &Engine, values: &ParamValues) -> Result<Option<Outcome>> {
        // the engine's state is copied only if the answer must plan (a model version's first
        // delta): copying it costs more than a cached ranking
        let planning = || engine.statement_state();
        let config = engine.taste_config();
        let answer = self
            .answer
            .answer_reused(&config, Planning::Later(&planning));
        let answered = with_parameters(values.clone(), answer).await?;
        // the projection keeps the answer's arrays: a reused answer stays recognisable
        let columns = (self.projection.iter())
            .map(|&i| answered.rows.column(i).clone())
            .collect();
        Ok(Some(Outcome::Batch {
            rows: RecordBatch::try_new(self.schema.clone(), columns)?,
            reused: answered.reused,
        }))
    }
}
