//! The statements about stored tables that TasteDB runs itself rather than DataFusion:
//! `CREATE TABLE` (also `AS SELECT`), `DROP TABLE` and `INSERT` (whose vector literals and
//! NOT NULL errors need the table's definition).

use crate::engine::access::Access;
use crate::engine::{CommandTag, Engine, Outcome};
use crate::error::{Error, Result};
use crate::roles::{Actor, Object, Users};
use crate::schema::{ColumnType, TableDef};
use crate::sql::create_table::{table_def, table_def_from_schema};
use crate::sql::defaults::fill_defaults;
use crate::sql::insert_values::{explain_not_null, vector_text_literals};
use crate::sql::names;
use crate::sql::notices::{Notice, Notices};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::catalog::SchemaProvider;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    CreateTable, CreateTableOptions, Insert, ObjectName, Statement as SqlStatement, TableObject,
};
use std::sync::Arc;

impl Engine {
    pub(super) async fn insert(&self, insert: Insert, actor: &Actor) -> Result<Outcome> {
        let (plan, def, _) = self.plan_insert(insert.clone(), actor).await?;
        let result = self.run_plan(plan).await;
        result.map_err(|error| explain_not_null(error, &insert, def.as_ref()))
    }

    /// `batch` (every column of `def`) with each column that is not `listed` and has a
    /// DEFAULT given it, evaluated for every row (COPY with a column list; a `nextval`
    /// default numbers the rows). Nothing changes when `listed` is empty (every column given).
    pub(crate) async fn copy_defaults(
        &self,
        def: &TableDef,
        listed: &[String],
        batch: RecordBatch,
    ) -> Result<RecordBatch> {
        let defaulted = def.defaults_for(listed);
        if defaulted.is_empty() || batch.num_rows() == 0 {
            return Ok(batch);
        }
        let mut columns = batch.columns().to_vec();
        for &(index, default) in &defaulted {
            let value = match def.columns[index].column_type {
                ColumnType::Vector(_) => format!("({default})"),
                other => format!("CAST(({default}) AS {})", other.sql_name()),
            };
            let sql = format!(
                "SELECT {value} AS v FROM generate_series(1, {})",
                batch.num_rows()
            );
            let values = Box::pin(self.sql(&sql)).await?;
            let schema = values
                .first()
                .map(|b| b.schema())
                .ok_or_else(|| Error::Internal("a column default without values".into()))?;
            columns[index] = concat_batches(&schema, &values)?.column(0).clone();
        }
        let fields: Vec<Field> = (batch.schema().fields().iter().zip(&columns))
            .map(|(field, column)| Field::new(field.name(), column.data_type().clone(), true))
            .collect();
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }

    /// The plan of an INSERT: vector literals written as text are read as vectors first, and
    /// a NULL that DataFusion refuses in a NOT NULL column is reported as 23502 naming the
    /// column and row. Also returns the definition of the stored table it writes, if any,
    /// and what it needs from `actor`.
    pub(super) async fn plan_insert(
        &self,
        mut insert: Insert,
        actor: &Actor,
    ) -> Result<(LogicalPlan, Option<TableDef>, Access)> {
        let def = match &insert.table {
            TableObject::TableName(name) => names::table_name(name)
                .ok()
                .and_then(|n| self.catalog().get(&n))
                .map(|table| table.def.clone()),
            _ => None,
        };
        if let Some(def) = &def {
            fill_defaults(&mut insert, def)?;
            vector_text_literals(&mut insert, def)?;
        }
        let statement = DFStatement::Statement(Box::new(SqlStatement::Insert(insert.clone())));
        match self.plan(statement, actor).await {
            Ok((plan, access)) => Ok((plan, def, access)),
            Err(error) => Err(explain_not_null(error, &insert, def.as_ref())),
        }
    }

    pub(super) async fn create_table(
        &self,
        create: CreateTable,
        actor: &Actor,
        notices: &Notices,
    ) -> Result<Outcome> {
        let name = names::table_name(&create.name)?;
        // Stored tables, views and external tables share one namespace.
        if self.schema().table_exist(&name) {
            return if create.if_not_exists {
                notices.send(Notice::with_code(
                    "42P07",
                    format!("relation \"{name}\" already exists, skipping"),
                ));
                Ok(Outcome::done("CREATE TABLE"))
            } else {
                Err(Error::DuplicateTable(name))
            };
        }
        if let CreateTableOptions::With(options) = &create.table_options
            && !options.is_empty()
        {
            let names: Vec<String> = options.iter().map(|o| o.to_string()).collect();
            notices.send(Notice::with_code(
                "00000",
                format!(
                    "storage parameters do not apply to TasteDB's tables and are ignored: {}",
                    names.join(", ")
                ),
            ));
        }
        let owner = Users::owner_for(actor);
        let Some(query) = create.query.clone() else {
            let def = table_def(&create)?;
            // a UNIQUE constraint's index shares the namespace of tables
            if let Some(index) = (def.indexes.iter()).find(|i| self.schema_has_relation(&i.name)) {
                return Err(Error::DuplicateTable(index.name.clone()));
            }
            if self.catalog().create(def, create.if_not_exists)? {
                self.users().grants().created(Object::table(&name), owner)?;
            } else {
                notices.send(Notice::with_code(
                    "42P07",
                    format!("relation \"{name}\" already exists, skipping"),
                ));
            }
            return Ok(Outcome::done("CREATE TABLE"));
        };
        let plan = self.plan_query(query, actor).await?;
        let frame = self.session_context().execute_logical_plan(plan).await?;
        let def = if create.columns.is_empty() {
            table_def_from_schema(&create, frame.schema().as_arrow())?
        } else {
            table_def(&create)?
        };
        let batches = frame.collect().await?;
        self.catalog().create(def, false)?;
        self.users().grants().created(Object::table(&name), owner)?;
        let inserted = self.insert_batches(&name, batches).await;
        match inserted {
            Ok(rows) => Ok(Outcome::Done(CommandTag::counted("SELECT", rows))),
            Err(error) => {
                // CREATE TABLE … AS is one statement: without its rows, no table either.
                self.catalog().drop_table(&name, true)?;
                self.users().grants().dropped(&Object::table(&name))?;
                Err(error)
            }
        }
    }

    pub(super) fn drop_tables(
        &self,
        table_names: &[ObjectName],
        if_exists: bool,
        actor: &Actor,
        notices: &Notices,
    ) -> Result<Outcome> {
        self.owned_tables(table_names, actor)?;
        for object_name in table_names {
            let name = names::table_name(object_name)?;
            if let Some(table) = self.catalog().get(&name) {
                self.indexes().drop_for_table(table.def.id)?;
            }
            self.users().grants().dropped(&Object::table(&name))?;
            self.archives().remove(&name)?;
            if self.catalog().drop_table(&name, true)? {
                continue;
            }
            let unregistered = self.schema().deregister_table(&name).map_err(Error::from)?;
            if unregistered.is_none() {
                if !if_exists {
                    return Err(Error::UndefinedTable(name));
                }
                notices.send(Notice::info(format!(
                    "table \"{name}\" does not exist, skipping"
                )));
            }
        }
        Ok(Outcome::done("DROP TABLE"))
    }
}
