//! `historical_features('view', (SELECT entity, ts, … FROM spine))`: a point-in-time correct
//! training set. For each spine row, the feature row of its entity with the newest timestamp
//! not after the spine row's timestamp, and within the view's TTL of it; NULL features when
//! there is none. Nothing from the future leaks in.
//!
//! DataFusion plans table-function arguments as scalar expressions, which allow a subquery of
//! one column only. So the spine query is taken out of the statement first ([`SIGNATURE`],
//! `sql::query_arguments`), planned, and a token left in its place; the function picks the plan
//! up by that token.

use crate::error::{Error, Result};
use crate::features::materialize::FeatureRows;
use crate::features::{FeatureView, FeatureViews};
use crate::sql::arguments::constant;
use crate::sql::config::TasteConfig;
use crate::sql::execution_table::{Answer, ExecutionTable, Planning};
use crate::sql::query_arguments::{QueryArguments, QuerySignature, run_plan};
use crate::storage::ColumnValues;
use crate::storage::encode_key;
use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{can_cast_types, cast, concat, take};
use datafusion::arrow::datatypes::TimestampMicrosecondType;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, LogicalPlan};
use std::collections::HashMap;
use std::sync::Arc;

/// `historical_features(view, spine)`: the spine is a query.
pub const SIGNATURE: QuerySignature = QuerySignature {
    function: "historical_features",
    positional: &["view", "spine"],
    named: &[],
    query: 1,
    tables: &[],
};

/// The `historical_features` table function.
#[derive(Debug)]
pub struct HistoricalFeatures {
    views: Arc<FeatureViews>,
    spines: Arc<QueryArguments>,
}

impl HistoricalFeatures {
    /// The function over `views`, reading spine plans from `spines`.
    pub fn new(views: Arc<FeatureViews>, spines: Arc<QueryArguments>) -> Self {
        HistoricalFeatures { views, spines }
    }

    fn table(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        let usage = || {
            Error::InvalidParameter(
                "historical_features takes a feature view name and a query of (entity, \
                 timestamp, …) rows: historical_features('view', (SELECT user_id, ts FROM \
                 labels))"
                    .into(),
            )
        };
        let [name, spine] = args else {
            return Err(usage());
        };
        let (ScalarValue::Utf8(Some(name)), ScalarValue::Utf8(Some(token))) = (
            constant(SIGNATURE.function, name)?,
            constant(SIGNATURE.function, spine)?,
        ) else {
            return Err(usage());
        };
        let view = self.views.get(&name)?;
        let (spine, _) = self.spines.take(&token).ok_or_else(usage)?;
        let schema = output_schema(&view, spine.schema().as_arrow())?;
        Ok(ExecutionTable::of(PointInTimeTable {
            view,
            spine,
            schema,
        }))
    }
}

impl TableFunctionImpl for HistoricalFeatures {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        self.table(args.exprs()).map_err(Error::into_datafusion)
    }
}

/// The spine's columns, then `feature_ts` and the view's feature columns.
fn output_schema(view: &FeatureView, spine: &Schema) -> Result<SchemaRef> {
    if spine.fields().len() < 2 {
        return Err(Error::InvalidParameter(format!(
            "the spine of historical_features('{}', …) needs an entity column and a timestamp \
             column, in that order",
            view.name
        )));
    }
    let time_type = spine.field(1).data_type();
    if !matches!(
        time_type,
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
    ) {
        return Err(Error::DatatypeMismatch(format!(
            "the spine's second column \"{}\" must be a timestamp, not {time_type}",
            spine.field(1).name()
        )));
    }
    let entity_type = view.columns.columns[view.entity_index()]
        .column_type
        .arrow_type();
    if !can_cast_types(spine.field(0).data_type(), &entity_type) {
        return Err(Error::DatatypeMismatch(format!(
            "the spine's first column \"{}\" ({}) cannot be compared with the entity keys of \
             feature view \"{}\" ({entity_type})",
            spine.field(0).name(),
            spine.field(0).data_type(),
            view.name
        )));
    }
    let mut fields: Vec<Field> = spine
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    fields.push(Field::new(
        "feature_ts",
        DataType::Timestamp(TimeUnit::Microsecond, None),
        true,
    ));
    for (i, column) in view.columns.columns.iter().enumerate() {
        if i == view.entity_index() || i == view.timestamp_index() {
            continue;
        }
        if fields.iter().any(|f| f.name() == &column.name) {
            return Err(Error::DuplicateColumn(column.name.clone()));
        }
        fields.push(Field::new(
            &column.name,
            column.column_type.arrow_type(),
            true,
        ));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// The provider of one call: runs the spine and the definition when scanned.
#[derive(Debug)]
struct PointInTimeTable {
    view: FeatureView,
    spine: LogicalPlan,
    schema: SchemaRef,
}

#[async_trait]
impl Answer for PointInTimeTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn parameter_types(&self) -> Vec<(String, DataType)> {
        Vec::new()
    }

    /// It runs the spine's query and the view's definition.
    fn answers_without_planning(&self) -> bool {
        false
    }

    async fn answer(&self, _: &TasteConfig, planning: Planning<'_>) -> Result<RecordBatch> {
        let state = planning.state();
        let spine = run_plan(&*state, &self.spine).await?;
        let definition = state.create_logical_plan(&self.view.definition).await?;
        let features = run_plan(&*state, &definition).await?;
        let rows = FeatureRows::new(&self.view.columns, &features)?;
        point_in_time(&self.view, &rows, &spine, &self.schema)
    }
}

/// Joins every spine row (entity, timestamp, …) with the newest feature row of its entity
/// whose timestamp is not after the spine row's and within the TTL of it.
pub fn point_in_time(
    view: &FeatureView,
    features: &FeatureRows,
    spine: &[RecordBatch],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let (entity, timestamp) = (view.entity_index(), view.timestamp_index());
    let entity_type = view.columns.columns[entity].column_type;
    // Feature rows per entity key, sorted by time; equal times keep output order.
    let columns: Vec<ArrayRef> = (0..view.columns.columns.len())
        .map(|c| {
            let parts: Vec<&dyn Array> = features.batches().iter().map(|b| b[c].as_ref()).collect();
            if parts.is_empty() {
                return Ok(datafusion::arrow::array::new_empty_array(
                    &view.columns.columns[c].column_type.arrow_type(),
                ));
            }
            Ok(concat(&parts)?)
        })
        .collect::<Result<_>>()?;
    let keys = ColumnValues::new(entity_type, &columns[entity])?;
    let stamps = columns[timestamp].as_primitive::<TimestampMicrosecondType>();
    let mut by_entity: HashMap<Vec<u8>, Vec<(i64, u32)>> = HashMap::new();
    for row in 0..stamps.len() {
        if keys.is_null(row) || stamps.is_null(row) {
            continue;
        }
        let key = encode_key(std::slice::from_ref(&keys), row)?;
        by_entity
            .entry(key)
            .or_default()
            .push((stamps.value(row), row as u32));
    }
    for rows in by_entity.values_mut() {
        rows.sort_by_key(|&(ts, _)| ts);
    }
    let mut out: Vec<Vec<ArrayRef>> = Vec::new();
    for batch in spine {
        let spine_keys = cast(batch.column(0), &entity_type.arrow_type()).map_err(|_| {
            Error::DatatypeMismatch(format!(
                "the spine's first column must be the entity key of feature view \"{}\" ({})",
                view.name,
                entity_type.sql_name()
            ))
        })?;
        let spine_times = cast(
            batch.column(1),
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )
        .map_err(|_| {
            Error::DatatypeMismatch("the spine's second column must be a timestamp".to_string())
        })?;
        let spine_key_values = ColumnValues::new(entity_type, &spine_keys)?;
        let spine_times = spine_times.as_primitive::<TimestampMicrosecondType>();
        let mut picks = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            if spine_key_values.is_null(row) || spine_times.is_null(row) {
                picks.push(None);
                continue;
            }
            let at = spine_times.value(row);
            let key = encode_key(std::slice::from_ref(&spine_key_values), row)?;
            let pick = by_entity.get(&key).and_then(|rows| {
                let newer = rows.partition_point(|&(ts, _)| ts <= at);
                let (ts, feature_row) = *rows.get(newer.checked_sub(1)?)?;
                view.is_fresh(ts, at).then_some(feature_row)
            });
            picks.push(pick);
        }
        let picks = UInt32Array::from(picks);
        let mut columns_out: Vec<ArrayRef> = batch.columns().to_vec();
        columns_out.push(take(&columns[timestamp], &picks, None)?);
        for (c, column) in columns.iter().enumerate() {
            if c != entity && c != timestamp {
                columns_out.push(take(column, &picks, None)?);
            }
        }
        out.push(columns_out);
    }
    let batches = out
        .into_iter()
        .map(|columns| RecordBatch::try_new(schema.clone(), columns))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(datafusion::arrow::compute::concat_batches(
        schema, &batches,
    )?)
}
