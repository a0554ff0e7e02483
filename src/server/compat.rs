//! Queries of Postgres clients and BI tools (psql's `\d`, pgJDBC metadata calls, …) rewritten
//! by `datafusion-pg-catalog` into SQL that DataFusion runs: `pg_catalog.` qualifiers,
//! `COLLATE`, `::regclass` casts, and whole catalog queries it knows by heart.

use crate::sql::parser::Statement;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

/// Rewrites the SELECTs among `statements`, parsed from `query`; other statements are kept.
pub fn rewrite_for_clients(
    compat: &PostgresCompatibilityParser,
    query: &str,
    statements: Vec<Statement>,
) -> Vec<Statement> {
    // Whole-query substitutions match the client's text, so they apply when the query is
    // nothing but SELECTs.
    if statements.iter().all(is_select)
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
