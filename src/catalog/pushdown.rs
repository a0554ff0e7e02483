//! Turning `WHERE key = …` and `key IN (…)` filters into point reads of primary keys.

use crate::error::Result;
use crate::schema::TableDef;
use crate::storage::{ColumnValues, encode_key};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::cast;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, expr::InList};

/// More candidate keys than this and a scan is cheaper to reason about than point reads.
const MAX_POINT_KEYS: usize = 10_000;

/// True when `filter` restricts a primary-key column to a list of literal values.
pub fn constrains_key(table: &TableDef, filter: &Expr) -> bool {
    split_conjunction(filter)
        .into_iter()
        .any(|f| key_column_values(table, f).is_some())
}

/// The row keys a conjunction of `filters` allows, when it pins every primary-key column to
/// literal values; `None` means the rows must be found by a scan.
pub fn point_keys(table: &TableDef, filters: &[Expr]) -> Result<Option<Vec<Vec<u8>>>> {
    if !table.has_primary_key() {
        return Ok(None);
    }
    let mut candidates: Vec<Option<Vec<ScalarValue>>> = vec![None; table.primary_key.len()];
    for filter in filters.iter().flat_map(split_conjunction) {
        if let Some((position, values)) = key_column_values(table, filter) {
            candidates[position] = Some(match candidates[position].take() {
                None => values,
                Some(earlier) => earlier.into_iter().filter(|v| values.contains(v)).collect(),
            });
        }
    }
    let Some(candidates) = candidates.into_iter().collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    let combinations = candidates
        .iter()
        .try_fold(1usize, |n, values| n.checked_mul(values.len()));
    if combinations.is_none_or(|n| n > MAX_POINT_KEYS) {
        return Ok(None);
    }
    let mut keys = Vec::new();
    for combination in cartesian(&candidates) {
        if let Some(key) = encode_literals(table, &combination)? {
            keys.push(key);
        }
    }
    keys.sort();
    keys.dedup();
    Ok(Some(keys))
}

/// `(position in the primary key, allowed values)` when `filter` is `key = literal`,
/// `literal = key`, `key IN (literals)`, or an OR of those on the same key column (DataFusion
/// rewrites short IN lists into ORs).
fn key_column_values(table: &TableDef, filter: &Expr) -> Option<(usize, Vec<ScalarValue>)> {
    match filter {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let (position, mut values) = key_column_values(table, left)?;
            let (other, more) = key_column_values(table, right)?;
            if position != other {
                return None;
            }
            values.extend(more);
            Some((position, values))
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (key_position(table, left), key_position(table, right)) {
            (Some(position), None) => Some((position, vec![literal(right)?])),
            (None, Some(position)) => Some((position, vec![literal(left)?])),
            _ => None,
        },
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) => {
            let position = key_position(table, expr)?;
            let values = list.iter().map(literal).collect::<Option<Vec<_>>>()?;
            Some((position, values))
        }
        _ => None,
    }
}

fn key_position(table: &TableDef, expr: &Expr) -> Option<usize> {
    let Expr::Column(column) = expr else {
        return None;
    };
    let index = table.columns.iter().position(|c| c.name == column.name)?;
    table.primary_key.iter().position(|&k| k == index)
}

fn literal(expr: &Expr) -> Option<ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value.clone()),
        _ => None,
    }
}

fn cartesian(candidates: &[Vec<ScalarValue>]) -> Vec<Vec<ScalarValue>> {
    candidates
        .iter()
        .fold(vec![Vec::new()], |prefixes, values| {
            prefixes
                .iter()
                .flat_map(|prefix| {
                    values.iter().map(move |value| {
                        let mut next = prefix.clone();
                        next.push(value.clone());
                        next
                    })
                })
                .collect()
        })
}

/// Encodes literal key values as a row key; `None` when a value cannot equal any stored key
/// (NULL, or not convertible to the column's type).
fn encode_literals(table: &TableDef, values: &[ScalarValue]) -> Result<Option<Vec<u8>>> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(values.len());
    for (value, &index) in values.iter().zip(&table.primary_key) {
        if value.is_null() {
            return Ok(None);
        }
        let Ok(converted) = cast(
            &value.to_array()?,
            &table.columns[index].column_type.arrow_type(),
        ) else {
            return Ok(None);
        };
        if converted.is_null(0) {
            return Ok(None);
        }
        arrays.push(converted);
    }
    let columns = arrays
        .iter()
        .zip(&table.primary_key)
        .map(|(array, &index)| ColumnValues::new(table.columns[index].column_type, array))
        .collect::<Result<Vec<_>>>()?;
    encode_key(&columns, 0).map(Some)
}
