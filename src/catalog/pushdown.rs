//! Turning `WHERE key = …` and `key IN (…)` filters into point reads of primary keys, and
//! comparisons of an index's first column with literals into ranges of its entries.

use crate::error::Result;
use crate::schema::TableDef;
use crate::storage::{ColumnValues, encode_key, index_entries, keys};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::cast;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Operator,
    expr::{Between, InList},
};

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

/// A scan of a secondary index: the key ranges of its entries that hold every row the filters
/// allow (a superset: the filters are still applied to the rows read).
#[derive(Debug, Clone)]
pub struct IndexScan {
    /// The index's name (for EXPLAIN).
    pub name: String,
    /// `[from, to)` ranges of entry keys, in key order.
    pub ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

/// True when `filter` compares the first column of a secondary index with literals.
pub fn constrains_index(table: &TableDef, filter: &Expr) -> bool {
    table.indexes.iter().any(|index| {
        let column = &table.columns[index.columns[0]].name;
        split_conjunction(filter)
            .into_iter()
            .any(|f| condition(column, f).is_some())
    })
}

/// What one conjunct says about a column.
enum Condition {
    /// The column is one of these values.
    Values(Vec<ScalarValue>),
    /// The column is at least / at most this value (bounds taken as inclusive).
    Lower(ScalarValue),
    Upper(ScalarValue),
    Between(ScalarValue, ScalarValue),
}

/// The index scan the conjunction of `filters` allows, through the first index (in definition
/// order) whose first column they compare with literals; equalities before ranges.
pub fn index_scan(table: &TableDef, filters: &[Expr]) -> Result<Option<IndexScan>> {
    let mut best: Option<(bool, IndexScan)> = None;
    for index in &table.indexes {
        let column = &table.columns[index.columns[0]];
        let mut values: Option<Vec<ScalarValue>> = None;
        let (mut lower, mut upper) = (None, None);
        for filter in filters.iter().flat_map(split_conjunction) {
            match condition(&column.name, filter) {
                Some(Condition::Values(more)) => {
                    values = Some(match values.take() {
                        None => more,
                        Some(earlier) => earlier.into_iter().filter(|v| more.contains(v)).collect(),
                    })
                }
                Some(Condition::Lower(v)) => lower = Some(v),
                Some(Condition::Upper(v)) => upper = Some(v),
                Some(Condition::Between(low, high)) => {
                    lower = Some(low);
                    upper = Some(high);
                }
                None => {}
            }
        }
        let prefix = keys::index_prefix(table.id, index.id);
        let bound = |value: &ScalarValue| encode_bound(table, index.columns[0], value);
        let (exact, ranges) = match values {
            Some(values) if values.len() <= MAX_POINT_KEYS => {
                let mut ranges = Vec::new();
                for value in &values {
                    if let Some(encoded) = bound(value)? {
                        let mut from = prefix.clone();
                        from.extend(encoded);
                        let to = keys::prefix_end(&from);
                        ranges.push((from, to));
                    }
                }
                ranges.sort();
                ranges.dedup();
                (true, ranges)
            }
            _ if lower.is_some() || upper.is_some() => {
                let mut from = index_entries::values_start(&prefix);
                if let Some(encoded) = lower.as_ref().map(bound).transpose()?.flatten() {
                    from = [prefix.as_slice(), &encoded].concat();
                }
                let mut to = index_entries::nulls_start(&prefix);
                if let Some(encoded) = upper.as_ref().map(bound).transpose()?.flatten() {
                    to = keys::prefix_end(&[prefix.as_slice(), &encoded].concat());
                }
                (false, vec![(from, to)])
            }
            _ => continue,
        };
        let scan = IndexScan {
            name: index.name.clone(),
            ranges,
        };
        if best
            .as_ref()
            .is_none_or(|(was_exact, _)| exact && !was_exact)
        {
            best = Some((exact, scan));
        }
    }
    Ok(best.map(|(_, scan)| scan))
}

fn condition(column: &str, filter: &Expr) -> Option<Condition> {
    let is_column = |e: &Expr| matches!(e, Expr::Column(c) if c.name == column);
    match filter {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => match (condition(column, left)?, condition(column, right)?) {
            (Condition::Values(mut a), Condition::Values(b)) => {
                a.extend(b);
                Some(Condition::Values(a))
            }
            _ => None,
        },
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (value, op) = if is_column(left) {
                (literal(right)?, *op)
            } else if is_column(right) {
                (literal(left)?, op.swap()?)
            } else {
                return None;
            };
            match op {
                Operator::Eq => Some(Condition::Values(vec![value])),
                Operator::Gt | Operator::GtEq => Some(Condition::Lower(value)),
                Operator::Lt | Operator::LtEq => Some(Condition::Upper(value)),
                _ => None,
            }
        }
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) if is_column(expr) => {
            let values = list.iter().map(literal).collect::<Option<Vec<_>>>()?;
            Some(Condition::Values(values))
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_column(expr) => Some(Condition::Between(literal(low)?, literal(high)?)),
        _ => None,
    }
}

/// A literal as a bound of an index's first column; `None` when it cannot equal a stored
/// value (NULL, or not convertible to the column's type).
fn encode_bound(table: &TableDef, column: usize, value: &ScalarValue) -> Result<Option<Vec<u8>>> {
    if value.is_null() {
        return Ok(None);
    }
    let column_type = table.columns[column].column_type;
    let Ok(converted) = cast(&value.to_array()?, &column_type.arrow_type()) else {
        return Ok(None);
    };
    if converted.is_null(0) {
        return Ok(None);
    }
    let values = ColumnValues::new(column_type, &converted)?;
    index_entries::encode_bound(&values).map(Some)
}
