//! `CREATE INDEX name ON table USING hnsw (column) WITH (metric = …, m = …, ef_construction = …)`
//! and `DROP INDEX`: the vector indexes of `ann::column_index`. Other index kinds are refused.

use crate::ann::column_index::{IndexDef, column_index};
use crate::ann::metric::Metric;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::sql::model_parser::literal_text;
use crate::sql::names;
use crate::sql::notices::{Notice, Notices};
use datafusion::sql::sqlparser::ast::{BinaryOperator, CreateIndex, Expr, IndexType, ObjectName};

/// HNSW's M when the statement does not give one (pgvector's default).
const DEFAULT_M: usize = 16;
/// Candidates while linking, when not given (hnswlib's default).
const DEFAULT_EF_CONSTRUCTION: usize = 200;

impl Engine {
    /// Runs `CREATE INDEX … USING hnsw`: builds the graph over the rows the table has now.
    pub(crate) async fn create_index(&self, create: CreateIndex, notices: &Notices) -> Result<()> {
        let if_not_exists = create.if_not_exists;
        let engine = self.clone();
        let (def, created) = tokio::task::spawn_blocking(move || {
            let table_name = names::table_name(&create.table_name)?;
            let table = engine
                .catalog()
                .get(&table_name)
                .ok_or_else(|| Error::UndefinedTable(table_name.clone()))?;
            let def = index_def(&create, &table_name, table.def.id)?;
            column_index(&table.def, &def.column)?;
            let created = engine
                .indexes()
                .create(def.clone(), &table, if_not_exists)?;
            Ok::<_, Error>((def, created))
        })
        .await
        .map_err(|e| Error::Internal(format!("index build stopped: {e}")))??;
        if !created {
            notices.send(Notice::info(format!(
                "relation \"{}\" already exists, skipping",
                def.name
            )));
        }
        Ok(())
    }

    /// Runs `DROP INDEX [IF EXISTS] name, …`.
    pub(crate) fn drop_indexes(
        &self,
        index_names: &[ObjectName],
        if_exists: bool,
        notices: &Notices,
    ) -> Result<()> {
        for object_name in index_names {
            let name = names::table_name(object_name)?;
            if !self.indexes().drop_index(&name, if_exists)? {
                notices.send(Notice::info(format!(
                    "index \"{name}\" does not exist, skipping"
                )));
            }
        }
        Ok(())
    }
}

/// The definition a `CREATE INDEX` statement asks for.
fn index_def(create: &CreateIndex, table: &str, table_id: u64) -> Result<IndexDef> {
    let unsupported = |what: &str| {
        Err(Error::FeatureNotSupported(format!(
            "{what}: TasteDB has hnsw indexes on vector columns only \
             (CREATE INDEX name ON table USING hnsw (column))"
        )))
    };
    match &create.using {
        Some(IndexType::Custom(kind)) if kind.value.eq_ignore_ascii_case("hnsw") => {}
        Some(other) => return unsupported(&format!("index type {other}")),
        None => return unsupported("an index without USING hnsw"),
    }
    if create.unique || create.predicate.is_some() || !create.include.is_empty() {
        return unsupported("UNIQUE, INCLUDE or WHERE");
    }
    let [column] = create.columns.as_slice() else {
        return unsupported("an index over several columns");
    };
    let Expr::Identifier(ident) = &column.column.expr else {
        return unsupported(&format!("an index over {}", column.column.expr));
    };
    let column_name = names::ident(ident);
    let mut metric = match &column.operator_class {
        Some(class) => Some(operator_class_metric(&class.to_string())?),
        None => None,
    };
    let (mut m, mut ef_construction) = (DEFAULT_M, DEFAULT_EF_CONSTRUCTION);
    for option in &create.with {
        let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = option
        else {
            return Err(Error::Syntax(format!(
                "expected option = value in WITH, found {option}"
            )));
        };
        let key = literal_text(left)?.to_lowercase();
        let value = literal_text(right)?;
        match key.as_str() {
            "metric" => metric = Some(Metric::parse(&value)?),
            "m" => m = whole_number("m", &value, 2, 100)?,
            "ef_construction" => {
                ef_construction = whole_number("ef_construction", &value, 4, 1000)?
            }
            other => {
                return Err(Error::InvalidParameter(format!(
                    "unknown index option \"{other}\"; use metric, m or ef_construction"
                )));
            }
        }
    }
    if ef_construction < m {
        return Err(Error::InvalidParameter(format!(
            "ef_construction ({ef_construction}) must be at least m ({m})"
        )));
    }
    let name = match &create.name {
        Some(name) => names::table_name(name)?,
        None => format!("{table}_{column_name}_idx"),
    };
    Ok(IndexDef {
        name,
        table: table.to_string(),
        table_id,
        column: column_name,
        metric: metric.unwrap_or(Metric::L2),
        m,
        ef_construction,
    })
}

/// pgvector's operator classes, for statements written for it.
fn operator_class_metric(class: &str) -> Result<Metric> {
    match class.to_ascii_lowercase().as_str() {
        "vector_l2_ops" => Ok(Metric::L2),
        "vector_cosine_ops" => Ok(Metric::Cosine),
        "vector_ip_ops" => Ok(Metric::Dot),
        other => Err(Error::InvalidParameter(format!(
            "unknown operator class \"{other}\"; use WITH (metric = 'cosine' | 'l2' | 'dot')"
        ))),
    }
}

fn whole_number(name: &str, value: &str, low: usize, high: usize) -> Result<usize> {
    match value.parse::<usize>() {
        Ok(n) if (low..=high).contains(&n) => Ok(n),
        _ => Err(Error::InvalidParameter(format!(
            "{name} must be a whole number from {low} to {high}, not {value}"
        ))),
    }
}
