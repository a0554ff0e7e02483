//! `nearest('table', 'column', query_vector, k [, ef_search])`: the `k` rows of a table whose
//! vectors are nearest to the query by the column's HNSW index, with their `distance`
//! (Euclidean for `l2`, 1 − cosine for `cosine`, −inner product for `dot`), nearest first.
//! Every column of the table comes back, so the key and any other column can be selected.
//! The search runs when the statement does: the query vector, k and ef_search may be `$n`
//! parameters of a prepared statement, which then takes the serving fast path.

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::sql::arguments::{Arg, constant, integer};
use crate::sql::config::TasteConfig;
use crate::sql::execution_table::{Answer, ExecutionTable, Planning};
use crate::storage::vector_values::{parse_vector_text, vector_problem};
use crate::storage::{RowDecoder, keys};
use crate::vectors::column_index::{DEFAULT_EF_SEARCH, VectorIndexes, column_index};
use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Float32Type, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Expr;
use std::sync::Arc;

const USAGE: &str = "nearest takes a table, a vector column, a query vector and k: \
                     nearest('docs', 'embedding', [0.1, 0.2], 10 [, ef_search])";

/// The `nearest` table function.
#[derive(Debug)]
pub struct Nearest {
    catalog: Arc<Catalog>,
    indexes: Arc<VectorIndexes>,
}

impl Nearest {
    /// The function over the tables of `catalog` and their `indexes`.
    pub fn new(catalog: Arc<Catalog>, indexes: Arc<VectorIndexes>) -> Self {
        Nearest { catalog, indexes }
    }

    fn table(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        let [table, column, query, k, rest @ ..] = args else {
            return Err(Error::InvalidParameter(USAGE.into()));
        };
        let (table, column) = (
            text(&constant("nearest", table)?)?,
            text(&constant("nearest", column)?)?,
        );
        let ef = match rest {
            [] => None,
            [ef] => Some(Arg::from_expr("nearest", ef)?),
            _ => return Err(Error::InvalidParameter(USAGE.into())),
        };
        let stored =
            (self.catalog.get(&table)).ok_or_else(|| Error::UndefinedTable(table.clone()))?;
        let mut fields: Vec<Field> = (stored.def.schema().fields().iter())
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("distance", DataType::Float64, false));
        Ok(ExecutionTable::of(NearestRows {
            catalog: self.catalog.clone(),
            indexes: self.indexes.clone(),
            table,
            column,
            query: Arg::from_expr("nearest", query)?,
            k: Arg::from_expr("nearest", k)?,
            ef,
            schema: Arc::new(Schema::new(fields)),
        }))
    }
}

impl TableFunctionImpl for Nearest {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        self.table(args.exprs()).map_err(Error::into_datafusion)
    }
}

/// The rows of one `nearest` call, searched when its statement runs.
#[derive(Debug)]
struct NearestRows {
    catalog: Arc<Catalog>,
    indexes: Arc<VectorIndexes>,
    table: String,
    column: String,
    query: Arg,
    k: Arg,
    ef: Option<Arg>,
    /// The table's columns and `distance`.
    schema: SchemaRef,
}

#[async_trait]
impl Answer for NearestRows {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The query vector is given as text (`'[0.1, 0.2]'`, pgvector's form) or as a list.
    fn parameter_types(&self) -> Vec<(String, DataType)> {
        let mut types = self.query.parameter_types(DataType::Utf8);
        types.extend(self.k.parameter_types(DataType::Int64));
        types.extend((self.ef.iter()).flat_map(|ef| ef.parameter_types(DataType::Int64)));
        types
    }

    async fn answer(&self, _: &TasteConfig, _: Planning<'_>) -> Result<RecordBatch> {
        let query = query_vector(&self.query.resolve("nearest")?)?;
        let k = count("k", &self.k.resolve("nearest")?)?;
        let ef = match &self.ef {
            None => DEFAULT_EF_SEARCH,
            Some(ef) => count("ef_search", &ef.resolve("nearest")?)?,
        };
        let (table_name, column_name) = (&self.table, &self.column);
        let table = self
            .catalog
            .get(table_name)
            .ok_or_else(|| Error::UndefinedTable(table_name.clone()))?;
        let current = table.def.schema();
        let unchanged = current.fields().len() + 1 == self.schema.fields().len()
            && (current.fields().iter().zip(self.schema.fields())).all(|(now, then)| now == then);
        if !unchanged {
            return Err(Error::FeatureNotSupported(format!(
                "table \"{table_name}\" changed since the statement was prepared"
            )));
        }
        let column = column_index(&table.def, column_name)?;
        let def = self
            .indexes
            .for_column(&table.def, column_name)
            .ok_or_else(|| {
                Error::UndefinedObject(format!(
                    "column \"{column_name}\" of \"{table_name}\" has no hnsw index; \
                     CREATE INDEX ON {table_name} USING hnsw ({column_name}) first, or order \
                     by l2_distance / cosine_distance for an exact scan"
                ))
            })?;
        let hits = self.indexes.search(&def, &table, &query, k, ef.max(k))?;
        let metric = def.metric;
        let def = &table.def;
        let all: Vec<usize> = (0..def.columns.len()).collect();
        let mut decoder = RowDecoder::new(def, &all, def.schema(), hits.len());
        let stored = self
            .catalog
            .store()
            .multi_get(hits.iter().map(|(key, _)| keys::row(def.id, key)))?;
        let expiry = crate::storage::Expiry::now(def);
        for bytes in stored.into_iter().flatten() {
            if expiry.as_ref().is_none_or(|e| !e.expired(&bytes)) {
                decoder.push(&bytes)?;
            }
        }
        let rows = decoder.finish()?;
        // The graph's distances come from transformed vectors; the reported ones are exact,
        // computed like the scalar distance functions, and the rows ordered by them.
        let vectors = rows.column(column).as_list::<i32>();
        let distances: Vec<f64> = (0..vectors.len())
            .map(|row| {
                let vector = vectors.value(row);
                metric.distance(&query, vector.as_primitive::<Float32Type>().values())
            })
            .collect();
        let mut order: Vec<u32> = (0..distances.len() as u32).collect();
        order.sort_by(|a, b| distances[*a as usize].total_cmp(&distances[*b as usize]));
        let order = UInt32Array::from(order);
        let rows = RecordBatch::try_new(
            rows.schema(),
            rows.columns()
                .iter()
                .map(|c| take(c, &order, None))
                .collect::<std::result::Result<Vec<_>, _>>()?,
        )?;
        let distances = take(&Float64Array::from(distances), &order, None)?;
        let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
        columns.push(distances);
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

fn text(value: &ScalarValue) -> Result<String> {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Ok(s.clone()),
        _ => Err(Error::InvalidParameter(USAGE.into())),
    }
}

fn count(name: &str, value: &ScalarValue) -> Result<usize> {
    let number = integer(value).ok_or_else(|| Error::InvalidParameter(USAGE.into()))?;
    usize::try_from(number)
        .ok()
        .filter(|n| (1..=100_000).contains(n))
        .ok_or_else(|| {
            Error::InvalidParameter(format!("{name} must be from 1 to 100000, not {number}"))
        })
}

/// The query vector: a list literal or its text (`'[0.1, 0.2]'`), with no NULL, NaN or
/// infinity, and at least one element.
fn query_vector(value: &ScalarValue) -> Result<Vec<f32>> {
    let vector = match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => parse_vector_text(s).map_err(Error::InvalidText)?,
        ScalarValue::List(list) if list.len() == 1 && list.is_valid(0) => {
            let values = cast(&list.value(0), &DataType::Float32)?;
            if values.null_count() > 0 {
                return Err(Error::DataException("a vector cannot contain NULL".into()));
            }
            values.as_primitive::<Float32Type>().values().to_vec()
        }
        ScalarValue::Null | ScalarValue::List(_) => {
            return Err(Error::InvalidParameter("the query vector is NULL".into()));
        }
        other => {
            return Err(Error::DatatypeMismatch(format!(
                "the query vector must be a list of numbers like [0.1, 0.2], not {}",
                other.data_type()
            )));
        }
    };
    match vector_problem(&vector, None) {
        Some(problem) => Err(Error::DataException(problem)),
        None => Ok(vector),
    }
}
