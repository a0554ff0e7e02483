//! `CREATE INDEX name ON table USING hnsw (column) WITH (metric = …, m = …, ef_construction = …)`
//! and `DROP INDEX`: the vector indexes of `column_index`. Other index kinds are refused.

use crate::ann::metric::Metric;
use crate::blocking;
use crate::engine::{Command, Context, Engine, Outcome};
use crate::error::{Error, Result};
use crate::roles::Object;
use crate::sql::names;
use crate::sql::notices::{Notice, Notices};
use crate::sql::words::literal_text;
use crate::vectors::column_index::{IndexDef, column_index};
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CreateIndex, Expr, IndexType, ObjectName, ObjectType, Statement as SqlStatement,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

/// HNSW's M when the statement does not give one (pgvector's default).
const DEFAULT_M: usize = 16;
/// Candidates while linking, when not given (hnswlib's default).
const DEFAULT_EF_CONSTRUCTION: usize = 200;

/// `CREATE INDEX` or `DROP INDEX`.
#[derive(Debug, Clone)]
pub enum IndexStatement {
    /// `CREATE INDEX [IF NOT EXISTS] [name] ON table USING hnsw (column) [WITH (…)]`.
    Create(Box<CreateIndex>),
    /// `DROP INDEX [IF EXISTS] name, …`.
    Drop {
        /// The indexes.
        names: Vec<ObjectName>,
        /// `IF EXISTS`.
        if_exists: bool,
    },
}

/// Parses `CREATE [UNIQUE] INDEX …` and `DROP INDEX …` at the parser's position; `None`
/// (nothing consumed) for any other statement.
pub fn index_statement(parser: &mut Parser) -> Result<Option<IndexStatement>> {
    let keyword = |i: usize| match parser.peek_nth_token_ref(i).token {
        Token::Word(ref w) => Some(w.keyword),
        _ => None,
    };
    let is_index = matches!(
        (keyword(0), keyword(1), keyword(2)),
        (Some(Keyword::CREATE), Some(Keyword::INDEX), _)
            | (
                Some(Keyword::CREATE),
                Some(Keyword::UNIQUE),
                Some(Keyword::INDEX)
            )
            | (Some(Keyword::DROP), Some(Keyword::INDEX), _)
    );
    if !is_index {
        return Ok(None);
    }
    match parser.parse_statement()? {
        SqlStatement::CreateIndex(create) => Ok(Some(IndexStatement::Create(Box::new(create)))),
        SqlStatement::Drop {
            object_type: ObjectType::Index,
            if_exists,
            names,
            ..
        } => Ok(Some(IndexStatement::Drop { names, if_exists })),
        other => Err(Error::Syntax(format!(
            "expected CREATE or DROP INDEX, found {other}"
        ))),
    }
}

#[async_trait]
impl Command for IndexStatement {
    fn rows_schema(&self) -> Option<SchemaRef> {
        None
    }

    async fn execute(&self, cx: &Context<'_>) -> Result<Outcome> {
        let (engine, notices) = (cx.engine, cx.notices);
        match self {
            IndexStatement::Create(create) => {
                let table = names::table_name(&create.table_name)?;
                if engine.catalog().get(&table).is_some() {
                    engine
                        .users()
                        .check_owner(cx.actor, &Object::table(table))?;
                }
                if is_hnsw(create) {
                    create_index(engine, create.as_ref().clone(), notices).await?;
                } else {
                    create_secondary_index(engine, create.as_ref().clone(), notices).await?;
                }
                Ok(Outcome::done("CREATE INDEX"))
            }
            IndexStatement::Drop { names, if_exists } => {
                for name in names {
                    let name = names::table_name(name)?;
                    let table = match engine.catalog().index_table(&name) {
                        Some(table) => Some(table.def.name.clone()),
                        None => engine.indexes().get(&name).map(|def| def.table),
                    };
                    if let Some(table) = table {
                        engine
                            .users()
                            .check_owner(cx.actor, &Object::table(table))?;
                    }
                }
                drop_indexes(engine, names, *if_exists, notices)?;
                Ok(Outcome::done("DROP INDEX"))
            }
        }
    }
}

/// Runs `CREATE INDEX … USING hnsw`: builds the graph over the rows the table has now.
async fn create_index(engine: &Engine, create: CreateIndex, notices: &Notices) -> Result<()> {
    let if_not_exists = create.if_not_exists;
    let engine = engine.clone();
    let (def, created) = blocking::run("the index build", move |stopped| {
        let table_name = names::table_name(&create.table_name)?;
        let table = engine
            .catalog()
            .get(&table_name)
            .ok_or_else(|| Error::UndefinedTable(table_name.clone()))?;
        let def = index_def(&create, &table_name, table.def.id)?;
        column_index(&table.def, &def.column)?;
        let created = engine
            .indexes()
            .create(def.clone(), &table, if_not_exists, stopped)?;
        Ok::<_, Error>((def, created))
    })
    .await?;
    if !created {
        notices.send(Notice::info(format!(
            "relation \"{}\" already exists, skipping",
            def.name
        )));
    }
    Ok(())
}

/// Whether `create` asks for an HNSW index (else a secondary btree index of the catalog).
fn is_hnsw(create: &CreateIndex) -> bool {
    matches!(&create.using, Some(IndexType::Custom(kind)) if kind.value.eq_ignore_ascii_case("hnsw"))
}

/// Runs `CREATE [UNIQUE] INDEX [IF NOT EXISTS] [name] ON table [USING btree] (column, …)`:
/// the entries of the rows stored now are written with the definition (`catalog::secondary`).
async fn create_secondary_index(
    engine: &Engine,
    create: CreateIndex,
    notices: &Notices,
) -> Result<()> {
    match &create.using {
        None | Some(IndexType::BTree) => {}
        Some(other) => {
            return Err(Error::FeatureNotSupported(format!(
                "index type {other}: TasteDB has btree indexes, and hnsw on vector columns"
            )));
        }
    }
    if create.predicate.is_some() || !create.include.is_empty() || !create.with.is_empty() {
        return Err(Error::FeatureNotSupported(
            "partial indexes, INCLUDE and WITH options are not supported for btree indexes".into(),
        ));
    }
    let table = names::table_name(&create.table_name)?;
    let mut columns = Vec::new();
    for column in &create.columns {
        let Expr::Identifier(ident) = &column.column.expr else {
            return Err(Error::FeatureNotSupported(format!(
                "an index over {} (index columns, not expressions)",
                column.column.expr
            )));
        };
        columns.push(names::ident(ident));
    }
    let name = match &create.name {
        Some(name) => names::table_name(name)?,
        None => format!("{table}_{}_idx", columns.join("_")),
    };
    if engine.indexes().get(&name).is_some() {
        return Err(Error::DuplicateTable(name));
    }
    let engine = engine.clone();
    let (unique, if_not_exists) = (create.unique, create.if_not_exists);
    let index = name.clone();
    let created = blocking::run("the index build", move |stopped| {
        stopped.check()?;
        engine
            .catalog()
            .create_index(&table, &index, &columns, unique, if_not_exists)
    })
    .await?;
    if !created {
        notices.send(Notice::info(format!(
            "relation \"{name}\" already exists, skipping"
        )));
    }
    Ok(())
}

/// Runs `DROP INDEX [IF EXISTS] name, …`.
fn drop_indexes(
    engine: &Engine,
    index_names: &[ObjectName],
    if_exists: bool,
    notices: &Notices,
) -> Result<()> {
    for object_name in index_names {
        let name = names::table_name(object_name)?;
        if engine.catalog().drop_index(&name)? {
            continue;
        }
        if !engine.indexes().drop_index(&name, if_exists)? {
            notices.send(Notice::info(format!(
                "index \"{name}\" does not exist, skipping"
            )));
        }
    }
    Ok(())
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
