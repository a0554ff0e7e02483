//! Queries of Postgres clients and BI tools (psql's `\d`, pgJDBC metadata calls, …) rewritten
//! by `datafusion-pg-catalog` into SQL that DataFusion runs: `pg_catalog.` qualifiers,
//! `COLLATE`, `::regclass` casts, and whole catalog queries it knows by heart.

use crate::engine::{self, Spoken, Statement, Template};
use crate::error::Error;
use crate::server::{asyncpg_types, column_names, psql_describe, set_returning};
use crate::sql::parser::parse_query;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArguments, GroupByExpr, Ident, ObjectName, OrderBy, OrderByKind, Query,
    SelectItem, SetExpr, Statement as SqlStatement, TableFactor, Value, ValueWithSpan,
    visit_expressions_mut, visit_relations_mut,
};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

/// Texts remembered at most; past this many, all are forgotten.
const MAX_KNOWN: usize = 1_024;

/// The client rewrites, and what is known of the statements of queries already seen, by
/// their text with the literals taken out ([`Spoken`]): a query sent again (an OLTP workload's `UPDATE … WHERE id = 5`,
/// `BEGIN`, `END`) is neither parsed nor rewritten again.
pub struct ClientRewrites {
    parser: PostgresCompatibilityParser,
    /// Texts (literals taken out) → what their queries are.
    known: Mutex<HashMap<String, Arc<Known>>>,
}

/// What the queries of one text (literals taken out) are.
enum Known {
    /// The statements, rewritten, of a query without literals (the key is then its text).
    Statements(Vec<Statement>),
    /// One statement of a shape that the rewrites leave as it is: its values are read from
    /// its literals. The rewrites look at a statement's structure (names, casts, functions,
    /// operators), never at the values a shape lifts out, so one statement of a shape answers
    /// for all.
    Shaped(Template),
    /// Anything else: parsed and rewritten each time.
    Other,
}

impl ClientRewrites {
    /// The rewrites, no query known yet.
    pub fn new() -> ClientRewrites {
        ClientRewrites {
            parser: PostgresCompatibilityParser::new(),
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The statements of `query`, a simple-protocol query, as [`ClientRewrites::rewrite`]
    /// makes them: known from an earlier query of the same text but for its literals, or parsed.
    pub fn statements(&self, query: &str) -> Result<Vec<Statement>, Error> {
        let Some(spoken) = Spoken::read(query) else {
            return Ok(self.rewrite(query, engine::parse(query)?));
        };
        let known = self.known().get(spoken.key()).cloned();
        match known.as_deref() {
            Some(Known::Statements(statements)) => return Ok(statements.clone()),
            Some(Known::Shaped(template)) => {
                return match template.read(query, &spoken) {
                    Some(shaped) => Ok(vec![shaped.statement()]),
                    None => Ok(self.rewrite(query, engine::parse(query)?)),
                };
            }
            Some(Known::Other) => return Ok(self.rewrite(query, engine::parse(query)?)),
            None => {}
        }
        let statements = engine::parse(query)?;
        let (rewritten, known) = if spoken.has_literals() {
            let template = match statements.as_slice() {
                [one] => one.sql().and_then(|sql| Template::learn(&spoken, sql)),
                _ => None,
            };
            let original = template.as_ref().and_then(|_| statements[0].sql().cloned());
            let rewritten = self.rewrite(query, statements);
            let same =
                matches!(rewritten.as_slice(), [statement] if statement.sql() == original.as_ref());
            let known = match template {
                Some(template) if same => Known::Shaped(template),
                _ => Known::Other,
            };
            (rewritten, known)
        } else {
            let rewritten = self.rewrite(query, statements);
            let known = Known::Statements(rewritten.clone());
            (rewritten, known)
        };
        let mut all = self.known();
        if all.len() >= MAX_KNOWN {
            all.clear();
        }
        all.insert(spoken.key().to_string(), Arc::new(known));
        Ok(rewritten)
    }

    /// `statements`, parsed from `query`, rewritten for clients; unqualified names of the
    /// `pg_catalog` tables TasteDB adds are qualified in every statement.
    pub fn rewrite(&self, query: &str, statements: Vec<Statement>) -> Vec<Statement> {
        rewrite_for_clients(&self.parser, query, statements)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Known>>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Rewrites the SELECTs among `statements`, parsed from `query`; other statements are kept.
/// Unqualified names of the `pg_catalog` tables TasteDB adds are qualified in every statement.
fn rewrite_for_clients(
    compat: &PostgresCompatibilityParser,
    query: &str,
    statements: Vec<Statement>,
) -> Vec<Statement> {
    let mut rewritten = rewrite_queries(compat, query, statements);
    rewritten.iter_mut().for_each(qualify_added_catalog_tables);
    // the whole-query rewrites parse the text again, as sqlparser groups it
    for statement in &mut rewritten {
        if let Some(sql) = statement.sql_mut() {
            crate::sql::precedence::regroup_distinct_from(sql);
        }
    }
    rewritten.iter_mut().for_each(set_returning::rewrite);
    rewritten.iter_mut().for_each(array_subqueries);
    rewritten.iter_mut().for_each(aggregate_catalog_lookups);
    rewritten
        .iter_mut()
        .for_each(column_names::name_like_postgres);
    rewritten
}

/// The tables TasteDB adds to `pg_catalog` (`datafusion-pg-catalog` qualifies only its own).
const ADDED_CATALOG_TABLES: &[&str] = &["pg_indexes", "pg_stat_activity", "pg_user"];

fn qualify_added_catalog_tables(statement: &mut Statement) {
    let Some(sql) = statement.sql_mut() else {
        return;
    };
    let _ = visit_relations_mut(sql, |name| {
        if let [part] = name.0.as_slice()
            && let Some(ident) = part.as_ident()
            && ADDED_CATALOG_TABLES.contains(&ident.value.to_ascii_lowercase().as_str())
        {
            *name = ObjectName::from(vec![Ident::new("pg_catalog"), ident.clone()]);
        }
        ControlFlow::<()>::Continue(())
    });
}

fn rewrite_queries(
    compat: &PostgresCompatibilityParser,
    query: &str,
    statements: Vec<Statement>,
) -> Vec<Statement> {
    let substituted = psql_describe::substitute(query)
        .or_else(|| asyncpg_types::substitute(query))
        .and_then(|answer| Some((crate::engine::parse(&answer).ok()?, answer)));
    let (query, mut statements) = match &substituted {
        Some((parsed, answer)) => (answer.as_str(), parsed.clone()),
        None => (query, statements),
    };
    let mut named_functions = false;
    for statement in &mut statements {
        named_functions |= name_regproc_literals(statement);
    }
    // Whole-query substitutions match the client's text, so they apply when the query is
    // nothing but SELECTs, and the text is the one parsed.
    if !named_functions
        && statements.iter().all(is_select)
        && let Ok(rewritten) = compat.parse(query)
        && rewritten.len() == statements.len()
    {
        return rewritten.into_iter().map(wrap).collect();
    }
    statements
        .into_iter()
        .map(|statement| match statement {
            Statement::DataFusion(df) => match *df {
                DFStatement::Statement(sql) if matches!(*sql, SqlStatement::Query(_)) => {
                    wrap(compat.rewrite(*sql))
                }
                other => Statement::DataFusion(Box::new(other)),
            },
            other => other,
        })
        .collect()
}

fn is_select(statement: &Statement) -> bool {
    matches!(statement.sql(), Some(SqlStatement::Query(_)))
}

fn wrap(statement: SqlStatement) -> Statement {
    Statement::DataFusion(Box::new(DFStatement::Statement(Box::new(statement))))
}

/// Replaces `'pg_catalog.array_in'::regproc` by the text `'array_in'`; returns whether it did.
///
/// Postgres shows a regproc as the function's name, and datafusion-pg-catalog's `pg_type`
/// holds the names (`typinput = 'array_in'`), but its rewrite turns the literal cast into a
/// `pg_proc.oid` subquery, which then cannot be compared with those names (DBeaver's start-up
/// query does exactly that).
fn name_regproc_literals(statement: &mut Statement) -> bool {
    let Some(sql) = statement.sql_mut() else {
        return false;
    };
    let mut found = false;
    let _ = visit_expressions_mut(sql, |expr| {
        if let Expr::Cast {
            expr: operand,
            data_type,
            ..
        } = expr
            && data_type.to_string().to_lowercase().ends_with("regproc")
            && let Expr::Value(ValueWithSpan {
                value: Value::SingleQuotedString(name),
                ..
            }) = operand.as_ref()
        {
            let bare = name.rsplit('.').next().unwrap_or(name).to_string();
            *expr = Expr::Value(Value::SingleQuotedString(bare).with_empty_span());
            found = true;
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// Replaces PostgreSQL's `ARRAY(subquery)` (psql's `\d+` and `\du` use it), which DataFusion
/// does not know, by a scalar subquery of `array_agg`: `ARRAY(SELECT x FROM t ORDER BY y)`
/// becomes `(SELECT array_agg(x ORDER BY y) FROM t)` (DataFusion does not keep a derived
/// table's order), any other `(SELECT array_agg(value) FROM (subquery) AS array_subquery(value))`.
fn array_subqueries(statement: &mut Statement) {
    let Some(sql) = statement.sql_mut() else {
        return;
    };
    let _ = visit_expressions_mut(sql, |expr| {
        if let Expr::Function(function) = expr
            && function.name.to_string().eq_ignore_ascii_case("array")
            && let FunctionArguments::Subquery(query) = &function.args
        {
            let aggregated = ordered_array_agg(query).or_else(|| {
                parse_query(&format!(
                    "SELECT array_agg(array_subquery.value) FROM ({query}) AS array_subquery(value)"
                ))
                .ok()
            });
            if let Some(aggregated) = aggregated {
                *expr = Expr::Subquery(aggregated);
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `SELECT x FROM … ORDER BY y` as `SELECT array_agg(x ORDER BY y) FROM …`, when the query
/// is one plain SELECT of one value (`ORDER BY 1` and the value's alias name the value).
fn ordered_array_agg(query: &Query) -> Option<Box<Query>> {
    let Some(OrderBy {
        kind: OrderByKind::Expressions(order),
        ..
    }) = &query.order_by
    else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let (value, alias) = match select.projection.as_slice() {
        [SelectItem::UnnamedExpr(value)] => (value, None),
        [SelectItem::ExprWithAlias { expr, alias }] => (expr, Some(alias)),
        _ => return None,
    };
    if query.with.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some()
        || select.distinct.is_some()
        || select.group_by != GroupByExpr::Expressions(vec![], vec![])
        || select.having.is_some()
    {
        return None;
    }
    let keys: Vec<String> = order
        .iter()
        .map(|key| {
            let names_value = match &key.expr {
                Expr::Value(v) => v.value.to_string() == "1",
                Expr::Identifier(ident) => alias.is_some_and(|a| a.value == ident.value),
                _ => false,
            };
            let mut key = key.clone();
            if names_value {
                key.expr = value.clone();
            }
            key.to_string()
        })
        .collect();
    let mut select = select.clone();
    select.projection = vec![SelectItem::UnnamedExpr(
        parse_expr(&format!("array_agg({value} ORDER BY {})", keys.join(", "))).ok()?,
    )];
    let mut aggregated = query.clone();
    aggregated.body = Box::new(SetExpr::Select(select));
    aggregated.order_by = None;
    Some(Box::new(aggregated))
}

/// Wraps the value of a scalar subquery that only reads `pg_catalog` tables in
/// `first_value(…)`: DataFusion plans a correlated scalar subquery only when it aggregates,
/// and the catalog lookups of SQLAlchemy's reflection (a column's default from `pg_attrdef`,
/// its comment from `pg_description`) return at most one row.
fn aggregate_catalog_lookups(statement: &mut Statement) {
    let Some(sql) = statement.sql_mut() else {
        return;
    };
    let _ = visit_expressions_mut(sql, |expr| {
        if let Expr::Subquery(query) = expr
            && let SetExpr::Select(select) = query.body.as_mut()
            && let [SelectItem::UnnamedExpr(value) | SelectItem::ExprWithAlias { expr: value, .. }] =
                select.projection.as_mut_slice()
            && select.group_by == GroupByExpr::Expressions(vec![], vec![])
            && !select.from.is_empty()
            && select.from.iter().all(|from| {
                from.joins.is_empty()
                    && matches!(&from.relation, TableFactor::Table { name, .. }
                        if name.to_string().to_ascii_lowercase().starts_with("pg_catalog."))
            })
            && let Ok(wrapped) = parse_expr(&format!("first_value({value})"))
        {
            *value = wrapped;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `text` parsed as one PostgreSQL expression.
pub(super) fn parse_expr(
    text: &str,
) -> Result<Expr, datafusion::sql::sqlparser::parser::ParserError> {
    datafusion::sql::sqlparser::parser::Parser::new(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
    )
    .try_with_sql(text)?
    .parse_expr()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(rewrites: &ClientRewrites, sql: &str) -> Vec<Statement> {
        rewrites.statements(sql).unwrap()
    }

    fn text(statements: &[Statement]) -> String {
        statements[0].sql().unwrap().to_string()
    }

    #[test]
    fn statements_sent_again_are_read_by_their_shape_without_parsing() {
        let rewrites = ClientRewrites::new();
        let update = "UPDATE accounts SET balance = balance + 5 WHERE id = 7";
        // the first is parsed, and its template learned
        assert_eq!(text(&statements(&rewrites, update)), update);
        let again = statements(
            &rewrites,
            "UPDATE accounts SET balance = balance + 8 WHERE id = 9",
        );
        let [Statement::Shaped(shaped)] = again.as_slice() else {
            panic!("not read by its shape: {again:?}");
        };
        assert_eq!(
            &*shaped.shape,
            "UPDATE accounts SET balance = balance + $1 WHERE id = $2"
        );
        assert_eq!(rewrites.known().len(), 1);
        // a query without literals is parsed once, then its statements are cloned
        let begin = statements(&rewrites, "BEGIN");
        assert!(
            matches!(statements(&rewrites, "BEGIN").as_slice(), [one] if format!("{one:?}") == format!("{:?}", begin[0]))
        );
        assert_eq!(rewrites.known().len(), 2);
    }

    #[test]
    fn statements_the_rewrites_change_are_rewritten_every_time() {
        let rewrites = ClientRewrites::new();
        for id in [1, 2] {
            let sql = format!("SELECT count(*) FROM pg_indexes WHERE indexname = 'i{id}'");
            let rewritten = text(&statements(&rewrites, &sql));
            assert!(rewritten.contains("pg_catalog.pg_indexes"), "{rewritten}");
        }
        let sql = "SELECT count(*) FROM pg_indexes";
        for _ in 0..2 {
            let rewritten = text(&statements(&rewrites, sql));
            assert!(rewritten.contains("pg_catalog.pg_indexes"), "{rewritten}");
        }
    }
}
