//! The primary key a prepared statement pins: `key column = $n` for every key column, bound
//! to row keys at each execution.

use crate::catalog::point_keys;
use crate::error::Result;
use crate::schema::TableDef;
use datafusion::common::ParamValues;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, Operator};

/// A filter that is `key column = $n` for every primary-key column, and nothing else.
#[derive(Debug, Clone)]
pub struct KeyPredicate {
    predicate: Expr,
}

impl KeyPredicate {
    /// Recognises `predicate` on `def`: every conjunct is `key column = $n` (either way round)
    /// and every key column is pinned.
    pub fn recognise(def: &TableDef, predicate: &Expr) -> Option<KeyPredicate> {
        let mut pinned = vec![false; def.primary_key.len()];
        for conjunct in split_conjunction(predicate) {
            pinned[equality_with_placeholder(def, conjunct)?] = true;
        }
        (!pinned.is_empty() && pinned.iter().all(|&p| p)).then(|| KeyPredicate {
            predicate: predicate.clone(),
        })
    }

    /// The row keys `values` select; `None` when a value's type differs from its key
    /// column's (the general path then decides, with its own coercions and errors).
    pub fn row_keys(&self, def: &TableDef, values: &ParamValues) -> Result<Option<Vec<Vec<u8>>>> {
        let predicate = self
            .predicate
            .clone()
            .transform(|expr| match expr {
                Expr::Placeholder(placeholder) => {
                    let value = values.get_placeholders_with_values(&placeholder.id)?.value;
                    Ok(Transformed::yes(Expr::Literal(value, None)))
                }
                other => Ok(Transformed::no(other)),
            })?
            .data;
        if !split_conjunction(&predicate)
            .into_iter()
            .all(|conjunct| literal_matches_column(def, conjunct))
        {
            return Ok(None);
        }
        point_keys(def, &[predicate])
    }
}

/// The key position of `column = $n` or `$n = column`.
fn equality_with_placeholder(def: &TableDef, expr: &Expr) -> Option<usize> {
    let (column, other) = column_and_other(expr)?;
    if !matches!(other, Expr::Placeholder(_)) {
        return None;
    }
    let index = def.columns.iter().position(|c| c.name == column)?;
    def.primary_key.iter().position(|&k| k == index)
}

/// True when `expr` (a bound equality) compares a column with a literal of its own type.
fn literal_matches_column(def: &TableDef, expr: &Expr) -> bool {
    let Some((column, Expr::Literal(value, _))) = column_and_other(expr) else {
        return false;
    };
    def.columns
        .iter()
        .find(|c| c.name == column)
        .is_some_and(|c| c.column_type.arrow_type() == value.data_type())
}

fn column_and_other(expr: &Expr) -> Option<(&str, &Expr)> {
    let Expr::BinaryExpr(binary) = expr else {
        return None;
    };
    if binary.op != Operator::Eq {
        return None;
    }
    match (binary.left.as_ref(), binary.right.as_ref()) {
        (Expr::Column(column), other) | (other, Expr::Column(column)) => {
            Some((column.name.as_str(), other))
        }
        _ => None,
    }
}
