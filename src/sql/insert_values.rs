//! `INSERT … VALUES` details DataFusion does not handle the Postgres way: NOT NULL errors that
//! name the column and row, and vectors written as text (`'[0.1, 0.2]'`, as pgvector takes them).
//!
//! DataFusion types a VALUES list after the target columns, NOT NULL included, so a NULL there
//! fails while DataFusion builds the rows — before TasteDB's own check, which names the column
//! and the row, ever sees them. DataFusion's error names only the VALUES column ("column2");
//! this maps it back to the table column and finds the row in the statement.

use crate::error::{Error, Result};
use crate::schema::{ColumnType, TableDef};
use crate::sql::names;
use crate::storage::vector_values::parse_vector_text;
use datafusion::sql::sqlparser::ast::{Array, Expr, Insert, SetExpr, Value};

/// The table column each value of a row of `insert` goes to (all columns in order without a
/// column list); a listed name that is no column of `table` is `Err(name)`.
pub fn target_columns(
    insert: &Insert,
    table: &TableDef,
) -> Vec<std::result::Result<usize, String>> {
    if insert.columns.is_empty() {
        return (0..table.columns.len()).map(Ok).collect();
    }
    (insert.columns.iter())
        .map(|name| {
            let name = (name.0.last().and_then(|p| p.as_ident()))
                .map(names::ident)
                .unwrap_or_default();
            (table.columns.iter())
                .position(|c| c.name == name)
                .ok_or(name)
        })
        .collect()
}

/// Turns text literals in the vector columns of an `INSERT … VALUES` into array literals:
/// DataFusion would cast the text to one float and fail.
pub fn vector_text_literals(insert: &mut Insert, table: &TableDef) -> Result<()> {
    let targets: Vec<Option<usize>> = target_columns(insert, table)
        .into_iter()
        .map(|target| target.ok())
        .collect();
    let Some(source) = insert.source.as_mut() else {
        return Ok(());
    };
    let SetExpr::Values(values) = source.body.as_mut() else {
        return Ok(());
    };
    for (row_number, row) in values.rows.iter_mut().enumerate() {
        for (expr, target) in row.iter_mut().zip(&targets) {
            let Some(column) = target.and_then(|i| table.columns.get(i)) else {
                continue;
            };
            let ColumnType::Vector(_) = column.column_type else {
                continue;
            };
            let Expr::Value(value) = expr else { continue };
            let Value::SingleQuotedString(text) = &value.value else {
                continue;
            };
            let numbers = parse_vector_text(text).map_err(|message| {
                Error::InvalidText(format!(
                    "invalid input for vector column \"{}\": {message} (row {})",
                    column.name,
                    row_number + 1
                ))
            })?;
            *expr = Expr::Array(Array {
                elem: numbers
                    .iter()
                    .map(|n| Expr::value(Value::Number(format!("{n:?}"), false)))
                    .collect(),
                named: false,
            });
        }
    }
    Ok(())
}

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
