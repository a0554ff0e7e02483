//! PostgreSQL forms in drivers' catalog queries that DataFusion spells otherwise:
//! `generate_subscripts(a, dim)` (SQLAlchemy's index reflection; arrays here have one
//! dimension) becomes
//! `unnest(CASE WHEN dim = 1 THEN generate_series(1, cardinality(a)) END)`, pgJDBC's
//! `information_schema._pg_expandarray(a)` becomes `unnest(_pg_expandarray(a))` (a list of
//! `{x, n}` structs; its fields `x` and `n` unnest the elements and their positions), and a
//! field of a parenthesised record, `(e).n`, becomes `get_field(e, 'n')`.

use super::compat::parse_expr;
use crate::engine::Statement;
use datafusion::sql::sqlparser::ast::{
    AccessExpr, Expr, Function, FunctionArg, FunctionArguments, visit_expressions_mut,
};
use std::ops::ControlFlow;

/// Rewrites the forms above in `statement`.
pub fn rewrite(statement: &mut Statement) {
    let Some(sql) = statement.sql_mut() else {
        return;
    };
    let _ = visit_expressions_mut(sql, |expr| {
        if let Some(text) = replacement(expr)
            && let Ok(replaced) = parse_expr(&text)
        {
            *expr = replaced;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// The text of what replaces `expr`, if it is one of the forms above.
fn replacement(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Function(function) => {
            let (name, args) = name_and_args(function)?;
            match name.as_str() {
                "generate_subscripts" => {
                    let [array, dimension] = args else {
                        return None;
                    };
                    Some(format!(
                        "unnest(CASE WHEN {dimension} = 1 THEN \
                         generate_series(1, CAST(cardinality({array}) AS BIGINT)) END)"
                    ))
                }
                "_pg_expandarray" => Some(format!("unnest(_pg_expandarray{})", function.args)),
                _ => None,
            }
        }
        Expr::CompoundFieldAccess { root, access_chain } => {
            match (root.as_ref(), &access_chain[..]) {
                (Expr::Nested(inner), [AccessExpr::Dot(Expr::Identifier(field))]) => {
                    let field = field.value.to_lowercase();
                    // `(_pg_expandarray(a)).x`: DataFusion cannot take a field of an unnest,
                    // so the elements and their positions are unnested directly.
                    match (expanded_array(inner).as_deref(), field.as_str()) {
                        (Some(array), "x") => Some(format!("unnest({array})")),
                        (Some(array), "n") => Some(format!(
                            "unnest(generate_series(1, CAST(cardinality({array}) AS BIGINT)))"
                        )),
                        _ => Some(format!("get_field({inner}, '{field}')")),
                    }
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// A call's unqualified name (lower case) and its argument list.
fn name_and_args(function: &Function) -> Option<(String, &[FunctionArg])> {
    let name = function
        .name
        .0
        .last()?
        .as_ident()?
        .value
        .to_ascii_lowercase();
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    Some((name, &list.args))
}

/// `a` of `_pg_expandarray(a)`, before or after it was unnested.
fn expanded_array(expr: &Expr) -> Option<String> {
    let text = expr.to_string();
    if let Some(array) = text
        .strip_prefix("unnest(_pg_expandarray(")
        .and_then(|rest| rest.strip_suffix("))"))
    {
        return Some(array.to_string());
    }
    let Expr::Function(function) = expr else {
        return None;
    };
    let (name, args) = name_and_args(function)?;
    match (name.as_str(), args) {
        ("_pg_expandarray", [array]) => Some(array.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statements = crate::engine::parse(sql).expect("parses");
        rewrite(&mut statements[0]);
        statements[0]
            .sql()
            .map(|s| s.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn set_returning_forms_become_unnest() {
        assert_eq!(
            rewritten("SELECT generate_subscripts(i.indkey, 1) FROM pg_index i"),
            "SELECT unnest(CASE WHEN 1 = 1 THEN generate_series(1, \
             CAST(cardinality(i.indkey) AS BIGINT)) END) FROM pg_index i"
        );
        assert_eq!(
            rewritten(
                "SELECT (information_schema._pg_expandarray(i.indkey)).n, (r.keys).x FROM pg_index i"
            ),
            "SELECT unnest(generate_series(1, CAST(cardinality(i.indkey) AS BIGINT))), \
             get_field(r.keys, 'x') FROM pg_index i"
        );
    }
}
