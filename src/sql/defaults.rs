//! Column defaults in INSERT: a column the statement gives no value (left out of its column
//! list, or beyond the values of a row, or written `DEFAULT`) gets its `DEFAULT` expression,
//! evaluated by the statement like any other value (so `now()` is the statement's time and
//! `nextval('t_id_seq')` a new number per row). Done on the statement before it is planned,
//! as DataFusion's INSERT knows no stored defaults.

use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::sql::insert_values::target_columns;
use crate::sql::parser::parse_query;
use datafusion::sql::sqlparser::ast::{Expr, Ident, Insert, ObjectName, SetExpr};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Gives the columns of `table` that `insert` leaves without a value their defaults.
pub fn fill_defaults(insert: &mut Insert, table: &TableDef) -> Result<()> {
    let listed: Vec<usize> = target_columns(insert, table)
        .into_iter()
        .map(|target| target.map_err(Error::UndefinedColumn))
        .collect::<Result<_>>()?;
    let default = |column: usize| -> Result<Expr> {
        match &table.columns[column].default {
            Some(sql) => Ok(Parser::new(&PostgreSqlDialect {})
                .try_with_sql(sql)?
                .parse_expr()?),
            None => Ok(Expr::value(datafusion::sql::sqlparser::ast::Value::Null)),
        }
    };
    let Some(source) = insert.source.as_mut() else {
        return Ok(());
    };
    // without a column list, values fill the first columns, as in PostgreSQL
    let targets: Vec<usize> = match (insert.columns.is_empty(), source.body.as_ref()) {
        (true, SetExpr::Values(values)) => {
            let given = values.rows.iter().map(|row| row.len()).max().unwrap_or(0);
            (0..given.min(table.columns.len())).collect()
        }
        _ => listed,
    };
    let missing: Vec<usize> = (0..table.columns.len())
        .filter(|c| !targets.contains(c) && table.columns[*c].default.is_some())
        .collect();
    if let SetExpr::Values(values) = source.body.as_mut() {
        for row in &mut values.rows {
            for (expr, &column) in row.iter_mut().zip(&targets) {
                if is_default_keyword(expr) {
                    *expr = default(column)?;
                }
            }
            for &column in &missing {
                row.push(default(column)?);
            }
        }
    } else if !missing.is_empty() {
        let extra = (missing.iter())
            .map(|&c| Ok(default(c)?.to_string()))
            .collect::<Result<Vec<_>>>()?;
        *source = parse_query(&format!(
            "SELECT *, {} FROM ({source}) AS tastedb_source",
            extra.join(", ")
        ))?;
    }
    if !missing.is_empty() || insert.columns.is_empty() && targets.len() < table.columns.len() {
        insert.columns = (targets.iter().chain(&missing))
            .map(|&c| ObjectName::from(vec![Ident::with_quote('"', &table.columns[c].name)]))
            .collect();
    }
    Ok(())
}

fn is_default_keyword(expr: &Expr) -> bool {
    matches!(expr, Expr::Identifier(ident) if ident.quote_style.is_none()
        && ident.value.eq_ignore_ascii_case("default"))
}
