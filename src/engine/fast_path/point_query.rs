//! Prepared point queries: `SELECT columns FROM t WHERE key = $1` on a stored table, answered
//! by one RocksDB read per execution.
//!
//! DataFusion optimises and plans a statement again on every execution, which costs far more
//! than the read itself; a serving workload (a prepared lookup by id, executed millions of
//! times) would spend nearly all its time planning. Recognising this one shape at Parse and
//! reading the row directly is the plan cache DataFusion does not have. Anything else, or a
//! table that changed since Parse, takes the general path.

use crate::catalog::Catalog;
use crate::engine::fast_path::key::KeyPredicate;
use crate::error::Result;
use crate::sql::names;
use crate::storage::Transaction;
use crate::storage::reader::{self, ReadShape};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ParamValues;
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
    key: KeyPredicate,
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
        if !types_match {
            return None;
        }
        let key = KeyPredicate::recognise(def, &filter.predicate)?;
        Some(PointQuery {
            table: def.name.clone(),
            table_id: def.id,
            projection: columns,
            schema,
            key,
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
        let Some(keys) = self.key.row_keys(&stored.def, values)? else {
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
