//! Prepared statements: a statement parsed and, when it takes `$n` parameters, planned once;
//! then run many times with values. A lookup by primary key is recognised at preparation and
//! answered by point reads, without planning at each run. Used by the wire session's
//! extended protocol, and by embedded callers through [`Engine::prepare`].

use crate::engine::access::Access;
use crate::engine::fast_path::FastPath;
use crate::engine::modify::Modification;
use crate::engine::{Engine, Outcome, Statement};
use crate::error::{Error, Result};
use crate::roles::Actor;
use crate::sql::arguments::with_parameters;
use crate::sql::execution_table;
use crate::sql::notices::Notices;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Cast, Expr, LogicalPlan, TryCast};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use std::collections::HashMap;
use std::sync::Arc;

/// A statement prepared to run many times.
#[derive(Debug, Clone)]
pub struct Prepared {
    statement: Statement,
    /// DataFusion's plan, with `$n` placeholders, for statements that take parameters.
    plan: Option<LogicalPlan>,
    /// Arrow types of the parameters `$1…$n` (TEXT where nothing else is known).
    parameter_types: Vec<DataType>,
    /// The schema of its rows, when it returns rows and that is known before it runs.
    rows_schema: Option<SchemaRef>,
    /// How it runs without planning at each execution, when it can.
    fast: Option<FastPath>,
    /// For UPDATE and DELETE: the writes the rows found by `plan` become.
    modification: Option<Modification>,
    /// What running it needs, checked against the caller at every execution.
    access: Access,
    /// The role it was prepared for (`None`: the embedding program).
    prepared_by: Actor,
    /// The engine and catalog generation the plan was made in; another engine (a replica's
    /// newer checkpoint) or a CREATE or DROP since means planning again.
    planned_in: PlannedIn,
}

impl Prepared {
    /// The statement.
    pub fn statement(&self) -> &Statement {
        &self.statement
    }

    /// The Arrow types of its parameters `$1…$n`.
    pub fn parameter_types(&self) -> &[DataType] {
        &self.parameter_types
    }

    /// How it runs without planning at each execution (`"point read"`, `"point write"`), when
    /// it can.
    pub fn fast_path(&self) -> Option<&'static str> {
        self.fast.as_ref().map(FastPath::kind)
    }

    /// The schema of the rows it returns: `None` when it returns none, or when they are
    /// known only once it runs.
    pub fn rows_schema(&self) -> Option<&SchemaRef> {
        self.rows_schema.as_ref()
    }

    /// Whether it was planned by `engine` in its current catalog generation (no CREATE or DROP
    /// since), so that running it does not plan again.
    pub fn is_current(&self, engine: &Engine) -> bool {
        self.planned_in == PlannedIn::now(engine)
    }
}

/// Which engine, at which catalog generation, made a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PlannedIn {
    instance: u64,
    generation: u64,
}

impl PlannedIn {
    fn now(engine: &Engine) -> PlannedIn {
        PlannedIn {
            instance: engine.inner.instance,
            generation: engine.catalog().generation(),
        }
    }
}

impl Engine {
    /// Prepares `statement` as the embedding program: a query, INSERT, EXPLAIN or SHOW is
    /// planned now with its `$n` parameters unbound; any other statement runs whole at
    /// [`Engine::execute_prepared`].
    pub async fn prepare(&self, statement: Statement) -> Result<Prepared> {
        self.prepare_as(statement, &Actor::Embedder).await
    }

    /// Like [`Engine::prepare`], on behalf of `actor`, who must hold what it needs.
    pub async fn prepare_as(&self, statement: Statement, actor: &Actor) -> Result<Prepared> {
        let planned_in = PlannedIn::now(self);
        let modification = match statement.sql() {
            Some(sql) => self.modification_of(sql)?,
            None => None,
        };
        let (plan, access) = match (&statement, &modification) {
            (_, Some(modification)) => {
                let (plan, access) = self.plan_modification(modification, actor).await?;
                (Some(plan), access)
            }
            (Statement::DataFusion(df), None) => {
                match self.plan_with_parameters(df, actor).await? {
                    Some((plan, access)) => (Some(plan), access),
                    None => (None, Access::default()),
                }
            }
            _ => (None, Access::default()),
        };
        let parameter_types = match &plan {
            Some(plan) => parameter_types(plan)?,
            None => Vec::new(),
        };
        let fast = plan.as_ref().and_then(|plan| {
            FastPath::recognise(
                self,
                &statement,
                plan,
                modification.as_ref(),
                &parameter_types,
            )
        });
        let rows_schema = match (&plan, &statement) {
            (Some(LogicalPlan::Dml(_)), _) => None,
            (Some(plan), _) if modification.is_some() => {
                modification.as_ref().and_then(|m| m.returning_schema(plan))
            }
            (Some(plan), _) => Some(Arc::new(plan.schema().as_arrow().clone())),
            (None, Statement::Command(command)) => command.rows_schema(),
            (None, _) => None,
        };
        Ok(Prepared {
            statement,
            plan,
            parameter_types,
            rows_schema,
            fast,
            modification,
            access,
            prepared_by: actor.clone(),
            planned_in,
        })
    }

    /// Runs `prepared` with `values` for its parameters as the embedding program; notices go
    /// to `notices`. A table created or dropped since it was prepared makes it planned again
    /// first.
    pub async fn execute_prepared(
        &self,
        prepared: &Prepared,
        values: ParamValues,
        notices: &Notices,
    ) -> Result<Outcome> {
        self.execute_prepared_as(prepared, values, &Actor::Embedder, notices)
            .await
    }

    /// Like [`Engine::execute_prepared`], on behalf of `actor`.
    pub async fn execute_prepared_as(
        &self,
        prepared: &Prepared,
        values: ParamValues,
        actor: &Actor,
        notices: &Notices,
    ) -> Result<Outcome> {
        if prepared.plan.is_some()
            && self.fast_path_enabled()
            && let Some(outcome) = self.run_fast(prepared, &values, actor).await?
        {
            return Ok(outcome);
        }
        // Boxed, so that the futures of serving requests (which take the fast path) stay
        // small: the general path's future, DataFusion's planning inside, is many kilobytes,
        // and a future is copied whole each time it is moved.
        Box::pin(self.execute_prepared_planned(prepared, values, actor, notices)).await
    }

    /// [`Engine::execute_prepared_as`] without its fast path: planned again if needed, values
    /// bound into the plan.
    async fn execute_prepared_planned(
        &self,
        prepared: &Prepared,
        values: ParamValues,
        actor: &Actor,
        notices: &Notices,
    ) -> Result<Outcome> {
        if !prepared.is_current(self) || prepared.prepared_by != *actor {
            let fresh = Box::pin(self.prepare_as(prepared.statement.clone(), actor)).await?;
            return Box::pin(self.execute_prepared_as(&fresh, values, actor, notices)).await;
        }
        let Some(plan) = &prepared.plan else {
            return self
                .execute_as(prepared.statement.clone(), actor, notices)
                .await;
        };
        self.check_access(actor, &prepared.access)?;
        let bound = plan.clone().with_param_values(values.clone())?;
        if let Some(modification) = &prepared.modification {
            return with_parameters(values, self.run_modification(modification, bound)).await;
        }
        // table functions read their parameters while the plan is turned into a physical one
        with_parameters(values, self.run_plan(bound)).await
    }
}

impl Engine {
    /// Runs `prepared` by its fast path, on behalf of `actor`, who must hold what it needs;
    /// `None` when it has none, or the general path must run (planned for another role or
    /// catalog generation, or a value not of its parameter's type).
    pub(crate) async fn run_fast(
        &self,
        prepared: &Prepared,
        values: &ParamValues,
        actor: &Actor,
    ) -> Result<Option<Outcome>> {
        let Some(fast) = &prepared.fast else {
            return Ok(None);
        };
        if !prepared.is_current(self) || prepared.prepared_by != *actor {
            return Ok(None);
        }
        self.check_access(actor, &prepared.access)?;
        fast.run(self, values).await
    }

    /// Whether prepared statements take their fast paths (`SET tastedb.fast_path`).
    pub(crate) fn fast_path_enabled(&self) -> bool {
        self.taste_config().fast_path
    }

    /// The plan, with `$n` placeholders, of a statement that can take parameters (a query,
    /// INSERT, EXPLAIN, SHOW); `None` for one that runs whole at execution.
    async fn plan_with_parameters(
        &self,
        statement: &DFStatement,
        actor: &Actor,
    ) -> Result<Option<(LogicalPlan, Access)>> {
        let planned = match statement {
            DFStatement::Statement(sql) => match sql.as_ref() {
                SqlStatement::Insert(insert) => {
                    let (plan, _, access) = self.plan_insert(insert.clone(), actor).await?;
                    (plan, access)
                }
                SqlStatement::Query(_) | SqlStatement::ShowVariable { .. } => {
                    self.plan(statement.clone(), actor).await?
                }
                _ => return Ok(None),
            },
            DFStatement::Explain(_) => self.plan(statement.clone(), actor).await?,
            _ => return Ok(None),
        };
        Ok(Some(planned))
    }
}

/// The types of `$1…$n`: DataFusion's inference (from the columns they are compared with or
/// inserted into), then the types they are cast to (`$1::float8`, as PostgreSQL infers
/// them), then those of table-function arguments (`recommend('m', $1, $2)`), then TEXT.
fn parameter_types(plan: &LogicalPlan) -> Result<Vec<DataType>, Error> {
    let found = plan.get_parameter_types()?;
    let cast = cast_parameter_types(plan);
    let in_functions = execution_table::parameter_types(plan);
    let count = found
        .keys()
        .chain(cast.keys())
        .chain(in_functions.keys())
        .filter_map(|id| id.strip_prefix('$')?.parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    Ok((1..=count)
        .map(|i| {
            let id = format!("${i}");
            found
                .get(&id)
                .cloned()
                .flatten()
                .or_else(|| cast.get(&id).cloned())
                .or_else(|| in_functions.get(&id).cloned())
                .unwrap_or(DataType::Utf8)
        })
        .collect())
}

/// The type each `$n` is first cast to in `plan` (subqueries included).
fn cast_parameter_types(plan: &LogicalPlan) -> HashMap<String, DataType> {
    let mut types = HashMap::new();
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                let (Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field })) = e
                else {
                    return Ok(TreeNodeRecursion::Continue);
                };
                if let Expr::Placeholder(placeholder) = expr.as_ref() {
                    types
                        .entry(placeholder.id.clone())
                        .or_insert_with(|| field.data_type().clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    types
}
