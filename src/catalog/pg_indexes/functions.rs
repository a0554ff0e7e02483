//! `pg_get_indexdef`, `pg_get_constraintdef` and the relation size functions, over the OIDs
//! of the last query that read this module's tables (every client reads `pg_class` or
//! `pg_index` in the query that asks, or before it, to learn the OID).

use super::{IndexCatalog, Relation, quote_ident};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use std::sync::Arc;

/// What a function answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Answer {
    /// `pg_get_indexdef(oid [, column, pretty])`: the statement, or the column's name.
    IndexDefinition,
    /// `pg_get_constraintdef(oid [, pretty])`.
    ConstraintDefinition,
    /// Bytes of a table's rows on disk (`pg_table_size`, `pg_relation_size`,
    /// `pg_total_relation_size`: a primary key is the rows' own order, not a second file).
    TableSize,
    /// `pg_indexes_size`: 0, as the indexes above live in the rows or in memory.
    IndexesSize,
}

/// The functions over `relations`.
pub fn all(relations: &Arc<IndexCatalog>) -> Vec<ScalarUDF> {
    [
        ("pg_get_indexdef", Answer::IndexDefinition),
        ("pg_get_constraintdef", Answer::ConstraintDefinition),
        ("pg_table_size", Answer::TableSize),
        ("pg_relation_size", Answer::TableSize),
        ("pg_total_relation_size", Answer::TableSize),
        ("pg_indexes_size", Answer::IndexesSize),
    ]
    .into_iter()
    .map(|(name, answer)| {
        ScalarUDF::new_from_impl(RelationFunction {
            name,
            answer,
            relations: relations.clone(),
            signature: Signature::variadic_any(Volatility::Volatile),
        })
    })
    .collect()
}

#[derive(Debug)]
struct RelationFunction {
    name: &'static str,
    answer: Answer,
    relations: Arc<IndexCatalog>,
    signature: Signature,
}

impl PartialEq for RelationFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.relations, &other.relations)
    }
}
impl Eq for RelationFunction {}
impl std::hash::Hash for RelationFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl ScalarUDFImpl for RelationFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(match self.answer {
            Answer::IndexDefinition | Answer::ConstraintDefinition => DataType::Utf8,
            Answer::TableSize | Answer::IndexesSize => DataType::Int64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let integers = |i: usize| -> Result<Option<ArrayRef>> {
            match args.args.get(i) {
                Some(arg) => Ok(Some(cast(&arg.to_array(rows)?, &DataType::Int64)?)),
                None => Ok(None),
            }
        };
        let Some(oids) = integers(0)? else {
            return plan_err!("No function matches {}() without arguments", self.name);
        };
        let oids = oids.as_primitive::<Int64Type>();
        let oid = |row: usize| {
            (!oids.is_null(row))
                .then(|| i32::try_from(oids.value(row)).ok())
                .flatten()
        };
        let relation = |row: usize| oid(row).and_then(|oid| self.relations.relation(oid));
        let array: ArrayRef = match self.answer {
            Answer::IndexDefinition => {
                let columns = integers(1)?;
                let columns = columns.as_ref().map(|c| c.as_primitive::<Int64Type>());
                let column = |row: usize| columns.map_or(0, |c| c.value(row));
                Arc::new(StringArray::from_iter((0..rows).map(|row| {
                    match (relation(row), column(row)) {
                        (Some(Relation::Index(index)), 0) => Some(index.definition()),
                        (Some(Relation::Index(index)), n) => usize::try_from(n - 1)
                            .ok()
                            .and_then(|n| index.columns.get(n))
                            .map(|c| quote_ident(c)),
                        _ => None,
                    }
                })))
            }
            Answer::ConstraintDefinition => Arc::new(StringArray::from_iter((0..rows).map(
                |row| match relation(row) {
                    Some(Relation::Constraint(index)) => Some(index.constraint_definition()),
                    _ => None,
                },
            ))),
            Answer::TableSize => Arc::new(Int64Array::from_iter((0..rows).map(
                |row| match relation(row)? {
                    Relation::Table(name) => self.relations.catalog.table_size(&name),
                    Relation::Index(_) | Relation::Constraint(_) => Some(0),
                },
            ))),
            Answer::IndexesSize => Arc::new(Int64Array::from_iter(
                (0..rows).map(|row| relation(row).map(|_| 0)),
            )),
        };
        Ok(ColumnarValue::Array(array))
    }
}
