//! Queries of Postgres clients and BI tools (psql's `\d`, pgJDBC metadata calls, …) rewritten
//! by `datafusion-pg-catalog` into SQL that DataFusion runs: `pg_catalog.` qualifiers,
//! `COLLATE`, `::regclass` casts, and whole catalog queries it knows by heart.

use crate::engine::Statement;
use crate::server::psql_describe;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, Ident, ObjectName, Statement as SqlStatement, Value, ValueWithSpan,
    visit_expressions_mut, visit_relations_mut,
};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use std::ops::ControlFlow;

/// Rewrites the SELECTs among `statements`, parsed from `query`; other statements are kept.
/// Unqualified names of the `pg_catalog` tables TasteDB adds are qualified in every statement.
pub fn rewrite_for_clients(
    compat: &PostgresCompatibilityParser,
    query: &str,
    statements: Vec<Statement>,
) -> Vec<Statement> {
    let mut rewritten = rewrite_queries(compat, query, statements);
    rewritten.iter_mut().for_each(qualify_added_catalog_tables);
    rewritten
}

/// The tables TasteDB adds to `pg_catalog` (`datafusion-pg-catalog` qualifies only its own).
const ADDED_CATALOG_TABLES: &[&str] = &["pg_stat_activity", "pg_user"];

fn qualify_added_catalog_tables(statement: &mut Statement) {
    let Statement::DataFusion(df) = statement else {
        return;
    };
    let DFStatement::Statement(sql) = df.as_mut() else {
        return;
    };
    let _ = visit_relations_mut(sql.as_mut(), |name| {
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
    mut statements: Vec<Statement>,
) -> Vec<Statement> {
    if let Some(answer) = psql_describe::substitute(query)
        && let Ok(parsed) = crate::engine::parse(&answer)
    {
        return parsed;
    }
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
    matches!(statement, Statement::DataFusion(df)
        if matches!(df.as_ref(), DFStatement::Statement(sql) if matches!(sql.as_ref(), SqlStatement::Query(_))))
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
    let Statement::DataFusion(df) = statement else {
        return false;
    };
    let DFStatement::Statement(sql) = df.as_mut() else {
        return false;
    };
    let mut found = false;
    let _ = visit_expressions_mut(sql.as_mut(), |expr| {
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
