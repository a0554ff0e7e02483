//! Prepared serving queries: `SELECT columns FROM recommend('m', $1, 10)` and
//! `similar_items(…)` without a filter, answered at each execution by the ranking itself (the
//! model's active version, the prediction cache, the live delta, as on the general path),
//! without DataFusion binding, optimising and planning the query again.

use crate::engine::{Engine, Outcome};
use crate::error::Result;
use crate::models::ranking_table::RankingTable;
use crate::sql::arguments::with_parameters;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::ParamValues;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, LogicalPlan};
use std::sync::Arc;

/// A recognised serving query: the ranking table its plan reads, and which of its columns.
#[derive(Debug, Clone)]
pub struct ServingQuery {
    table: Arc<dyn TableProvider>,
    projection: Vec<usize>,
    schema: SchemaRef,
}

impl ServingQuery {
    /// Recognises `Projection(columns) ← [SubqueryAlias] ← TableScan(ranking table)`, the
    /// ranking without a filter query.
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
        let ranking = table.downcast_ref::<RankingTable>()?;
        if !ranking.answers_without_planning() {
            return None;
        }
        let columns = table.schema();
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
            table,
            projection,
            schema,
        })
    }

    /// The ranking for `values`, as the prepared query's rows.
    pub async fn run(&self, engine: &Engine, values: &ParamValues) -> Result<Option<Outcome>> {
        let Some(ranking) = self.table.downcast_ref::<RankingTable>() else {
            return Ok(None);
        };
        let state = engine.statement_state();
        let rows = with_parameters(values.clone(), ranking.answer(&state)).await?;
        let columns = (self.projection.iter())
            .map(|&i| rows.column(i).clone())
            .collect();
        Outcome::batch(RecordBatch::try_new(self.schema.clone(), columns)?).map(Some)
    }
}
