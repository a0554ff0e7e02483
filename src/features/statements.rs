//! Running the feature-store statements, and taking the spine queries of
//! `historical_features` out of a statement before DataFusion plans it.

use crate::engine::{Command, Context, Engine, Outcome};
use crate::error::{Error, Result};
use crate::features::parser::{CreateFeatureView, FeatureStatement};
use crate::features::system_tables::{feature_views_batch, feature_views_schema};
use crate::features::{
    FeatureRows, FeatureView, MaterializeMode, Materialized, SourceMark, latest_rows, now_micros,
    parse_ttl, write_latest,
};
use crate::roles::{Actor, Object, Users};
use crate::schema::{ColumnDef, ColumnType, TableDef, TableLayout};
use crate::sql::notices::Notice;
use crate::sql::parser::parse_query;
use crate::storage::{ColumnValues, StoredTable, WriteSet, encode_key, keys, reader};
use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{LogicalPlan, lit};
use datafusion::prelude::ident;
use futures::TryStreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

#[async_trait]
impl Command for FeatureStatement {
    fn rows_schema(&self) -> Option<SchemaRef> {
        match self {
            FeatureStatement::Show => Some(feature_views_schema()),
            FeatureStatement::Materialize { .. } => Some(materialize_schema()),
            FeatureStatement::Create(_) | FeatureStatement::Drop { .. } => None,
        }
    }

    fn read_only(&self) -> bool {
        matches!(self, FeatureStatement::Show)
    }

    async fn execute(&self, cx: &Context<'_>) -> Result<Outcome> {
        let (engine, notices) = (cx.engine, cx.notices);
        let views = engine.features();
        let users = engine.users();
        match self {
            FeatureStatement::Create(create) => {
                let view = define_feature_view(engine, create.clone(), cx.actor).await?;
                if views.create(view, create.if_not_exists)? {
                    let object = Object::feature_view(&create.name);
                    users.grants().created(object, Users::owner_for(cx.actor))?;
                } else {
                    notices.send(Notice::with_code(
                        "42710",
                        format!("feature view \"{}\" already exists, skipping", create.name),
                    ));
                }
                Ok(Outcome::done("CREATE FEATURE VIEW"))
            }
            FeatureStatement::Drop { name, if_exists } => {
                let object = Object::feature_view(name);
                if views.get(name).is_ok() {
                    users.check_owner(cx.actor, &object)?;
                }
                let dropped = views.drop_view(name, *if_exists)?;
                users.grants().dropped(&object)?;
                if !dropped {
                    notices.send(Notice::info(format!(
                        "feature view \"{name}\" does not exist, skipping"
                    )));
                }
                Ok(Outcome::done("DROP FEATURE VIEW"))
            }
            FeatureStatement::Show => Outcome::batch(feature_views_batch(&views.list())?),
            FeatureStatement::Materialize { name } => {
                views.get(name)?;
                users.check_owner(cx.actor, &Object::feature_view(name))?;
                materialize(engine, name, cx.actor).await
            }
        }
    }
}

/// Checks a CREATE FEATURE VIEW against its definition's planned columns.
async fn define_feature_view(
    engine: &Engine,
    create: CreateFeatureView,
    actor: &Actor,
) -> Result<FeatureView> {
    let ttl_micros = create.ttl.as_deref().map(parse_ttl).transpose()?;
    let definition = create.query.to_string();
    let plan = engine.plan_query(create.query, actor).await?;
    let mut columns = Vec::new();
    for field in plan.schema().fields() {
        if columns.iter().any(|c: &ColumnDef| &c.name == field.name()) {
            return Err(Error::DuplicateColumn(field.name().clone()));
        }
        let column_type = ColumnType::from_arrow(field.data_type()).map_err(|_| {
            Error::FeatureNotSupported(format!(
                "column \"{}\" of feature view \"{}\" has type {}, which the online store \
                     cannot hold",
                field.name(),
                create.name,
                field.data_type()
            ))
        })?;
        columns.push(ColumnDef {
            name: field.name().clone(),
            column_type,
            nullable: true,
            default: None,
        });
    }
    let position = |name: &str, role: &str| {
        columns.iter().position(|c| c.name == name).ok_or_else(|| {
            Error::UndefinedColumn(format!(
                "{name}\" ({role} of feature view \"{}\") is not a column of its \
                     definition, which returns ({}); \"",
                create.name,
                columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    };
    let entity = position(&create.entity, "ENTITY")?;
    let timestamp = position(&create.timestamp, "TIMESTAMP")?;
    if columns[timestamp].column_type != ColumnType::Timestamp {
        return Err(Error::DatatypeMismatch(format!(
            "TIMESTAMP column \"{}\" of feature view \"{}\" is {}, not a timestamp; cast it \
                 in the definition",
            create.timestamp,
            create.name,
            columns[timestamp].column_type.sql_name()
        )));
    }
    if entity == timestamp {
        return Err(Error::InvalidParameter(
            "the ENTITY and TIMESTAMP columns must differ".into(),
        ));
    }
    Ok(FeatureView {
        columns: TableDef {
            id: 0,
            name: create.name.clone(),
            columns,
            primary_key: vec![entity],
            indexes: Vec::new(),
            retention: None,
            layout: TableLayout::Rows,
        },
        name: create.name,
        entity: create.entity,
        timestamp: create.timestamp,
        ttl: create.ttl,
        ttl_micros,
        definition,
        created_micros: now_micros(),
        materialized: None,
    })
}

/// MATERIALIZE FEATURE VIEW: incrementally when the definition reads one stored table
/// without primary key that has the entity column and an earlier run left a mark in it,
/// otherwise in full.
async fn materialize(engine: &Engine, name: &str, actor: &Actor) -> Result<Outcome> {
    let started = Instant::now();
    let _one_at_a_time = engine.features().materializing().lock().await;
    let view = engine.features().get(name)?;
    let definition = parse_query(&view.definition)?;
    let plan = engine.plan_query(definition, actor).await?;
    let returned: Vec<&String> = plan.schema().fields().iter().map(|f| f.name()).collect();
    let declared: Vec<&String> = view.columns.columns.iter().map(|c| &c.name).collect();
    if returned != declared {
        return Err(Error::DatatypeMismatch(format!(
            "the definition of feature view \"{name}\" now returns ({}), not the columns it \
                 was created with ({}); drop and create the view again",
            returned
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            declared
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let source = single_source(engine, &plan, &view);
    let mark = source.as_ref().map(|table| SourceMark {
        table: table.def.name.clone(),
        table_id: table.def.id,
        written_row_ids: table.written_row_ids(),
    });
    let previous = view
        .materialized
        .as_ref()
        .and_then(|m| m.source.clone())
        .filter(|old| {
            mark.as_ref()
                .is_some_and(|new| new.table_id == old.table_id)
        });
    let now = now_micros();
    let mut write = WriteSet::default();
    let (mode, entities, rows) = match (&source, previous) {
        (Some(table), Some(previous)) => {
            let Some(mark) = &mark else {
                return Err(Error::Internal("source without mark".into()));
            };
            let touched = touched_entities(
                engine,
                table,
                &view,
                previous.written_row_ids,
                mark.written_row_ids,
            )?;
            let before = view.materialized.as_ref().map_or(0, |m| m.rows);
            let rows = if touched.is_empty() {
                before
            } else {
                let filter =
                    ident(&view.entity).in_list(touched.iter().cloned().map(lit).collect(), false);
                let frame = engine.session_context().execute_logical_plan(plan).await?;
                let batches = frame.filter(filter)?.collect().await?;
                let feature_rows = FeatureRows::new(&view.columns, &batches)?;
                let latest = latest_rows(&view, &feature_rows)?;
                let touched_keys = entity_keys(&view, &touched)?;
                let existed = online_keys_present(engine, &view, &touched_keys)?;
                for key in &touched_keys {
                    if !latest.contains_key(key) {
                        write.delete(keys::online_row(&view.name, key));
                    }
                }
                let stored = write_latest(&view, &feature_rows, &latest, now, &mut write)?;
                before.saturating_sub(existed) + stored
            };
            (MaterializeMode::Incremental, touched.len() as u64, rows)
        }
        _ => {
            // through the engine, so that a definition over archives runs on the cluster
            let batches: Vec<RecordBatch> = engine.execute_plan(plan).await?.try_collect().await?;
            let feature_rows = FeatureRows::new(&view.columns, &batches)?;
            let latest = latest_rows(&view, &feature_rows)?;
            let (start, end) = keys::online_range(&view.name);
            write.delete_range(start, end);
            let stored = write_latest(&view, &feature_rows, &latest, now, &mut write)?;
            (MaterializeMode::Full, latest.len() as u64, stored)
        }
    };
    let mut updated = view;
    updated.materialized = Some(Materialized {
        at_micros: now,
        mode,
        rows,
        source: mark,
    });
    engine.features().commit(updated, write)?;
    Outcome::batch(materialize_batch(
        name,
        mode,
        entities,
        rows,
        started.elapsed().as_secs_f64(),
    )?)
}

/// The one stored table without primary key that `plan` reads, if it has the view's
/// entity column.
fn single_source(
    engine: &Engine,
    plan: &LogicalPlan,
    view: &FeatureView,
) -> Option<Arc<StoredTable>> {
    let mut tables = HashSet::new();
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            tables.insert(scan.table_name.table().to_string());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    let tables: Vec<String> = tables.into_iter().collect();
    let [name] = tables.as_slice() else {
        return None;
    };
    let table = engine.catalog().get(name)?;
    let has_entity = table.def.columns.iter().any(|c| c.name == view.entity);
    (has_entity && !table.def.has_primary_key()).then_some(table)
}

/// The distinct entity values of the rows of `table` with row ids in `[from, to)`.
fn touched_entities(
    engine: &Engine,
    table: &StoredTable,
    view: &FeatureView,
    from: u64,
    to: u64,
) -> Result<Vec<ScalarValue>> {
    let Some(column) = table.def.columns.iter().position(|c| c.name == view.entity) else {
        return Ok(Vec::new());
    };
    let mut seen = HashSet::new();
    let mut touched = Vec::new();
    let store = engine.catalog().store();
    reader::scan_row_ids(store, &table.def, from..to, &[column], |_, batch| {
        let values = batch.column(0);
        for row in 0..values.len() {
            let value = ScalarValue::try_from_array(values, row)?;
            if !value.is_null() && seen.insert(value.clone()) {
                touched.push(value);
            }
        }
        Ok(())
    })?;
    Ok(touched)
}

/// How many of `entity_keys` have an online row of `view` now.
fn online_keys_present(
    engine: &Engine,
    view: &FeatureView,
    entity_keys: &[Vec<u8>],
) -> Result<u64> {
    let full = entity_keys.iter().map(|k| keys::online_row(&view.name, k));
    let found = engine.features().store().multi_get(full)?;
    Ok(found.iter().filter(|value| value.is_some()).count() as u64)
}

/// The `key_codec` bytes of entity values of `view`.
fn entity_keys(view: &FeatureView, values: &[ScalarValue]) -> Result<Vec<Vec<u8>>> {
    let column_type = view.columns.columns[view.entity_index()].column_type;
    let values = values
        .iter()
        .map(|v| v.cast_to(&column_type.arrow_type()))
        .collect::<Result<Vec<_>, _>>()?;
    let array: ArrayRef = ScalarValue::iter_to_array(values)?;
    let keys = ColumnValues::new(column_type, &array)?;
    (0..array.len())
        .map(|row| encode_key(std::slice::from_ref(&keys), row))
        .collect()
}

/// The columns MATERIALIZE returns.
pub fn materialize_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("feature_view", DataType::Utf8, false),
        Field::new("mode", DataType::Utf8, false),
        Field::new("entities", DataType::Int64, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("seconds", DataType::Float64, false),
    ]))
}

fn materialize_batch(
    name: &str,
    mode: MaterializeMode,
    entities: u64,
    rows: u64,
    seconds: f64,
) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![name])),
        Arc::new(StringArray::from(vec![mode.name()])),
        Arc::new(Int64Array::from(vec![entities as i64])),
        Arc::new(Int64Array::from(vec![rows as i64])),
        Arc::new(Float64Array::from(vec![seconds])),
    ];
    Ok(RecordBatch::try_new(materialize_schema(), columns)?)
}
