//! The statements about stored tables that TasteDB runs itself rather than DataFusion:
//! `CREATE TABLE` (also `AS SELECT`), `DROP TABLE` and `INSERT` (whose vector literals and
//! NOT NULL errors need the table's definition).

use crate::engine::{CommandTag, Engine, Outcome};
use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::sql::create_table::{table_def, table_def_from_schema};
use crate::sql::insert_values::{explain_not_null, vector_text_literals};
use crate::sql::names;
use crate::sql::notices::{Notice, Notices};
use datafusion::catalog::SchemaProvider;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    CreateTable, Insert, ObjectName, Statement as SqlStatement, TableObject,
};

impl Engine {
    pub(super) async fn insert(&self, insert: Insert) -> Result<Outcome> {
        let (plan, def) = self.plan_insert(insert.clone()).await?;
        let result = self.run_plan(plan).await;
        result.map_err(|error| explain_not_null(error, &insert, def.as_ref()))
    }

    /// The plan of an INSERT: vector literals written as text are read as vectors first, and
    /// a NULL that DataFusion refuses in a NOT NULL column is reported as 23502 naming the
    /// column and row. Also returns the definition of the stored table it writes, if any.
    pub(super) async fn plan_insert(
        &self,
        mut insert: Insert,
    ) -> Result<(LogicalPlan, Option<TableDef>)> {
        let def = match &insert.table {
            TableObject::TableName(name) => names::table_name(name)
                .ok()
                .and_then(|n| self.catalog().get(&n))
                .map(|table| table.def.clone()),
            _ => None,
        };
        if let Some(def) = &def {
            vector_text_literals(&mut insert, def)?;
        }
        let statement = DFStatement::Statement(Box::new(SqlStatement::Insert(insert.clone())));
        match self.plan(statement).await {
            Ok(plan) => Ok((plan, def)),
            Err(error) => Err(explain_not_null(error, &insert, def.as_ref())),
        }
    }

    pub(super) async fn create_table(
        &self,
        create: CreateTable,
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
        let Some(query) = create.query.clone() else {
            if !self
                .catalog()
                .create(table_def(&create)?, create.if_not_exists)?
            {
                notices.send(Notice::with_code(
                    "42P07",
                    format!("relation \"{name}\" already exists, skipping"),
                ));
            }
            return Ok(Outcome::done("CREATE TABLE"));
        };
        let ctx = self.session_context();
        let plan = ctx
            .state()
            .statement_to_plan(DFStatement::Statement(Box::new(SqlStatement::Query(query))))
            .await?;
        let frame = ctx.execute_logical_plan(plan).await?;
        let def = if create.columns.is_empty() {
            table_def_from_schema(&create, frame.schema().as_arrow())?
        } else {
            table_def(&create)?
        };
        let batches = frame.collect().await?;
        self.catalog().create(def, false)?;
        let inserted = self.insert_batches(&name, batches).await;
        match inserted {
            Ok(rows) => Ok(Outcome::Done(CommandTag::counted("SELECT", rows))),
            Err(error) => {
                // CREATE TABLE … AS is one statement: without its rows, no table either.
                self.catalog().drop_table(&name, true)?;
                Err(error)
            }
        }
    }

    pub(super) fn drop_tables(
        &self,
        table_names: &[ObjectName],
        if_exists: bool,
        notices: &Notices,
    ) -> Result<Outcome> {
        for object_name in table_names {
            let name = names::table_name(object_name)?;
            if let Some(table) = self.catalog().get(&name) {
                self.indexes().drop_for_table(table.def.id)?;
            }
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
