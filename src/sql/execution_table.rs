//! Tables of TasteDB's table functions computed when their statement runs, not when it is
//! planned (`recommend`, `similar_items`, `online_features`, `nearest`,
//! `historical_features`): a prepared statement
//! binds its `$n` parameters into their arguments at each execution and sees the data as it is
//! then. A function's table implements [`Answer`] and is wrapped in [`ExecutionTable`], which
//! DataFusion scans; the prepared fast path (`engine::fast_path::ServingQuery`) asks the
//! [`Answer`] for its rows directly, without planning the query again.

use crate::error::{Error, Result};
use crate::sql::config::TasteConfig;
use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::{MemTable, TableType, source_as_provider};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// Where a state to plan with comes from, for a table that must plan a query as it answers
/// (the source of a model version's first live delta, a filter query). A query planned by
/// DataFusion hands its own; the fast path makes one only when needed, since copying the
/// engine's state costs more than most answers.
pub enum Planning<'a> {
    /// The state of the query being run.
    State(&'a SessionState),
    /// Made on demand.
    Later(&'a (dyn Fn() -> SessionState + Send + Sync)),
}

impl Planning<'_> {
    /// The state: borrowed, or made now.
    pub fn state(&self) -> Cow<'_, SessionState> {
        match self {
            Planning::State(state) => Cow::Borrowed(*state),
            Planning::Later(make) => Cow::Owned(make()),
        }
    }
}

/// A table function's rows, computed at execution.
#[async_trait]
pub trait Answer: std::fmt::Debug + Send + Sync {
    /// The schema of its rows.
    fn schema(&self) -> SchemaRef;

    /// The types of its `$n` parameters, by placeholder id.
    fn parameter_types(&self) -> Vec<(String, DataType)>;

    /// True when it answers without planning a query of its own (no filter query), so that a
    /// prepared statement may ask it for its rows directly.
    fn answers_without_planning(&self) -> bool {
        true
    }

    /// Its rows under the settings `config`, reading `$n` parameters from
    /// `sql::arguments::with_parameters`; `planning` plans what it must.
    async fn answer(&self, config: &TasteConfig, planning: Planning<'_>) -> Result<RecordBatch>;

    /// Like [`Answer::answer`], saying whether the rows are the very arrays of an earlier
    /// answer (a cached one), whose encoding for the wire may then be sent again.
    async fn answer_reused(
        &self,
        config: &TasteConfig,
        planning: Planning<'_>,
    ) -> Result<Answered> {
        Ok(Answered {
            rows: self.answer(config, planning).await?,
            reused: false,
        })
    }
}

/// An [`Answer`]'s rows, and whether they were reused.
pub struct Answered {
    /// The rows.
    pub rows: RecordBatch,
    /// Whether they are the arrays of an earlier answer.
    pub reused: bool,
}

/// The table DataFusion scans for an [`Answer`].
#[derive(Debug)]
pub struct ExecutionTable(pub Arc<dyn Answer>);

impl ExecutionTable {
    /// The table of `answer`.
    pub fn of(answer: impl Answer + 'static) -> Arc<dyn TableProvider> {
        Arc::new(ExecutionTable(Arc::new(answer)))
    }
}

#[async_trait]
impl TableProvider for ExecutionTable {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
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
        let config = (state.config_options().extensions.get::<TasteConfig>())
            .cloned()
            .unwrap_or_default();
        let Some(session_state) = state.as_any().downcast_ref::<SessionState>() else {
            let outside = Error::Internal("a table function scanned outside a session".into());
            return Err(outside.into_datafusion());
        };
        let rows = (self.0.answer(&config, Planning::State(session_state)).await)
            .map_err(Error::into_datafusion)?;
        let table = MemTable::try_new(self.0.schema(), vec![vec![rows]])?;
        table.scan(state, projection, filters, limit).await
    }
}

/// Types of the `$n` parameters that the table functions in `plan` take.
pub fn parameter_types(plan: &LogicalPlan) -> HashMap<String, DataType> {
    let mut types = HashMap::new();
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(table) = provider.downcast_ref::<ExecutionTable>()
        {
            types.extend(table.0.parameter_types());
        }
        let _ = node.apply_subqueries(|subquery| {
            types.extend(parameter_types(subquery));
            Ok(TreeNodeRecursion::Continue)
        });
        Ok(TreeNodeRecursion::Continue)
    });
    types
}
