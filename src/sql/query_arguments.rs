//! Table-function arguments that are queries, taken out of a statement before DataFusion
//! plans it. DataFusion plans the arguments of a function in FROM as scalar expressions: a
//! subquery may return one column only, and named arguments (`filter => …`) are refused. So
//! [`Engine::plan`] first rewrites the calls that take queries:
//!
//! - `historical_features(view, spine)`: the spine (a subquery or a query as text);
//! - `recommend(model, user, k [, filter => query] [, exact => bool])` and the same for
//!   `similar_items`: named arguments are put in their positions (`filter` 4th, `exact` 5th,
//!   NULL for one not given), and the filter (a subquery or text) is planned.
//!
//! Each query is planned here and replaced by a token, which the table function exchanges for
//! the plan through [`QueryArguments`].

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::features::QueryArguments;
use crate::sql::parser::{parse_query, query_statement};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, Query, TableFactor, Value, VisitMut, VisitorMut,
};
use std::ops::ControlFlow;

impl Engine {
    /// Plans the query arguments of `statement`'s table functions and puts tokens in their
    /// place. Returns the tokens, for [`Engine::forget_query_arguments`] once the statement is
    /// planned.
    pub(crate) async fn extract_query_arguments(
        &self,
        statement: &mut DFStatement,
    ) -> Result<Vec<String>> {
        let DFStatement::Statement(sql) = statement else {
            return Ok(Vec::new());
        };
        let mut finder = Finder {
            arguments: self.query_arguments(),
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
                let plan = self
                    .session_context()
                    .state()
                    .statement_to_plan(query_statement(query))
                    .await?;
                self.query_arguments().put(&token, plan, sql);
            }
            Ok(())
        };
        match planned.await {
            Ok(()) => Ok(tokens),
            Err(error) => {
                self.forget_query_arguments(&tokens);
                Err(error)
            }
        }
    }

    /// Drops planned arguments a statement did not pick up (because its planning failed).
    pub(crate) fn forget_query_arguments(&self, tokens: &[String]) {
        for token in tokens {
            self.query_arguments().take(token);
        }
    }
}

/// The rewriting visitor.
struct Finder<'a> {
    arguments: &'a QueryArguments,
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
        let result = match function.as_str() {
            "historical_features" => self.replace_query(&mut args.args, 1),
            "recommend" | "similar_items" => place_named(&function, &mut args.args)
                .and_then(|()| self.replace_query(&mut args.args, 3)),
            _ => Ok(()),
        };
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
    /// Replaces argument `position`, when it is a subquery or a string, by a token.
    fn replace_query(&mut self, args: &mut [FunctionArg], position: usize) -> Result<()> {
        let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(expr))) = args.get_mut(position) else {
            return Ok(());
        };
        let query = match expr {
            SqlExpr::Subquery(query) => query.clone(),
            SqlExpr::Value(value) => match &value.value {
                Value::SingleQuotedString(text) => parse_query(text)?,
                _ => return Ok(()),
            },
            _ => return Ok(()),
        };
        let token = self.arguments.token();
        *expr = SqlExpr::value(Value::SingleQuotedString(token.clone()));
        self.found.push((token, query));
        Ok(())
    }
}

/// Puts `filter => …` and `exact => …` of a ranking function in positions 4 and 5.
fn place_named(function: &str, args: &mut Vec<FunctionArg>) -> Result<()> {
    let mut positional = Vec::new();
    let (mut filter, mut exact) = (None, None);
    for arg in args.drain(..) {
        let named = match arg {
            FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(expr),
                ..
            } => Some((name.value, expr)),
            FunctionArg::ExprNamed {
                name: SqlExpr::Identifier(name),
                arg: FunctionArgExpr::Expr(expr),
                ..
            } => Some((name.value, expr)),
            other => {
                positional.push(other);
                None
            }
        };
        if let Some((name, expr)) = named {
            match name.to_lowercase().as_str() {
                "filter" => filter = Some(expr),
                "exact" => exact = Some(expr),
                other => {
                    return Err(Error::InvalidParameter(format!(
                        "{function}() has no argument named {other}; it takes filter and exact"
                    )));
                }
            }
        }
    }
    if filter.is_some() || exact.is_some() {
        if positional.len() != 3 {
            return Err(Error::InvalidParameter(format!(
                "{function}() takes (model, id, k) before its named arguments"
            )));
        }
        let null = || SqlExpr::value(Value::Null);
        for expr in [filter.unwrap_or_else(null), exact.unwrap_or_else(null)] {
            positional.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)));
        }
    }
    *args = positional;
    Ok(())
}
