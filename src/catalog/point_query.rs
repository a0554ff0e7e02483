//! Prepared point queries: `SELECT columns FROM t WHERE key = $1` on a stored table, answered
//! by one RocksDB read per execution.
//!
//! DataFusion optimises and plans a statement again on every execution, which costs far more
//! than the read itself; a serving workload (a prepared lookup by id, executed millions of
//! times) would spend nearly all its time planning. Recognising this one shape at Parse and
//! reading the row directly is the plan cache DataFusion does not have. Anything else, or a
//! table that changed since Parse, takes the general path.

use crate::catalog::Catalog;
use crate::catalog::pushdown::point_keys;
use crate::error::Result;
use crate::schema::TableDef;
use crate::sql::names;
use crate::storage::Transaction;
use crate::storage::reader::{self, ReadShape};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ParamValues;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, LogicalPlan};
use std::sync::Arc;

/// A recognised point query: which table, which columns, and the key predicate with its
/// `$n` placeholders.
#[derive(Debug, Clone)]
pub struct PointQuery {
    table: String,
    table_id: u64,
    projection: Vec<usize>,
    schema: SchemaRef,
    predicate: Expr,
}

impl PointQuery {
    /// Recognises `Projection(columns) ← Filter(key = $n …) ← TableScan(stored table)` where
    /// the filter pins every primary-key column and does nothing else.
    pub fn recognise(catalog: &Catalog, plan: &LogicalPlan) -> Option<PointQuery> {
        let LogicalPlan::Projection(projection) = plan else {
            return None;
        };
        let LogicalPlan::Filter(filter) = projection.input.as_ref() else {
            return None;
        };
        let LogicalPlan::TableScan(scan) = filter.input.as_ref() else {
            return None;
        };
        if scan.fetch.is_some() || !scan.filters.is_empty() || scan.projection.is_some() {
            return None;
        }
        let ours = |part: Option<&str>, name: &str| part.is_none_or(|p| p == name);
        if !ours(scan.table_name.schema(), names::SCHEMA)
            || !ours(scan.table_name.catalog(), names::CATALOG)
        {
            return None;
        }
        let stored = catalog.get(scan.table_name.table())?;
        let def = &stored.def;
        let columns = projection
            .expr
            .iter()
            .map(|expr| match expr {
                Expr::Column(column) => def.columns.iter().position(|c| c.name == column.name),
                _ => None,
            })
            .collect::<Option<Vec<usize>>>()?;
        let schema = Arc::new(plan.schema().as_arrow().clone());
        let types_match = columns.iter().zip(schema.fields()).all(|(&index, field)| {
            &def.columns[index].column_type.arrow_type() == field.data_type()
        });
        if !types_match || !pins_the_key(def, &filter.predicate) {
            return None;
        }
        Some(PointQuery {
            table: def.name.clone(),
            table_id: def.id,
            projection: columns,
            schema,
            predicate: filter.predicate.clone(),
        })
    }

    /// Reads the row the parameters `values` select; `None` when the table is not the one
    /// prepared any more, or a value's type differs from its key column's (the general path
    /// then decides).
    pub fn run(
        &self,
        catalog: &Catalog,
        values: &ParamValues,
        txn: Option<&Transaction>,
    ) -> Result<Option<RecordBatch>> {
        let Some(stored) = catalog.get(&self.table) else {
            return Ok(None);
        };
        if stored.def.id != self.table_id {
            return Ok(None);
        }
        let mut exact = true;
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
        for conjunct in split_conjunction(&predicate) {
            exact &= literal_matches_column(&stored.def, conjunct);
        }
        if !exact {
            return Ok(None);
        }
        let Some(keys) = point_keys(&stored.def, &[predicate])? else {
            return Ok(None);
        };
        let shape = ReadShape {
            table: &stored.def,
            projection: &self.projection,
            schema: self.schema.clone(),
            batch_size: keys.len(),
            row_keys_at: None,
            txn,
        };
        reader::lookup(catalog.store(), &shape, &keys).map(Some)
    }
}

/// True when every conjunct of `predicate` is `key column = $n` (either way round), and every
/// key column is pinned.
fn pins_the_key(def: &TableDef, predicate: &Expr) -> bool {
    let mut pinned = vec![false; def.primary_key.len()];
    for conjunct in split_conjunction(predicate) {
        let Some(position) = equality_with_placeholder(def, conjunct) else {
            return false;
        };
        pinned[position] = true;
    }
    !pinned.is_empty() && pinned.iter().all(|&p| p)
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
    if binary.op != datafusion::logical_expr::Operator::Eq {
        return None;
    }
    match (binary.left.as_ref(), binary.right.as_ref()) {
        (Expr::Column(column), other) | (other, Expr::Column(column)) => {
            Some((column.name.as_str(), other))
        }
        _ => None,
    }
}
