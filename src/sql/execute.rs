//! Running parsed statements: TasteDB's own (CREATE/DROP TABLE of stored tables, COPY FROM)
//! here, everything else through DataFusion's planner.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::sql::create_table::{table_def, table_def_from_schema};
use crate::sql::insert_values::{explain_not_null, vector_text_literals};
use crate::sql::names;
use crate::sql::notices::{Notice, Notices};
use crate::sql::parser::{Statement, UserStatement, query_statement};
use datafusion::arrow::array::{RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::SchemaProvider;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::EmptyRecordBatchStream;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    CreateTable, Insert, ObjectName, ObjectType, Statement as SqlStatement, TableObject,
};
use std::sync::Arc;

impl Engine {
    /// Runs one statement and returns its rows as a stream; notices go to `notices`.
    pub(crate) async fn execute(
        &self,
        statement: Statement,
        notices: &Notices,
    ) -> Result<SendableRecordBatchStream> {
        match statement {
            Statement::CopyFrom(copy) => count_stream(self.copy_from_file(copy, |_| {}).await?),
            Statement::Model(model) => self.execute_model(model, notices).await,
            Statement::Feature(feature) => self.execute_feature(feature, notices).await,
            Statement::CopyToStdout(_) => Err(Error::FeatureNotSupported(
                "COPY TO STDOUT needs a client connection; use COPY … TO 'file' here".into(),
            )),
            Statement::User(user) => {
                let users = self.users();
                match user {
                    UserStatement::Create {
                        name,
                        password,
                        if_not_exists,
                    } => {
                        if !users.create(&name, &password, if_not_exists)? {
                            notices.send(Notice::with_code(
                                "42710",
                                format!("role \"{name}\" already exists, skipping"),
                            ));
                        }
                    }
                    UserStatement::Alter { name, password } => users.alter(&name, &password)?,
                    UserStatement::Drop { name, if_exists } => {
                        if !users.drop_user(&name, if_exists)? {
                            notices.send(Notice::info(format!(
                                "role \"{name}\" does not exist, skipping"
                            )));
                        }
                    }
                }
                Ok(empty_stream())
            }
            Statement::DataFusion(statement) => match *statement {
                DFStatement::Statement(sql) => match *sql {
                    SqlStatement::CreateTable(create) => self.create_table(create, notices).await,
                    SqlStatement::Drop {
                        object_type: ObjectType::Table,
                        if_exists,
                        names,
                        ..
                    } => self.drop_tables(&names, if_exists, notices),
                    SqlStatement::Insert(insert) => self.insert(insert).await,
                    SqlStatement::CreateIndex(create) => {
                        self.create_index(create, notices).await?;
                        Ok(empty_stream())
                    }
                    SqlStatement::Drop {
                        object_type: ObjectType::Index,
                        if_exists,
                        names,
                        ..
                    } => {
                        self.drop_indexes(&names, if_exists, notices)?;
                        Ok(empty_stream())
                    }
                    SqlStatement::ShowVariable { variable }
                        if variable.len() == 2
                            && variable[0].value.eq_ignore_ascii_case("tastedb") =>
                    {
                        // DataFusion's SHOW knows only `datafusion.*`; TasteDB's settings live
                        // in the same table (listed there without their prefix).
                        let field = variable[1].value.to_lowercase().replace('\'', "''");
                        let sql = format!(
                            "SELECT 'tastedb.{field}' AS name, value \
                             FROM information_schema.df_settings \
                             WHERE name IN ('{field}', 'tastedb.{field}')"
                        );
                        let query = crate::sql::parser::parse_query(&sql)?;
                        self.run_datafusion(query_statement(query)).await
                    }
                    other => {
                        self.run_datafusion(DFStatement::Statement(Box::new(other)))
                            .await
                    }
                },
                other => self.run_datafusion(other).await,
            },
        }
    }

    async fn run_datafusion(&self, statement: DFStatement) -> Result<SendableRecordBatchStream> {
        let plan = self.plan(statement).await?;
        self.execute_plan(plan).await
    }

    /// DataFusion's logical plan of `statement` (placeholders `$n` stay unbound).
    pub(crate) async fn plan(&self, mut statement: DFStatement) -> Result<LogicalPlan> {
        let arguments = self.extract_query_arguments(&mut statement).await?;
        let plan = self
            .session_context()
            .state()
            .statement_to_plan(statement)
            .await;
        self.forget_query_arguments(&arguments);
        Ok(plan?)
    }

    /// Runs a logical plan and streams its rows.
    pub(crate) async fn execute_plan(
        &self,
        plan: LogicalPlan,
    ) -> Result<SendableRecordBatchStream> {
        let frame = self.session_context().execute_logical_plan(plan).await?;
        Ok(frame.execute_stream().await?)
    }

    async fn insert(&self, mut insert: Insert) -> Result<SendableRecordBatchStream> {
        let table = match &insert.table {
            TableObject::TableName(name) => names::table_name(name)
                .ok()
                .and_then(|n| self.catalog().get(&n)),
            _ => None,
        };
        if let Some(table) = &table {
            vector_text_literals(&mut insert, &table.def)?;
        }
        let statement = DFStatement::Statement(Box::new(SqlStatement::Insert(insert.clone())));
        let result = self.run_datafusion(statement).await;
        result.map_err(|error| explain_not_null(error, &insert, table.as_ref().map(|t| &t.def)))
    }

    async fn create_table(
        &self,
        create: CreateTable,
        notices: &Notices,
    ) -> Result<SendableRecordBatchStream> {
        let name = names::table_name(&create.name)?;
        // Stored tables, views and external tables share one namespace.
        if self.schema().table_exist(&name) {
            return if create.if_not_exists {
                notices.send(Notice::with_code(
                    "42P07",
                    format!("relation \"{name}\" already exists, skipping"),
                ));
                Ok(empty_stream())
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
            return Ok(empty_stream());
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
            Ok(rows) => count_stream(rows),
            Err(error) => {
                // CREATE TABLE … AS is one statement: without its rows, no table either.
                self.catalog().drop_table(&name, true)?;
                Err(error)
            }
        }
    }

    fn drop_tables(
        &self,
        table_names: &[ObjectName],
        if_exists: bool,
        notices: &Notices,
    ) -> Result<SendableRecordBatchStream> {
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
        Ok(empty_stream())
    }
}

/// A result with no columns and no rows (DDL).
pub(crate) fn empty_stream() -> SendableRecordBatchStream {
    Box::pin(EmptyRecordBatchStream::new(Arc::new(Schema::empty())))
}

/// A stream of one batch (the result of a statement TasteDB answers itself).
pub(crate) fn batch_stream(batch: RecordBatch) -> Result<SendableRecordBatchStream> {
    let schema = batch.schema();
    Ok(Box::pin(MemoryStream::try_new(vec![batch], schema, None)?))
}

/// A one-row `count` result, the shape DataFusion gives INSERT.
fn count_stream(rows: u64) -> Result<SendableRecordBatchStream> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(UInt64Array::from(vec![rows]))],
    )?;
    Ok(Box::pin(MemoryStream::try_new(vec![batch], schema, None)?))
}
