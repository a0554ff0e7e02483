//! Table-function arguments that are queries, taken out of a statement before DataFusion
//! plans it. DataFusion plans the arguments of a function in FROM as scalar expressions: a
//! subquery may return one column only, and named arguments (`filter => …`) are refused. So
//! before planning, the calls of functions with a [`QuerySignature`] are rewritten: named
//! arguments are put in their positions, and the query argument (a subquery or a query as
//! text) is planned and replaced by a token, which the table function exchanges for the plan
//! through [`QueryArguments`].

use crate::error::{Error, Result};
use crate::sql::names::quoted_ident;
use crate::sql::parser::{parse_query, query_statement};
use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::Session;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::collect;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, Query, TableFactor, Value, VisitMut, VisitorMut,
};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The arguments of a table function that takes a query: its positional arguments, the named
/// ones that may follow (placed after the positional ones, in this order), and the position
/// of the query.
#[derive(Debug, Clone, Copy)]
pub struct QuerySignature {
    /// The function's name.
    pub function: &'static str,
    /// Names of the positional arguments, in order.
    pub positional: &'static [&'static str],
    /// Names of the named arguments, in the positions they take after the positional ones.
    pub named: &'static [&'static str],
    /// The position of the argument that is a query.
    pub query: usize,
    /// Named arguments that name a table: each stands for `SELECT * FROM` it, planned with the
    /// statement (so its privileges are checked as the statement's own).
    pub tables: &'static [&'static str],
}

impl QuerySignature {
    /// The position of the argument `name` once named arguments are placed.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.positional
            .iter()
            .chain(self.named)
            .position(|n| *n == name)
    }
}

/// Queries given as table-function arguments (spines, filters), planned ahead of the
/// statement that uses them, by token: DataFusion plans table-function arguments as scalar
/// expressions, where a subquery may have one column only.
#[derive(Debug, Default)]
pub struct QueryArguments {
    plans: Mutex<HashMap<String, (LogicalPlan, String)>>,
    next: AtomicU64,
}

impl QueryArguments {
    /// A new token to stand for a query.
    pub fn token(&self) -> String {
        format!(
            "tastedb:query:{}",
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Keeps the plan of `token` and the query's text.
    pub fn put(&self, token: &str, plan: LogicalPlan, sql: String) {
        self.lock().insert(token.to_string(), (plan, sql));
    }

    /// A copy of the plan of `token`.
    pub fn plan_of(&self, token: &str) -> Option<LogicalPlan> {
        self.lock().get(token).map(|(plan, _)| plan.clone())
    }

    /// Takes the plan and text of `token` out.
    pub fn take(&self, token: &str) -> Option<(LogicalPlan, String)> {
        self.lock().remove(token)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (LogicalPlan, String)>> {
        self.plans.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl QueryArguments {
    /// Plans the query arguments of `statement`'s calls of `signatures`' functions in `state`
    /// and puts tokens in their place; a `filter` argument that is a name `named_filter`
    /// knows stands for the filter's query. Returns the tokens, for
    /// [`QueryArguments::forget`] once the statement is planned.
    pub async fn extract(
        &self,
        state: &SessionState,
        signatures: &[QuerySignature],
        named_filter: &(dyn Fn(&str) -> Option<String> + Sync),
        statement: &mut DFStatement,
    ) -> Result<Vec<String>> {
        let DFStatement::Statement(sql) = statement else {
            return Ok(Vec::new());
        };
        let mut finder = Finder {
            arguments: self,
            signatures,
            named_filter,
            found: Vec::new(),
            error: None,
        };
        let _ = sql.visit(&mut finder);
        let tokens: Vec<String> = finder.found.iter().map(|(t, _)| t.clone()).collect();
        let planned = async {
            if let Some(error) = finder.error {
                return Err(error);
            }
            for (token, query) in finder.found {
                let sql = query.to_string();
                let plan = state.statement_to_plan(query_statement(query)).await?;
                self.put(&token, plan, sql);
            }
            Ok(())
        };
        match planned.await {
            Ok(()) => Ok(tokens),
            Err(error) => {
                self.forget(&tokens);
                Err(error)
            }
        }
    }

    /// Drops planned arguments a statement did not pick up (because its planning failed).
    pub fn forget(&self, tokens: &[String]) {
        for token in tokens {
            self.take(token);
        }
    }
}

/// Runs `plan` in `state` and collects its rows.
pub async fn run_plan(state: &dyn Session, plan: &LogicalPlan) -> Result<Vec<RecordBatch>> {
    let physical = state.create_physical_plan(plan).await?;
    Ok(collect(physical, state.task_ctx()).await?)
}

/// The rewriting visitor.
struct Finder<'a> {
    arguments: &'a QueryArguments,
    signatures: &'a [QuerySignature],
    named_filter: &'a (dyn Fn(&str) -> Option<String> + Sync),
    found: Vec<(String, Box<Query>)>,
    error: Option<Error>,
}

impl VisitorMut for Finder<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            args: Some(args),
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let function = name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .map(|ident| ident.value.to_lowercase())
            .unwrap_or_default();
        let Some(signature) = self.signatures.iter().find(|s| s.function == function) else {
            return ControlFlow::Continue(());
        };
        let result = place_named(signature, &mut args.args).and_then(|()| {
            let named = signature.position("filter") == Some(signature.query);
            self.replace_query(&mut args.args, signature.query, named)?;
            let tables = signature
                .tables
                .iter()
                .filter_map(|t| signature.position(t));
            tables
                .into_iter()
                .try_for_each(|at| self.replace_table(&mut args.args, at))
        });
        match result {
            Ok(()) => ControlFlow::Continue(()),
            Err(error) => {
                self.error = Some(error);
                ControlFlow::Break(())
            }
        }
    }
}

impl Finder<'_> {
    /// Replaces argument `position`, when it is a subquery or a string, by a token; with
    /// `named`, a string that names a filter stands for the filter's query.
    fn replace_query(
        &mut self,
        args: &mut [FunctionArg],
        position: usize,
        named: bool,
    ) -> Result<()> {
        let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(expr))) = args.get_mut(position) else {
            return Ok(());
        };
        let query = match expr {
            SqlExpr::Subquery(query) => query.clone(),
            SqlExpr::Value(value) => match &value.value {
                Value::SingleQuotedString(text) => {
                    let is_name = text.chars().all(|c| c.is_alphanumeric() || c == '_');
                    match named.then(|| (self.named_filter)(text)).flatten() {
                        Some(definition) => parse_query(&definition)?,
                        None if named && is_name => {
                            return Err(Error::UndefinedObject(format!(
                                "filter \"{text}\" does not exist"
                            )));
                        }
                        None => parse_query(text)?,
                    }
                }
                _ => return Ok(()),
            },
            _ => return Ok(()),
        };
        let token = self.arguments.token();
        *expr = SqlExpr::value(Value::SingleQuotedString(token.clone()));
        self.found.push((token, query));
        Ok(())
    }
    /// Replaces argument `position`, when it is a string, by a token for the query that reads
    /// the table it names.
    fn replace_table(&mut self, args: &mut [FunctionArg], position: usize) -> Result<()> {
        let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(expr))) = args.get_mut(position) else {
            return Ok(());
        };
        let SqlExpr::Value(value) = expr else {
            return Ok(());
        };
        let Value::SingleQuotedString(table) = &value.value else {
            return Ok(());
        };
        let query = parse_query(&format!("SELECT * FROM {}", quoted_ident(table)))?;
        let token = self.arguments.token();
        *expr = SqlExpr::value(Value::SingleQuotedString(token.clone()));
        self.found.push((token, query));
        Ok(())
    }
}

/// Puts the named arguments of a call of `signature`'s function in their positions, after
/// its positional ones (NULL for one not given).
fn place_named(signature: &QuerySignature, args: &mut Vec<FunctionArg>) -> Result<()> {
    let function = signature.function;
    let mut positional = Vec::new();
    let mut named: Vec<Option<SqlExpr>> = vec![None; signature.named.len()];
    for arg in args.drain(..) {
        let (name, expr) = match arg {
            FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(expr),
                ..
            } => (name.value, expr),
            FunctionArg::ExprNamed {
                name: SqlExpr::Identifier(name),
                arg: FunctionArgExpr::Expr(expr),
                ..
            } => (name.value, expr),
            other => {
                positional.push(other);
                continue;
            }
        };
        let lower = name.to_lowercase();
        let Some(slot) = signature.named.iter().position(|n| *n == lower) else {
            return Err(Error::InvalidParameter(format!(
                "{function}() has no argument named {lower}; it takes {}",
                signature.named.join(" and ")
            )));
        };
        named[slot] = Some(expr);
    }
    if named.iter().any(Option::is_some) {
        if positional.len() != signature.positional.len() {
            return Err(Error::InvalidParameter(format!(
                "{function}() takes ({}) before its named arguments",
                signature.positional.join(", ")
            )));
        }
        for expr in named {
            let expr = expr.unwrap_or_else(|| SqlExpr::value(Value::Null));
            positional.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)));
        }
    }
    *args = positional;
    Ok(())
}
