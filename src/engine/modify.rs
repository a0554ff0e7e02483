//! UPDATE, DELETE and TRUNCATE of stored tables. UPDATE and DELETE run as a query over
//! `tastedb_row_keys(table)` that finds their rows (each row's key and, for UPDATE, its new
//! values; RETURNING's values after them), then as writes in the statement's transaction: the
//! connection's block, or one of their own that commits at the end (retried when a concurrent
//! commit wrote the same rows, as PostgreSQL re-reads a row that changed under an UPDATE).

use crate::catalog::{ROW_KEY_COLUMN, ROW_KEYS_FUNCTION};
use crate::engine::transaction::{current, within};
use crate::engine::{CommandTag, Engine, Outcome};
use crate::error::{Error, Result};
use crate::roles::{Actor, Object, Privilege};
use crate::schema::{ColumnType, TableDef};
use crate::sql::defaults::fill_defaults;
use crate::sql::insert_values::{target_columns, vector_text_literals};
use crate::sql::names;
use crate::sql::parser::parse_query;
use crate::storage::{StoredTable, Transaction, modify, writer};
use datafusion::arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, Delete, Expr as SqlExpr, FromTable, Insert, Query, SelectItem,
    Statement as SqlStatement, TableFactor, TableObject, TableWithJoins, Truncate, Update,
    UpdateTableFromKind,
};
use futures::TryStreamExt;
use std::collections::HashSet;
use std::sync::Arc;

/// Times a statement that commits on its own is run again after a 40001.
const RETRIES: usize = 20;

/// What a modification does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Update,
    Delete,
    Insert,
}

/// An UPDATE, a DELETE or an INSERT … RETURNING as the query that finds (or makes) its rows.
#[derive(Debug, Clone)]
pub struct Modification {
    kind: Kind,
    table: String,
    /// Columns `ctid` (UPDATE and DELETE), then (UPDATE, INSERT) the new value of every table
    /// column, then RETURNING's.
    query: Box<Query>,
    /// RETURNING's column names, when it has RETURNING.
    returning: Option<Vec<String>>,
    /// The first of RETURNING's columns in the query's rows.
    returned_from: usize,
    /// Whether other tables are read to find the rows (UPDATE … FROM, DELETE … USING).
    joins_others: bool,
}

impl Modification {
    /// The query finding the rows of `update`.
    pub fn update(update: &Update, def: &TableDef) -> Result<Modification> {
        def.refuse_on_blocks("UPDATE")?;
        let alias = target_alias(&update.table)?;
        let mut values: Vec<Option<String>> = vec![None; def.columns.len()];
        for assignment in &update.assignments {
            let AssignmentTarget::ColumnName(name) = &assignment.target else {
                return Err(Error::FeatureNotSupported(
                    "UPDATE … SET (a, b) = … is not supported; assign each column".into(),
                ));
            };
            let column = name
                .0
                .last()
                .and_then(|part| part.as_ident())
                .map(names::ident)
                .unwrap_or_default();
            let index = def
                .columns
                .iter()
                .position(|c| c.name == column)
                .ok_or_else(|| Error::UndefinedColumn(column.clone()))?;
            if values[index].is_some() {
                return Err(Error::Syntax(format!(
                    "multiple assignments to same column \"{column}\""
                )));
            }
            values[index] = Some(match def.columns[index].column_type {
                ColumnType::Vector(_) => format!("({})", assignment.value),
                other => format!("CAST(({}) AS {})", assignment.value, other.sql_name()),
            });
        }
        let columns: Vec<String> = def
            .columns
            .iter()
            .zip(values)
            .map(|(column, value)| {
                let name = quote(&column.name);
                let value = value.unwrap_or_else(|| format!("{alias}.{name}"));
                format!("{value} AS {name}")
            })
            .collect();
        let from = match &update.from {
            Some(UpdateTableFromKind::BeforeSet(tables))
            | Some(UpdateTableFromKind::AfterSet(tables)) => joined(tables),
            None => String::new(),
        };
        let mut sql = format!(
            "SELECT {alias}.{ROW_KEY_COLUMN} AS {ROW_KEY_COLUMN}, {} FROM {}{from}{}",
            columns.join(", "),
            row_keys_of(def, &alias),
            filter(&update.selection),
        );
        let mut returned = Vec::new();
        if let Some(items) = &update.returning {
            let (exprs, names) = returning(items, def, &alias);
            sql = format!("SELECT *, {exprs} FROM ({sql}) AS {alias}");
            returned = names;
        }
        Ok(Modification {
            kind: Kind::Update,
            table: def.name.clone(),
            query: parse_query(&sql)?,
            returning: update.returning.is_some().then_some(returned),
            returned_from: 1 + def.columns.len(),
            joins_others: update.from.is_some(),
        })
    }

    /// The query finding the rows of `delete`.
    pub fn delete(delete: &Delete, def: &TableDef) -> Result<Modification> {
        def.refuse_on_blocks("DELETE")?;
        let target = match &delete.from {
            FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables) => {
                single_table(tables)?
            }
        };
        let alias = target_alias(target)?;
        let using = delete.using.as_deref().map(joined).unwrap_or_default();
        let (returning, returned) = match &delete.returning {
            Some(items) => {
                let (exprs, names) = returning(items, def, &alias);
                (format!(", {exprs}"), Some(names))
            }
            None => (String::new(), None),
        };
        let sql = format!(
            "SELECT {alias}.{ROW_KEY_COLUMN} AS {ROW_KEY_COLUMN}{returning} FROM {}{using}{}",
            row_keys_of(def, &alias),
            filter(&delete.selection),
        );
        Ok(Modification {
            kind: Kind::Delete,
            table: def.name.clone(),
            query: parse_query(&sql)?,
            returning: returned,
            returned_from: 1,
            joins_others: delete.using.is_some(),
        })
    }

    /// The query making the rows of `insert` (which has RETURNING): its values for every
    /// column of the table, defaults filled in, then RETURNING's values computed from them, so
    /// that each row is made once (a `nextval` default is called once per row).
    pub fn insert(insert: &Insert, def: &TableDef) -> Result<Modification> {
        if insert.on.is_some() {
            return Err(Error::FeatureNotSupported(
                "INSERT … ON CONFLICT is not supported".into(),
            ));
        }
        let mut insert = insert.clone();
        fill_defaults(&mut insert, def)?;
        vector_text_literals(&mut insert, def)?;
        let targets: Vec<usize> = target_columns(&insert, def)
            .into_iter()
            .map(|target| target.map_err(Error::UndefinedColumn))
            .collect::<Result<_>>()?;
        let source = insert
            .source
            .as_ref()
            .ok_or_else(|| Error::FeatureNotSupported("INSERT … DEFAULT VALUES".into()))?;
        let inputs: Vec<String> = (0..targets.len())
            .map(|i| format!("\"{RETURNED_PREFIX}in_{i}\""))
            .collect();
        let columns: Vec<String> = (def.columns.iter().enumerate())
            .map(|(index, column)| {
                let value = match targets.iter().position(|&t| t == index) {
                    Some(i) => format!("{SOURCE}.{}", inputs[i]),
                    None => "NULL".into(),
                };
                let value = match column.column_type {
                    ColumnType::Vector(_) => value,
                    other => format!("CAST({value} AS {})", other.sql_name()),
                };
                format!("{value} AS {}", quote(&column.name))
            })
            .collect();
        let alias = match &insert.table_alias {
            Some(alias) => names::ident(&alias.alias),
            None => def.name.clone(),
        };
        let items = insert.returning.as_deref().unwrap_or_default();
        let (exprs, returned) = returning(items, def, &quote(&alias));
        let sql = format!(
            "SELECT *, {exprs} FROM (SELECT {} FROM ({source}) AS {SOURCE}({})) AS {}",
            columns.join(", "),
            inputs.join(", "),
            quote(&alias),
        );
        Ok(Modification {
            kind: Kind::Insert,
            table: def.name.clone(),
            query: parse_query(&sql)?,
            returning: Some(returned),
            returned_from: def.columns.len(),
            joins_others: false,
        })
    }

    /// The table it changes.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// True for an UPDATE or a DELETE without FROM or USING, whose rows its WHERE alone finds.
    pub fn finds_rows_by_filter_only(&self) -> bool {
        self.kind != Kind::Insert && !self.joins_others
    }

    /// True when it has RETURNING.
    pub fn has_returning(&self) -> bool {
        self.returning.is_some()
    }

    /// The query that finds the rows.
    pub fn query(&self) -> &Query {
        &self.query
    }

    /// The privilege it needs on its table.
    pub fn privilege(&self) -> Privilege {
        match self.kind {
            Kind::Update => Privilege::Update,
            Kind::Delete => Privilege::Delete,
            Kind::Insert => Privilege::Insert,
        }
    }

    /// The schema of RETURNING's rows, given the plan of the query; `None` without RETURNING.
    pub fn returning_schema(&self, plan: &LogicalPlan) -> Option<SchemaRef> {
        let names = self.returning.as_ref()?;
        let schema = plan.schema().as_arrow();
        let fields = (schema.fields().iter().skip(self.returned_from))
            .zip(names)
            .map(|(field, name)| field.as_ref().clone().with_name(name))
            .collect::<Vec<_>>();
        Some(Arc::new(Schema::new(fields)))
    }
}

/// The name of the table an UPDATE or DELETE changes.
pub fn target_table(table: &TableWithJoins) -> Result<String> {
    match &table.relation {
        TableFactor::Table { name, .. } => names::table_name(name),
        other => Err(Error::FeatureNotSupported(format!(
            "cannot change rows of {other}"
        ))),
    }
}

/// The one table of a DELETE's FROM.
pub fn single_table(tables: &[TableWithJoins]) -> Result<&TableWithJoins> {
    match tables {
        [table] if table.joins.is_empty() => Ok(table),
        _ => Err(Error::FeatureNotSupported(
            "DELETE removes rows of one table; name others in USING".into(),
        )),
    }
}

fn target_alias(table: &TableWithJoins) -> Result<String> {
    if !table.joins.is_empty() {
        return Err(Error::FeatureNotSupported(
            "UPDATE changes rows of one table; name others in FROM".into(),
        ));
    }
    match &table.relation {
        TableFactor::Table {
            alias: Some(alias), ..
        } => Ok(alias.name.to_string()),
        TableFactor::Table { .. } => Ok(quote(&target_table(table)?)),
        other => Err(Error::FeatureNotSupported(format!(
            "cannot change rows of {other}"
        ))),
    }
}

fn row_keys_of(def: &TableDef, alias: &str) -> String {
    format!(
        "{ROW_KEYS_FUNCTION}('{}') AS {alias}",
        def.name.replace('\'', "''")
    )
}

fn joined(tables: &[TableWithJoins]) -> String {
    tables.iter().map(|t| format!(", {t}")).collect()
}

fn filter(selection: &Option<datafusion::sql::sqlparser::ast::Expr>) -> String {
    selection
        .as_ref()
        .map(|e| format!(" WHERE {e}"))
        .unwrap_or_default()
}

/// RETURNING's items, `*` standing for the table's columns: each aliased apart (a query's
/// columns need distinct names, and UPDATE's rows already have the table's), and the names
/// PostgreSQL gives them.
fn returning(items: &[SelectItem], def: &TableDef, alias: &str) -> (String, Vec<String>) {
    let mut exprs = Vec::new();
    let mut names = Vec::new();
    for item in items {
        match item {
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                for column in &def.columns {
                    exprs.push(format!("{alias}.{}", quote(&column.name)));
                    names.push(column.name.clone());
                }
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                exprs.push(expr.to_string());
                names.push(names::ident(alias));
            }
            SelectItem::UnnamedExpr(expr) => {
                exprs.push(expr.to_string());
                names.push(output_name(expr));
            }
            other => {
                exprs.push(other.to_string());
                names.push("?column?".into());
            }
        }
    }
    let aliased: Vec<String> = (exprs.iter().enumerate())
        .map(|(i, expr)| format!("{expr} AS \"{RETURNED_PREFIX}{i}\""))
        .collect();
    (aliased.join(", "), names)
}

/// The name PostgreSQL gives a column computed by `expr`.
fn output_name(expr: &SqlExpr) -> String {
    match expr {
        SqlExpr::Identifier(ident) => names::ident(ident),
        SqlExpr::CompoundIdentifier(parts) => parts.last().map(names::ident).unwrap_or_default(),
        SqlExpr::Function(function) => (function.name.0.last())
            .and_then(|part| part.as_ident())
            .map(names::ident)
            .unwrap_or_default(),
        SqlExpr::Cast { expr, .. } | SqlExpr::Nested(expr) => output_name(expr),
        _ => "?column?".into(),
    }
}

/// Prefix of the names RETURNING's values (and INSERT's inputs) have in the query.
const RETURNED_PREFIX: &str = "tastedb_returned_";
/// The alias of an INSERT's source in its query.
const SOURCE: &str = "tastedb_source";

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Engine {
    /// The modification `statement` makes, when it is an UPDATE, a DELETE or an INSERT …
    /// RETURNING (of a stored table: other relations cannot be changed, 55000).
    pub(super) fn modification_of(&self, statement: &SqlStatement) -> Result<Option<Modification>> {
        if let SqlStatement::Insert(insert) = statement
            && insert.returning.is_some()
        {
            let TableObject::TableName(name) = &insert.table else {
                return Err(Error::FeatureNotSupported(format!(
                    "INSERT INTO {} … RETURNING",
                    insert.table
                )));
            };
            let table = self.changed_table(&names::table_name(name)?)?;
            return Modification::insert(insert, &table.def).map(Some);
        }
        let target = match statement {
            SqlStatement::Update(update) => &update.table,
            SqlStatement::Delete(delete) => match &delete.from {
                FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables) => {
                    single_table(tables)?
                }
            },
            _ => return Ok(None),
        };
        let table = self.changed_table(&target_table(target)?)?;
        match statement {
            SqlStatement::Update(update) => Modification::update(update, &table.def).map(Some),
            SqlStatement::Delete(delete) => Modification::delete(delete, &table.def).map(Some),
            _ => Ok(None),
        }
    }

    /// The stored table `name`, which a statement changes.
    fn changed_table(&self, name: &str) -> Result<Arc<StoredTable>> {
        self.catalog()
            .get(name)
            .ok_or_else(|| match self.is_user_table(name) {
                true => Error::ObjectNotInPrerequisiteState(format!(
                    "cannot change rows of \"{name}\": only stored tables can be changed"
                )),
                false => Error::UndefinedTable(name.to_string()),
            })
    }

    /// Runs an UPDATE or DELETE found to need `modification` on behalf of `actor`.
    pub(super) async fn modify(
        &self,
        modification: Modification,
        actor: &Actor,
    ) -> Result<Outcome> {
        let (plan, _) = self.plan_modification(&modification, actor).await?;
        self.run_modification(&modification, plan).await
    }

    /// The plan of `modification`'s query, once `actor` may change its table.
    pub(super) async fn plan_modification(
        &self,
        modification: &Modification,
        actor: &Actor,
    ) -> Result<(LogicalPlan, crate::engine::Access)> {
        let table = Object::table(modification.table.clone());
        self.users()
            .check(actor, &table, modification.privilege())?;
        let query = Box::new(modification.query().clone());
        let (plan, mut access) = self
            .plan(crate::sql::parser::query_statement(query), actor)
            .await?;
        access.require(table, modification.privilege());
        Ok((plan, access))
    }

    /// Runs the (bound) plan of `modification` and writes what it found: in the current
    /// transaction, or in one of its own committed at the end.
    pub(super) async fn run_modification(
        &self,
        modification: &Modification,
        plan: LogicalPlan,
    ) -> Result<Outcome> {
        let table = self.stored_table(&modification.table)?;
        self.in_statement_transaction(|txn| {
            self.find_and_write(modification, &table, plan.clone(), txn)
        })
        .await
    }

    /// Runs `run` in the current transaction, or in one of its own committed at the end and
    /// run again (up to [`RETRIES`] times) when a concurrent commit wrote the same rows (found
    /// by a write or at the commit). Either way the rows it wrote are locked before it ends
    /// (waiting for transactions that hold them); under READ COMMITTED a statement whose rows
    /// changed meanwhile is undone and run again on a newer snapshot. The synced commit runs
    /// on a blocking thread, so the runtime thread goes on serving other statements meanwhile.
    pub(crate) async fn in_statement_transaction<F, Fut>(&self, run: F) -> Result<Outcome>
    where
        F: Fn(Arc<Transaction>) -> Fut,
        Fut: std::future::Future<Output = Result<Outcome>>,
    {
        if let Some(txn) = current() {
            return run_settled(&txn, &run).await;
        }
        let mut attempt = 0;
        loop {
            let txn = self.begin();
            let outcome = match within(txn.clone(), run_settled(&txn, &run)).await {
                Ok(outcome) => {
                    let committed = crate::blocking::run("the commit", move |_| txn.commit());
                    committed.await.map(|()| outcome)
                }
                Err(error) => Err(error),
            };
            match outcome {
                Err(Error::SerializationFailure(_)) if attempt < RETRIES => attempt += 1,
                outcome => return outcome,
            }
        }
    }

    async fn find_and_write(
        &self,
        modification: &Modification,
        table: &Arc<StoredTable>,
        plan: LogicalPlan,
        txn: Arc<Transaction>,
    ) -> Result<Outcome> {
        let schema = Arc::new(plan.schema().as_arrow().clone());
        let found: Vec<RecordBatch> = self.execute_plan(plan.clone()).await?.try_collect().await?;
        let found = datafusion::arrow::compute::concat_batches(&schema, &found)?;
        let returning = modification.returning_schema(&plan);
        self.write_found(modification, table, found, returning, &txn)
    }

    /// Writes the rows `found` by `modification`'s query (made, for an INSERT) in `txn`, and
    /// answers with their count or with RETURNING's rows (of schema `returning`).
    pub(crate) fn write_found(
        &self,
        modification: &Modification,
        table: &Arc<StoredTable>,
        found: RecordBatch,
        returning: Option<SchemaRef>,
        txn: &Arc<Transaction>,
    ) -> Result<Outcome> {
        let (count, found) = match modification.kind {
            Kind::Insert => {
                let new_rows = new_rows(&found, table, 0)?;
                let store = self.catalog().store();
                (writer::insert(store, table, &[new_rows], Some(txn))?, found)
            }
            Kind::Delete | Kind::Update => {
                let (row_keys, rows) = distinct_rows(&found)?;
                let found = take_record_batch(&found, &rows)?;
                let count = txn.atomically(|| match modification.kind {
                    Kind::Update => {
                        modify::update(txn, table, row_keys, &new_rows(&found, table, 1)?)
                    }
                    _ => modify::delete(txn, table, row_keys),
                })?;
                (count, found)
            }
        };
        let command = match modification.kind {
            Kind::Update => "UPDATE",
            Kind::Delete => "DELETE",
            // pgwire puts the count after it: `INSERT 0 n`
            Kind::Insert => "INSERT 0",
        };
        let Some(schema) = returning else {
            return Ok(Outcome::Done(CommandTag::counted(command, count)));
        };
        let returned = found.columns()[modification.returned_from..].to_vec();
        Ok(Outcome::Returned {
            command: command.into(),
            rows: RecordBatch::try_new(schema, returned)?,
        })
    }

    /// Runs `TRUNCATE`: every row of each table removed, in the current transaction or at once.
    pub(super) async fn truncate(&self, truncate: &Truncate, actor: &Actor) -> Result<Outcome> {
        let mut tables = Vec::new();
        for target in &truncate.table_names {
            let name = names::table_name(&target.name)?;
            self.users()
                .check(actor, &Object::table(name.clone()), Privilege::Truncate)?;
            tables.push(self.stored_table(&name)?);
        }
        let (txn, own) = match current() {
            Some(txn) => (txn, false),
            None => (self.begin(), true),
        };
        txn.atomically(|| {
            for table in &tables {
                modify::truncate(&txn, table)?;
            }
            Ok(())
        })?;
        if own {
            txn.commit()?;
        }
        Ok(Outcome::done("TRUNCATE TABLE"))
    }
}

/// Runs `run` in `txn` and locks the rows it wrote: a statement that READ COMMITTED must run
/// again (its rows changed after its snapshot) is undone and run again on a newer snapshot, up
/// to [`RETRIES`] times; a statement that fails leaves `txn` as it was before it.
async fn run_settled<F, Fut>(txn: &Arc<Transaction>, run: &F) -> Result<Outcome>
where
    F: Fn(Arc<Transaction>) -> Fut,
    Fut: std::future::Future<Output = Result<Outcome>>,
{
    for _ in 0..=RETRIES {
        txn.start_statement();
        let outcome = match run(txn.clone()).await {
            Ok(outcome) => txn.settle().await.map(|settled| settled.then_some(outcome)),
            Err(error) => Err(error),
        };
        match outcome {
            Ok(Some(outcome)) => {
                txn.end_statement();
                return Ok(outcome);
            }
            Ok(None) => {
                txn.undo_statement();
                txn.refresh();
            }
            Err(error) => {
                txn.undo_statement();
                return Err(error);
            }
        }
    }
    Err(Error::SerializationFailure(format!(
        "the rows of the statement kept changing under it, {RETRIES} runs"
    )))
}

/// The new values of every column of `table`, from column `from` of `found`, as computed:
/// the writer casts them to the table's types.
fn new_rows(found: &RecordBatch, table: &StoredTable, from: usize) -> Result<RecordBatch> {
    let columns = found
        .columns()
        .get(from..from + table.def.columns.len())
        .ok_or_else(|| Error::Internal("the new rows lack columns".into()))?;
    let fields: Vec<Field> = (table.def.columns.iter().zip(columns))
        .map(|(column, array)| Field::new(&column.name, array.data_type().clone(), true))
        .collect();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.to_vec(),
    )?)
}

/// The row keys (first column) of `found`, each once (an UPDATE … FROM can match a row more
/// than once; PostgreSQL then also changes it once), and the rows that hold them.
fn distinct_rows(found: &RecordBatch) -> Result<(Vec<Vec<u8>>, UInt32Array)> {
    let keys = found
        .columns()
        .first()
        .and_then(|c| c.as_binary_opt::<i32>())
        .ok_or_else(|| Error::Internal("the rows to change come without their keys".into()))?;
    let mut seen = HashSet::new();
    let mut row_keys = Vec::new();
    let mut rows = Vec::new();
    for row in 0..keys.len() {
        let key = keys.value(row);
        if seen.insert(key) {
            row_keys.push(key.to_vec());
            rows.push(row as u32);
        }
    }
    Ok((row_keys, UInt32Array::from(rows)))
}
