//! Output column names by PostgreSQL's rules (`FigureColname` in its parser) for the items of
//! a query's outermost SELECT that have no alias: a column is named after itself, a function
//! call after the function (`count`, not `count(*)`), a cast after its operand or else its
//! type (`int4`), `CASE` `case`, and anything else `?column?` (DataFusion would name them
//! `count(*)`, `Int64(1)`, …). Items whose names would repeat keep DataFusion's, which needs
//! unique names in a projection.

use crate::engine::Statement;
use datafusion::sql::sqlparser::ast::{
    DataType, Expr, Ident, SelectItem, SetExpr, Statement as SqlStatement,
};
use std::collections::HashMap;

/// Gives the unnamed items of `statement`'s outermost SELECT PostgreSQL's names.
pub fn name_like_postgres(statement: &mut Statement) {
    let Some(sql) = statement.sql_mut() else {
        return;
    };
    let SqlStatement::Query(query) = sql else {
        return;
    };
    let mut body = query.body.as_mut();
    // a set operation's columns are named by its first SELECT
    while let SetExpr::SetOperation { left, .. } = body {
        body = left.as_mut();
    }
    let SetExpr::Select(select) = body else {
        return;
    };
    let names: Vec<Option<String>> = select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(expr) => Some(figure_name(expr)),
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            _ => None,
        })
        .collect();
    if names.iter().any(Option::is_none) {
        // a wildcard's columns are not known here
        return;
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for name in names.iter().flatten() {
        *counts.entry(name.as_str()).or_default() += 1;
    }
    let unique: Vec<bool> = names
        .iter()
        .map(|name| name.as_deref().is_some_and(|n| counts[n] == 1))
        .collect();
    for ((item, name), unique) in select.projection.iter_mut().zip(&names).zip(unique) {
        if let (SelectItem::UnnamedExpr(expr), Some(name), true) = (&*item, name, unique)
            && !matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
        {
            *item = SelectItem::ExprWithAlias {
                expr: expr.clone(),
                alias: Ident::with_quote('"', name.clone()),
            };
        }
    }
}

/// The name PostgreSQL gives an unnamed output column computing `expr`.
fn figure_name(expr: &Expr) -> String {
    named(expr).unwrap_or_else(|| "?column?".into())
}

fn named(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(ident.value.clone()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|p| p.value.clone()),
        Expr::Function(function) => function
            .name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .map(|ident| ident.value.to_lowercase()),
        Expr::Cast {
            expr, data_type, ..
        } => named(expr).or_else(|| type_name(data_type)),
        Expr::Nested(inner) => named(inner),
        Expr::Case { .. } => Some("case".into()),
        Expr::Array(_) => Some("array".into()),
        Expr::Exists { .. } => Some("exists".into()),
        _ => None,
    }
}

/// PostgreSQL's internal name of a type a cast names (`int4` for INT, `float8` for DOUBLE
/// PRECISION), for the types TasteDB has.
fn type_name(data_type: &DataType) -> Option<String> {
    let written = data_type.to_string().to_lowercase();
    let base = written.split('(').next().unwrap_or(&written).trim();
    Some(
        match base {
            "smallint" | "int2" => "int2",
            "int" | "integer" | "int4" => "int4",
            "bigint" | "int8" => "int8",
            "real" | "float4" => "float4",
            "double precision" | "double" | "float8" | "float" => "float8",
            "boolean" | "bool" => "bool",
            "text" => "text",
            "varchar" | "character varying" => "varchar",
            "numeric" | "decimal" => "numeric",
            "date" => "date",
            "timestamp" | "timestamp without time zone" => "timestamp",
            "timestamptz" | "timestamp with time zone" => "timestamptz",
            "bytea" => "bytea",
            "interval" => "interval",
            _ => return None,
        }
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str) -> Vec<String> {
        let mut statements = crate::engine::parse(sql).unwrap();
        name_like_postgres(&mut statements[0]);
        let Some(SqlStatement::Query(query)) = statements[0].sql() else {
            panic!("a query");
        };
        let SetExpr::Select(select) = query.body.as_ref() else {
            panic!("a select");
        };
        select
            .projection
            .iter()
            .map(|item| item.to_string())
            .collect()
    }

    /// Names PostgreSQL 15 gives these columns (checked with psql).
    #[test]
    fn unnamed_columns_are_named_as_postgresql_names_them() {
        assert_eq!(
            names(
                "SELECT 1, count(*), sum(x) FILTER (WHERE x > 1), 1::int, x::float8, \
                 CASE WHEN true THEN 1 END, x, t.y, z AS given FROM t"
            ),
            [
                "1 AS \"?column?\"",
                "count(*) AS \"count\"",
                "sum(x) FILTER (WHERE x > 1) AS \"sum\"",
                "1::INT AS \"int4\"",
                // PostgreSQL: "x" as well, which the plain x already is
                "x::FLOAT8",
                "CASE WHEN true THEN 1 END AS \"case\"",
                "x",
                "t.y",
                "z AS given",
            ]
        );
        // repeated names stay DataFusion's, which must be unique
        assert_eq!(names("SELECT 1, 2"), ["1", "2"]);
    }
}
