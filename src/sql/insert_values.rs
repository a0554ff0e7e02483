//! NOT NULL errors of `INSERT … VALUES`, told the way Postgres tells them.
//!
//! DataFusion types a VALUES list after the target columns, NOT NULL included, so a NULL there
//! fails while DataFusion builds the rows — before TasteDB's own check, which names the column
//! and the row, ever sees them. DataFusion's error names only the VALUES column ("column2");
//! this maps it back to the table column and finds the row in the statement.

use crate::catalog::TableDef;
use crate::error::Error;
use crate::sql::names;
use datafusion::sql::sqlparser::ast::{Expr, Insert, SetExpr, Value};

/// Rewrites DataFusion's "Column 'columnN' is declared as non-nullable" error of `insert` into
/// a NOT NULL violation naming the table column and row; other errors pass unchanged.
pub fn explain_not_null(error: Error, insert: &Insert, table: Option<&TableDef>) -> Error {
    let Some(table) = table else { return error };
    let text = error.to_string();
    let Some(position) = values_column(&text) else {
        return error;
    };
    let column = if insert.columns.is_empty() {
        table.columns.get(position).map(|c| c.name.clone())
    } else {
        insert
            .columns
            .get(position)
            .and_then(|name| name.0.last())
            .and_then(|part| part.as_ident())
            .map(names::ident)
    };
    let Some(column) = column else { return error };
    Error::NotNullViolation {
        table: table.name.clone(),
        column,
        row: first_null_row(insert, position).unwrap_or(0),
    }
}

/// The 0-based VALUES column of DataFusion's message, e.g. 1 for `Column 'column2' …`.
fn values_column(message: &str) -> Option<usize> {
    let rest = message.split("Column 'column").nth(1)?;
    let (number, tail) = rest.split_once('\'')?;
    if !tail.contains("declared as non-nullable") {
        return None;
    }
    number.parse::<usize>().ok()?.checked_sub(1)
}

/// The 1-based row of the VALUES list whose value at `position` is a literal NULL.
fn first_null_row(insert: &Insert, position: usize) -> Option<u64> {
    let SetExpr::Values(values) = insert.source.as_ref()?.body.as_ref() else {
        return None;
    };
    values
        .rows
        .iter()
        .position(|row| matches!(row.get(position), Some(Expr::Value(v)) if v.value == Value::Null))
        .map(|i| i as u64 + 1)
}
