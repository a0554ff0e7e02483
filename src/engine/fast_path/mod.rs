//! Fast paths of prepared statements. DataFusion optimises and plans a statement again at
//! every execution, which costs far more than the read or write it does when the statement
//! touches one row; a serving or OLTP workload (a prepared lookup or update by id, executed
//! millions of times) would spend nearly all its time planning. Recognising these shapes at
//! preparation and running them directly is the plan cache DataFusion does not have:
//! - a lookup by primary key ([`PointQuery`]);
//! - an UPDATE or DELETE by primary key, or an INSERT of one row ([`PointWrite`]);
//! - the columns of a serving table function: `recommend`, `similar_items`,
//!   `online_features`, `nearest` ([`ServingQuery`]).
//!
//! Statements sent with their values written in are generalised into such prepared statements
//! ([`generalise`]), so the simple query protocol takes the fast paths too; statements sent
//! again with other values are known by their tokens ([`lexical`]) and not parsed again.
//!
//! Anything else, a table changed since preparation, or a value of another type than its
//! parameter's, takes the general path, whose answers these match.

mod compiled;
mod generalise;
mod key;
mod lexical;
mod point_query;
mod point_write;
mod serving;
mod shapes;

pub use lexical::{Shaped, Spoken, Template};
pub use point_query::PointQuery;
pub use point_write::PointWrite;
pub use serving::ServingQuery;
pub use shapes::Shapes;

use crate::engine::fast_path::compiled::exact_cast;
use crate::engine::fast_path::generalise::{Lifted, generalise};
use crate::engine::modify::Modification;
use crate::engine::transaction::current;
use crate::engine::{Engine, Outcome, Statement};
use crate::error::Result;
use crate::roles::Actor;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use std::sync::Arc;

/// How a prepared statement runs without planning at each execution.
#[derive(Debug, Clone)]
pub enum FastPath {
    /// A lookup by primary key.
    Read(PointQuery),
    /// An UPDATE or DELETE by primary key, or an INSERT of one row.
    Write(PointWrite),
    /// The columns of a serving table function (`recommend`, `similar_items`,
    /// `online_features`, `nearest`).
    Serve(ServingQuery),
}

impl FastPath {
    /// The fast path of `statement`, prepared as `plan` (with `$n` of `types`), when it has
    /// one; `modification` is its UPDATE or DELETE.
    pub fn recognise(
        engine: &Engine,
        statement: &Statement,
        plan: &LogicalPlan,
        modification: Option<&Modification>,
        types: &[DataType],
    ) -> Option<FastPath> {
        let catalog = engine.catalog();
        if let Some(modification) = modification {
            let state = engine.planning_state().ok()?;
            return PointWrite::keyed(&state, catalog, modification, plan, types)
                .map(FastPath::Write);
        }
        if let Statement::DataFusion(df) = statement
            && let DFStatement::Statement(sql) = df.as_ref()
            && let SqlStatement::Insert(insert) = sql.as_ref()
        {
            let state = engine.planning_state().ok()?;
            return PointWrite::insert(&state, catalog, insert, plan, types).map(FastPath::Write);
        }
        PointQuery::recognise(catalog, plan)
            .map(FastPath::Read)
            .or_else(|| ServingQuery::recognise(plan).map(FastPath::Serve))
    }

    /// Runs it with `values`; `None` when the general path must run instead.
    pub async fn run(&self, engine: &Engine, values: &ParamValues) -> Result<Option<Outcome>> {
        match self {
            FastPath::Read(point) => {
                match point.run(engine.catalog(), values, current().as_deref())? {
                    Some(batch) => Outcome::batch(batch).map(Some),
                    None => Ok(None),
                }
            }
            // boxed: a write's future (transaction, index upkeep) is far larger than a read's
            FastPath::Write(write) => Box::pin(write.run(engine, values)).await,
            FastPath::Serve(serve) => serve.run(engine, values).await,
        }
    }

    /// What it is, in a word or two (for tests and EXPLAIN-like reports).
    pub fn kind(&self) -> &'static str {
        match self {
            FastPath::Read(_) => "point read",
            FastPath::Write(_) => "point write",
            FastPath::Serve(_) => "table function",
        }
    }
}

/// The shape of `statement`: its text with the values a fast path lifts out as `$1…$n`
/// (the same for every statement that differs from it in those values only); `None` for
/// statements that are not generalised.
pub fn shape(statement: &SqlStatement) -> Option<String> {
    generalise(statement).map(|generalised| generalised.shape)
}

impl Engine {
    /// Runs `statement`, written with its values, by the fast path of its shape when it has
    /// one; `None` when it must run as written.
    pub(crate) async fn run_by_shape(
        &self,
        statement: &SqlStatement,
        actor: &Actor,
    ) -> Result<Option<Outcome>> {
        if !self.fast_path_enabled() {
            return Ok(None);
        }
        let Some(generalised) = generalise(statement) else {
            return Ok(None);
        };
        let generation = self.catalog().generation();
        let shapes = self.shapes();
        if shapes.get(&generalised.shape, actor, generation).is_none() {
            let prepared = Box::pin(self.prepare_as(generalised.statement, actor))
                .await
                .ok()
                .filter(|prepared| prepared.fast_path().is_some())
                .map(Arc::new);
            shapes.put(generalised.shape.clone(), actor, generation, prepared);
        }
        self.run_shape(&generalised.shape, &generalised.values, actor)
            .await
    }

    /// Runs the statement of `shape` with `values` by the shape's fast path, when it is
    /// prepared for `actor` and has one; `None` when it must run as written.
    pub(crate) async fn run_shape(
        &self,
        shape: &str,
        values: &[Lifted],
        actor: &Actor,
    ) -> Result<Option<Outcome>> {
        if !self.fast_path_enabled() {
            return Ok(None);
        }
        let generation = self.catalog().generation();
        let Some(entry) = self.shapes().get(shape, actor, generation) else {
            return Ok(None);
        };
        let Some(prepared) = entry.prepared() else {
            return Ok(None);
        };
        // a number is never read as text (PostgreSQL has no such implicit cast)
        let types = prepared.parameter_types();
        let mismatched = (values.iter().zip(types))
            .any(|(value, t)| matches!(value, Lifted::Integer(_)) && !t.is_numeric());
        if mismatched || types.len() != values.len() {
            return Ok(None);
        }
        let values = (values.iter().zip(types))
            .map(|(value, t)| exact_cast(value.scalar(), t).map(Into::into))
            .collect::<Option<Vec<_>>>();
        let Some(values) = values else {
            return Ok(None);
        };
        let outcome = self
            .run_fast(prepared, &ParamValues::List(values), actor)
            .await?;
        if outcome.is_some() {
            entry.executed();
        }
        Ok(outcome)
    }
}
