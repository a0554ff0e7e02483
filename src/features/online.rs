//! `online_features('view', key [, key …])`: the latest stored feature row of each key, read
//! by point lookups in the online store. One row per key, in argument order; a key without a
//! row, or whose row is older than the view's TTL, gets NULL features. Without keys,
//! `online_features('view')` is every fresh online row (a scan), to join with in SQL. The rows
//! are read when the statement runs, so keys may be `$n` parameters of a prepared statement
//! (which then takes the serving fast path) and each execution sees the rows of its moment.

use crate::error::{Error, Result};
use crate::features::{FeatureView, FeatureViews, now_micros};
use crate::sql::arguments::{Arg, constant};
use crate::sql::config::TasteConfig;
use crate::sql::execution_table::{Answer, ExecutionTable, Planning};
use crate::storage::{ColumnValues, RowDecoder, Scan, encode_key, keys};
use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{filter_record_batch, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimestampMicrosecondType};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Expr;
use std::sync::Arc;

/// The `online_features` table function.
#[derive(Debug)]
pub struct OnlineFeatures {
    views: Arc<FeatureViews>,
}

impl OnlineFeatures {
    /// The function over `views`.
    pub fn new(views: Arc<FeatureViews>) -> Self {
        OnlineFeatures { views }
    }

    fn lookup(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        let usage = || {
            Error::InvalidParameter(
                "online_features takes a feature view name and keys: \
                 online_features('view', 'key1', 'key2'), or online_features('view') for all"
                    .into(),
            )
        };
        let (name, keys) = args.split_first().ok_or_else(usage)?;
        let ScalarValue::Utf8(Some(name)) = constant(FUNCTION, name)? else {
            return Err(usage());
        };
        let view = self.views.get(&name)?;
        let keys = match keys.is_empty() {
            true => None,
            false => Some(
                (keys.iter())
                    .map(|key| Arg::from_expr(FUNCTION, key))
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        let key_type = view.columns.columns[view.entity_index()]
            .column_type
            .arrow_type();
        Ok(ExecutionTable::of(OnlineRows {
            views: self.views.clone(),
            schema: view.columns.input_schema(),
            name,
            keys,
            key_type,
        }))
    }
}

impl TableFunctionImpl for OnlineFeatures {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        self.lookup(args.exprs()).map_err(Error::into_datafusion)
    }
}

/// The rows of one `online_features` call, read when its statement runs.
#[derive(Debug)]
struct OnlineRows {
    views: Arc<FeatureViews>,
    name: String,
    /// The keys asked for; `None`: every fresh row.
    keys: Option<Vec<Arg>>,
    /// The type of the view's key, which `$n` keys take.
    key_type: DataType,
    schema: SchemaRef,
}

#[async_trait]
impl Answer for OnlineRows {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn parameter_types(&self) -> Vec<(String, DataType)> {
        (self.keys.iter().flatten())
            .flat_map(|key| key.parameter_types(self.key_type.clone()))
            .collect()
    }

    async fn answer(&self, _: &TasteConfig, _: Planning<'_>) -> Result<RecordBatch> {
        let view = self.views.get(&self.name)?;
        if view.columns.input_schema().fields() != self.schema.fields() {
            return Err(Error::FeatureNotSupported(format!(
                "feature view \"{}\" changed since the statement was prepared",
                self.name
            )));
        }
        match &self.keys {
            None => scan(&self.views, &view),
            Some(keys) => {
                let keys = (keys.iter())
                    .map(|key| key.resolve(FUNCTION))
                    .collect::<Result<Vec<_>>>()?;
                read(&self.views, &view, &keys)
            }
        }
    }
}

const FUNCTION: &str = "online_features";

/// Every fresh online row of `view`, in key order.
fn scan(views: &FeatureViews, view: &FeatureView) -> Result<RecordBatch> {
    let all: Vec<usize> = (0..view.columns.columns.len()).collect();
    let schema = view.columns.input_schema();
    let mut decoder = RowDecoder::new(&view.columns, &all, schema, 1024);
    let (start, end) = keys::online_range(&view.name);
    views.store().scan(&start, &end, Scan::Cached, |_, value| {
        decoder.push(value)?;
        Ok(true)
    })?;
    let stored = decoder.finish()?;
    let now = now_micros();
    let stamps = stored
        .column(view.timestamp_index())
        .as_primitive::<TimestampMicrosecondType>();
    let fresh = BooleanArray::from_iter(
        (0..stamps.len())
            .map(|row| Some(stamps.is_valid(row) && view.is_fresh(stamps.value(row), now))),
    );
    Ok(filter_record_batch(&stored, &fresh)?)
}

/// One row per key: the stored row when present and fresh, else the key and NULLs.
fn read(views: &FeatureViews, view: &FeatureView, keys: &[ScalarValue]) -> Result<RecordBatch> {
    let entity = view.entity_index();
    let entity_column = &view.columns.columns[entity];
    let key_array = ScalarValue::iter_to_array(
        keys.iter()
            .map(|k| k.cast_to(&entity_column.column_type.arrow_type()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                Error::DatatypeMismatch(format!(
                    "the keys of feature view \"{}\" are {}",
                    view.name,
                    entity_column.column_type.sql_name()
                ))
            })?,
    )?;
    let key_values = ColumnValues::new(entity_column.column_type, &key_array)?;
    let all: Vec<usize> = (0..view.columns.columns.len()).collect();
    let schema = view.columns.input_schema();
    let mut decoder = RowDecoder::new(&view.columns, &all, schema.clone(), keys.len());
    let mut found = Vec::with_capacity(keys.len());
    let full_keys = (0..keys.len())
        .map(|row| {
            if key_values.is_null(row) {
                return Ok(None);
            }
            let key = encode_key(std::slice::from_ref(&key_values), row)?;
            Ok(Some(keys::online_row(&view.name, &key)))
        })
        .collect::<Result<Vec<_>>>()?;
    let present: Vec<&Vec<u8>> = full_keys.iter().flatten().collect();
    let mut values = views.store().multi_get(present)?.into_iter();
    for key in &full_keys {
        let value = match key {
            Some(_) => values.next().flatten(),
            None => None,
        };
        found.push(value.map(|bytes| {
            decoder.push(&bytes)?;
            Ok::<_, Error>(decoder.len() as u32 - 1)
        }));
    }
    let found = found
        .into_iter()
        .map(Option::transpose)
        .collect::<Result<Vec<_>>>()?;
    let stored = decoder.finish()?;
    let now = now_micros();
    let stamps = stored
        .column(view.timestamp_index())
        .as_primitive::<TimestampMicrosecondType>();
    let indices = UInt32Array::from_iter(found.into_iter().map(|at| {
        at.filter(|&row| {
            stamps.is_valid(row as usize) && view.is_fresh(stamps.value(row as usize), now)
        })
    }));
    let columns = stored
        .columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            if i == entity {
                Ok(key_array.clone())
            } else {
                Ok(take(column, &indices, None)?)
            }
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}
