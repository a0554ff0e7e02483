//! Prepared point writes: `UPDATE t SET … WHERE key = $n` and `DELETE FROM t WHERE key = $n`
//! (the whole primary key pinned, no FROM/USING, no RETURNING), and `INSERT INTO t … VALUES
//! (…)` of one row (no RETURNING). Recognised at preparation and run with compiled
//! expressions: one key read, one evaluation, one write in the statement's transaction,
//! through the same writers (and so the same checks, index upkeep and errors) as the general
//! path. Anything else takes the general path.

use crate::catalog::Catalog;
use crate::engine::fast_path::compiled::{Compiled, Parameters};
use crate::engine::fast_path::key::KeyPredicate;
use crate::engine::modify::Modification;
use crate::engine::transaction::current;
use crate::engine::{CommandTag, Engine, Outcome};
use crate::error::Result;
use crate::sql::insert_values::explain_not_null;
use crate::sql::names;
use crate::storage::reader::{self, ReadShape};
use crate::storage::{StoredTable, Transaction, writer};
use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::{DFSchema, ParamValues, TableReference};
use datafusion::execution::SessionState;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{LogicalPlan, WriteOp};
use datafusion::sql::sqlparser::ast::Insert;
use std::sync::Arc;

/// A recognised point write.
#[derive(Debug, Clone)]
pub struct PointWrite {
    table: String,
    table_id: u64,
    shape: Shape,
}

#[derive(Debug, Clone)]
enum Shape {
    /// UPDATE or DELETE of the row the key pins: `found` computes, from the stored row (with
    /// its key last), the columns the general path's query would give.
    Keyed {
        modification: Box<Modification>,
        key: KeyPredicate,
        stored: SchemaRef,
        parameters: Parameters,
        found: Compiled,
    },
    /// INSERT of one row: `values` computes the VALUES row, `projection` the table's columns.
    Insert {
        insert: Box<Insert>,
        parameters: Parameters,
        values: Compiled,
        projection: Compiled,
    },
}

impl PointWrite {
    /// Recognises the plan of an UPDATE or DELETE (`modification`) that pins the whole key of
    /// its table: `Projection ← Filter(key = $n …) ← SubqueryAlias ← TableScan`.
    pub fn keyed(
        state: &SessionState,
        catalog: &Catalog,
        modification: &Modification,
        plan: &LogicalPlan,
        types: &[DataType],
    ) -> Option<PointWrite> {
        if !modification.finds_rows_by_filter_only() || modification.has_returning() {
            return None;
        }
        let LogicalPlan::Projection(projection) = plan else {
            return None;
        };
        let LogicalPlan::Filter(filter) = projection.input.as_ref() else {
            return None;
        };
        let LogicalPlan::SubqueryAlias(alias) = filter.input.as_ref() else {
            return None;
        };
        let LogicalPlan::TableScan(scan) = alias.input.as_ref() else {
            return None;
        };
        if scan.fetch.is_some() || !scan.filters.is_empty() || scan.projection.is_some() {
            return None;
        }
        let table = catalog.get(modification.table())?;
        let stored = Arc::new(scan.projected_schema.as_arrow().clone());
        if stored.fields().len() != table.def.columns.len() + 1 {
            return None;
        }
        let key = KeyPredicate::recognise(&table.def, &filter.predicate)?;
        let parameters = Parameters::new(types, &projection.expr)?;
        let found = Compiled::new(
            state,
            &projection.expr,
            alias.schema.as_ref(),
            &parameters,
            plan.schema().as_arrow(),
        )?;
        Some(PointWrite {
            table: table.def.name.clone(),
            table_id: table.def.id,
            shape: Shape::Keyed {
                modification: Box::new(modification.clone()),
                key,
                stored,
                parameters,
                found,
            },
        })
    }

    /// Recognises the plan of `INSERT INTO t … VALUES (one row)` into a stored table:
    /// `Dml(Insert) ← Projection ← Values`.
    pub fn insert(
        state: &SessionState,
        catalog: &Catalog,
        insert: &Insert,
        plan: &LogicalPlan,
        types: &[DataType],
    ) -> Option<PointWrite> {
        if insert.returning.is_some() || insert.on.is_some() {
            return None;
        }
        let LogicalPlan::Dml(dml) = plan else {
            return None;
        };
        if dml.op != WriteOp::Insert(InsertOp::Append) || !ours(&dml.table_name) {
            return None;
        }
        let LogicalPlan::Projection(projection) = dml.input.as_ref() else {
            return None;
        };
        let LogicalPlan::Values(values) = projection.input.as_ref() else {
            return None;
        };
        let [row] = values.values.as_slice() else {
            return None;
        };
        let table = catalog.get(dml.table_name.table())?;
        let parameters = Parameters::new(types, row.iter().chain(&projection.expr))?;
        let values_schema = values.schema.as_arrow();
        let row = Compiled::new(state, row, &DFSchema::empty(), &parameters, values_schema)?;
        let projection = Compiled::new(
            state,
            &projection.expr,
            values.schema.as_ref(),
            &parameters,
            projection.schema.as_arrow(),
        )?;
        Some(PointWrite {
            table: table.def.name.clone(),
            table_id: table.def.id,
            shape: Shape::Insert {
                insert: Box::new(insert.clone()),
                parameters,
                values: row,
                projection,
            },
        })
    }

    /// Runs the write with `values`; `None` when the table is not the one prepared any more,
    /// or a value is not of its parameter's type (the general path then runs).
    pub async fn run(&self, engine: &Engine, values: &ParamValues) -> Result<Option<Outcome>> {
        let Some(table) = engine.catalog().get(&self.table) else {
            return Ok(None);
        };
        if table.def.id != self.table_id {
            return Ok(None);
        }
        match &self.shape {
            Shape::Keyed {
                modification,
                key,
                stored,
                parameters,
                found,
            } => {
                let Some(row_keys) = key.row_keys(&table.def, values)? else {
                    return Ok(None);
                };
                let Some(bound) = parameters.bind(values)? else {
                    return Ok(None);
                };
                let write = |txn: Arc<Transaction>| {
                    let written = (|| {
                        let rows = read_rows(engine, &table, stored, &row_keys, &txn)?;
                        let found = found.evaluate(&bound.append_to(&rows)?)?;
                        engine.write_found(modification, &table, found, None, &txn)
                    })();
                    std::future::ready(written)
                };
                engine.in_statement_transaction(write).await.map(Some)
            }
            Shape::Insert {
                insert,
                parameters,
                values: row,
                projection,
            } => {
                let Some(bound) = parameters.bind(values)? else {
                    return Ok(None);
                };
                let nothing = RecordBatch::try_new_with_options(
                    Arc::new(Schema::empty()),
                    vec![],
                    &RecordBatchOptions::new().with_row_count(Some(1)),
                )?;
                let written = (|| {
                    let row = row.evaluate(&bound.append_to(&nothing)?)?;
                    let batch = projection.evaluate(&bound.append_to(&row)?)?;
                    let store = engine.catalog().store();
                    writer::insert(store, &table, &[batch], current().as_deref())
                })();
                match written {
                    Ok(count) => Ok(Some(Outcome::Done(CommandTag::counted("INSERT", count)))),
                    Err(error) => Err(explain_not_null(error, insert, Some(&table.def))),
                }
            }
        }
    }
}

/// The stored rows under `row_keys` (0 or 1), every column and the key last, as `txn` sees
/// them.
fn read_rows(
    engine: &Engine,
    table: &StoredTable,
    stored: &SchemaRef,
    row_keys: &[Vec<u8>],
    txn: &Transaction,
) -> Result<RecordBatch> {
    let columns: Vec<usize> = (0..table.def.columns.len()).collect();
    let shape = ReadShape {
        table: &table.def,
        projection: &columns,
        schema: stored.clone(),
        batch_size: row_keys.len().max(1),
        row_keys_at: Some(columns.len()),
        txn: Some(txn),
    };
    reader::lookup(engine.catalog().store(), &shape, row_keys)
}

/// True when `name` is in TasteDB's own schema (or unqualified).
fn ours(name: &TableReference) -> bool {
    let matches = |part: Option<&str>, ours: &str| part.is_none_or(|p| p == ours);
    matches(name.schema(), names::SCHEMA) && matches(name.catalog(), names::CATALOG)
}
