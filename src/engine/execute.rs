//! The one statement dispatch: TasteDB's commands run themselves, COPY FROM a file and the
//! stored-table statements run here, and everything else is planned and run by DataFusion;
//! each gives an [`Outcome`] typed by what the statement is, not by the shape of its rows.

use crate::catalog::StoredView;
use crate::engine::access::{Access, function_access};
use crate::engine::transaction::current;
use crate::engine::{CommandTag, Context, Engine, Outcome, QUERY_SIGNATURES, Statement};
use crate::error::{Error, Result};
use crate::roles::{Actor, FileAccess, Object, Privilege, Users, personalize};
use crate::sql::names;
use crate::sql::notices::Notices;
use crate::sql::parser::{parse_query, query_statement};
use datafusion::arrow::array::{RecordBatch, UInt64Array};
use datafusion::dataframe::DataFrame;
use datafusion::execution::registry::FunctionRegistry;
use datafusion::execution::{SendableRecordBatchStream, SessionState};
use datafusion::logical_expr::{
    DdlStatement, LogicalPlan, Statement as PlanStatement, TransactionConclusion, WriteOp,
};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{ObjectName, ObjectType, Query, Statement as SqlStatement};
use futures::TryStreamExt;
use std::future::Future;
use std::sync::Arc;

impl Engine {
    /// Runs one statement as the embedding program (which may do everything); its notices go
    /// to `notices`.
    pub async fn execute(&self, statement: Statement, notices: &Notices) -> Result<Outcome> {
        self.execute_as(statement, &Actor::Embedder, notices).await
    }

    /// Runs one statement on behalf of `actor`; its notices go to `notices`.
    pub async fn execute_as(
        &self,
        statement: Statement,
        actor: &Actor,
        notices: &Notices,
    ) -> Result<Outcome> {
        if self.is_read_only() {
            super::read_only::check(&statement)?;
        }
        match statement {
            Statement::CopyFrom(copy) => {
                self.users().check_server_files(actor, FileAccess::Read)?;
                let table = Object::table(copy.table.clone());
                self.users().check(actor, &table, Privilege::Insert)?;
                let rows = self.copy_from_file(copy, |_| {}).await?;
                Ok(Outcome::Done(CommandTag::counted("COPY", rows)))
            }
            Statement::CopyToStdout(_) => Err(Error::FeatureNotSupported(
                "COPY TO STDOUT needs a client connection; use COPY … TO 'file' here".into(),
            )),
            Statement::Move(_) => Err(Error::FeatureNotSupported(
                "MOVE moves a cursor, and cursors belong to connections to `tastedb serve`".into(),
            )),
            Statement::Shaped(shaped) => {
                if let Some(outcome) = self.run_shape(&shaped.shape, &shaped.values, actor).await? {
                    return Ok(outcome);
                }
                // its template was learned from a text that parses into this one statement
                let mut statements = crate::engine::parse(&shaped.query)?;
                match (statements.pop(), statements.is_empty()) {
                    (Some(statement), true) => {
                        Box::pin(self.execute_as(statement, actor, notices)).await
                    }
                    _ => Err(Error::Internal(format!(
                        "a shaped statement is not one statement: {}",
                        shaped.query
                    ))),
                }
            }
            Statement::Command(command) => {
                let cx = Context {
                    engine: self,
                    actor,
                    notices,
                };
                command.execute(&cx).await
            }
            Statement::DataFusion(statement) => {
                if let Some(access) = server_file_access(&statement) {
                    self.users().check_server_files(actor, access)?;
                }
                self.execute_sql(*statement, actor, notices).await
            }
        }
    }

    async fn execute_sql(
        &self,
        statement: DFStatement,
        actor: &Actor,
        notices: &Notices,
    ) -> Result<Outcome> {
        let sql = match statement {
            DFStatement::Statement(sql) => sql,
            DFStatement::CreateExternalTable(create) => {
                let name = names::table_name(&create.name)?;
                let created = DFStatement::CreateExternalTable(create);
                return self
                    .creating_table(&name, actor, self.run_datafusion(created, actor))
                    .await;
            }
            other => return self.run_datafusion(other, actor).await,
        };
        if let Some(outcome) = self.run_by_shape(&sql, actor).await? {
            return Ok(outcome);
        }
        match *sql {
            SqlStatement::CreateTable(create) => self.create_table(create, actor, notices).await,
            SqlStatement::Drop {
                object_type: ObjectType::Table,
                if_exists,
                names,
                ..
            } => self.drop_tables(&names, if_exists, actor, notices),
            SqlStatement::Drop {
                object_type: ObjectType::View,
                ref names,
                ..
            } => {
                let names = self.owned_tables(names, actor)?;
                let outcome = self
                    .run_datafusion(DFStatement::Statement(sql), actor)
                    .await?;
                for name in names {
                    self.catalog().forget_view(&name)?;
                    self.users().grants().dropped(&Object::table(name))?;
                }
                Ok(outcome)
            }
            SqlStatement::CreateView(ref view) => {
                let name = names::table_name(&view.name)?;
                if view.or_replace && self.is_user_table(&name) {
                    self.users()
                        .check_owner(actor, &Object::table(name.clone()))?;
                }
                // stored as OR REPLACE, so defining it again at the next start cannot clash
                let stored = (!view.materialized).then(|| {
                    let mut definition = view.clone();
                    definition.or_replace = true;
                    definition.if_not_exists = false;
                    StoredView {
                        name: name.clone(),
                        definition: SqlStatement::CreateView(definition).to_string(),
                    }
                });
                let created = self.run_datafusion(DFStatement::Statement(sql), actor);
                let outcome = self.creating_table(&name, actor, created).await?;
                if let Some(view) = stored {
                    self.catalog().save_view(&view)?;
                }
                Ok(outcome)
            }
            SqlStatement::Insert(insert) if insert.returning.is_none() => {
                self.insert(insert, actor).await
            }
            SqlStatement::Truncate(truncate) => self.truncate(&truncate, actor).await,
            SqlStatement::AlterTable(alter) => self.alter_table(alter, actor, notices).await,
            other => {
                if let Some(modification) = self.modification_of(&other)? {
                    return self.modify(modification, actor).await;
                }
                self.run_datafusion(DFStatement::Statement(Box::new(other)), actor)
                    .await
            }
        }
    }

    /// Runs `create`, which makes the table or view `name`; once it has, `actor` owns it.
    async fn creating_table(
        &self,
        name: &str,
        actor: &Actor,
        create: impl Future<Output = Result<Outcome>>,
    ) -> Result<Outcome> {
        let existed = self.is_user_table(name);
        let outcome = create.await?;
        if !existed {
            self.users()
                .grants()
                .created(Object::table(name), Users::owner_for(actor))?;
        }
        Ok(outcome)
    }

    /// The names of `tables` that exist, once `actor` is found to own each of them.
    pub(super) fn owned_tables(&self, tables: &[ObjectName], actor: &Actor) -> Result<Vec<String>> {
        let mut owned = Vec::new();
        for table in tables {
            let name = names::table_name(table)?;
            if self.is_user_table(&name) {
                self.users()
                    .check_owner(actor, &Object::table(name.clone()))?;
                owned.push(name);
            }
        }
        Ok(owned)
    }

    /// Plans `statement` with DataFusion and runs it on behalf of `actor`.
    pub(super) async fn run_datafusion(
        &self,
        statement: DFStatement,
        actor: &Actor,
    ) -> Result<Outcome> {
        let (plan, _) = self.plan(statement, actor).await?;
        self.run_plan(plan).await
    }

    /// DataFusion's logical plan of `statement` (placeholders `$n` stay unbound), once
    /// `actor` is found to hold what it needs, and that [`Access`] (to check again at each
    /// run of a prepared plan). Query arguments of table functions are planned first
    /// (`sql::query_arguments`), and `SHOW tastedb.*` reads the settings table. What
    /// functions read is checked before planning, as some read while they are planned.
    pub(crate) async fn plan(
        &self,
        mut statement: DFStatement,
        actor: &Actor,
    ) -> Result<(LogicalPlan, Access)> {
        if let Some(query) = show_tastedb_setting(&statement)? {
            statement = query_statement(query);
        }
        if let (Actor::Role(role), DFStatement::Statement(sql)) = (actor, &mut statement) {
            personalize(sql, role);
        }
        let mut access = function_access(&statement);
        self.check_access(actor, &access)?;
        let state = self.planning_state()?;
        let arguments = self
            .query_arguments()
            .extract(
                &state,
                QUERY_SIGNATURES,
                &|name| self.filters().definition(name),
                &mut statement,
            )
            .await?;
        let planned = async {
            for token in &arguments {
                if let Some(argument) = self.query_arguments().plan_of(token) {
                    access.extend(self.plan_access(&argument)?);
                }
            }
            self.check_access(actor, &access)?;
            let plan = state.statement_to_plan(statement).await?;
            crate::engine::access::check_setting(&plan, self.users().is_superuser(actor))?;
            crate::cluster::check_setting(&plan)?;
            access.extend(self.plan_access(&plan)?);
            self.check_access(actor, &access)?;
            Ok::<_, Error>(plan)
        }
        .await;
        self.query_arguments().forget(&arguments);
        Ok((planned?, access))
    }

    /// The session state statements are planned in: the engine's, with the sequence
    /// functions bound to the connection's own `currval` values when it runs on one.
    pub(crate) fn planning_state(&self) -> Result<SessionState> {
        let mut state = self.session_context().state();
        if let Some(values) = crate::engine::session_values::current_session() {
            for function in
                crate::catalog::sequences::functions(self.catalog().sequences(), &values)
            {
                state.register_udf(Arc::new(function))?;
            }
        }
        Ok(state)
    }

    /// The logical plan of `query`, once `actor` is found to hold what it needs.
    pub(crate) async fn plan_query(&self, query: Box<Query>, actor: &Actor) -> Result<LogicalPlan> {
        Ok(self.plan(query_statement(query), actor).await?.0)
    }

    /// Runs a logical plan and streams its rows: on the cluster of `tastedb.cluster` when it
    /// reads archives only (`cluster::placement`), here otherwise.
    pub(crate) async fn execute_plan(
        &self,
        plan: LogicalPlan,
    ) -> Result<SendableRecordBatchStream> {
        if let Some(cluster) = crate::cluster::Target::of(&self.taste_config()) {
            let here = |plan| self.execute_here(plan);
            return crate::cluster::execute_or_here(&cluster, plan, here).await;
        }
        self.execute_here(plan).await
    }

    /// Runs a logical plan here and streams its rows.
    async fn execute_here(&self, plan: LogicalPlan) -> Result<SendableRecordBatchStream> {
        // a write or a query in a transaction runs with it; definitions change the engine's
        // own session, so they go through it
        if current().is_some() && !matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Statement(_)) {
            let frame = DataFrame::new(self.statement_state(), plan);
            return Ok(frame.execute_stream().await?);
        }
        let frame = self.session_context().execute_logical_plan(plan).await?;
        Ok(frame.execute_stream().await?)
    }

    /// Runs a logical plan: a plan that writes or defines reports its command tag (after it
    /// has run to the end), any other streams its rows.
    pub(super) async fn run_plan(&self, plan: LogicalPlan) -> Result<Outcome> {
        let tag = command_of(&plan);
        let stream = self.execute_plan(plan).await?;
        match tag {
            None => Ok(Outcome::Rows(stream)),
            Some(Command::Counted(command)) => {
                let batches: Vec<RecordBatch> = stream.try_collect().await?;
                Ok(Outcome::Done(CommandTag::counted(command, count(&batches))))
            }
            Some(Command::Plain(command)) => {
                let _: Vec<RecordBatch> = stream.try_collect().await?;
                Ok(Outcome::done(command))
            }
        }
    }
}

/// Whether `statement` reads or writes files on the server: DataFusion's external tables and
/// `COPY … TO 'file'`, also under `EXPLAIN ANALYZE`, which runs its statement.
fn server_file_access(statement: &DFStatement) -> Option<FileAccess> {
    match statement {
        DFStatement::CreateExternalTable(_) => Some(FileAccess::Read),
        DFStatement::CopyTo(_) => Some(FileAccess::Write),
        DFStatement::Explain(explain) => server_file_access(&explain.statement),
        _ => None,
    }
}

/// The command tag of a plan that returns no rows.
enum Command {
    /// A command that reports the rows it wrote (`INSERT 0 n`, `COPY n`).
    Counted(&'static str),
    /// A command that reports nothing but itself.
    Plain(&'static str),
}

/// What a plan is, when it is not a query: DataFusion's DML plans count their rows in one
/// `count` column, DDL and statements return nothing.
fn command_of(plan: &LogicalPlan) -> Option<Command> {
    let plain = |tag| Some(Command::Plain(tag));
    match plan {
        LogicalPlan::Dml(dml) => Some(Command::Counted(match &dml.op {
            WriteOp::Insert(_) => "INSERT",
            WriteOp::Update => "UPDATE",
            WriteOp::Delete => "DELETE",
            WriteOp::Ctas => "SELECT",
            WriteOp::Truncate => "TRUNCATE TABLE",
            WriteOp::MergeInto(_) => "MERGE",
            // a write DataFusion adds later: reported by its rows, like a query's
            _ => "SELECT",
        })),
        LogicalPlan::Copy(_) => Some(Command::Counted("COPY")),
        LogicalPlan::Ddl(ddl) => plain(match ddl {
            DdlStatement::CreateExternalTable(_) | DdlStatement::CreateMemoryTable(_) => {
                "CREATE TABLE"
            }
            DdlStatement::CreateView(_) => "CREATE VIEW",
            DdlStatement::CreateCatalogSchema(_) => "CREATE SCHEMA",
            DdlStatement::CreateCatalog(_) => "CREATE DATABASE",
            DdlStatement::CreateIndex(_) => "CREATE INDEX",
            DdlStatement::DropTable(_) => "DROP TABLE",
            DdlStatement::DropView(_) => "DROP VIEW",
            DdlStatement::DropCatalogSchema(_) => "DROP SCHEMA",
            DdlStatement::CreateFunction(_) => "CREATE FUNCTION",
            DdlStatement::DropFunction(_) => "DROP FUNCTION",
        }),
        LogicalPlan::Statement(statement) => match statement {
            PlanStatement::TransactionStart(_) => plain("BEGIN"),
            PlanStatement::TransactionEnd(end) => plain(match end.conclusion {
                TransactionConclusion::Commit => "COMMIT",
                TransactionConclusion::Rollback => "ROLLBACK",
            }),
            PlanStatement::SetVariable(_) => plain("SET"),
            PlanStatement::ResetVariable(_) => plain("RESET"),
            PlanStatement::Prepare(_) => plain("PREPARE"),
            PlanStatement::Deallocate(_) => plain("DEALLOCATE"),
            PlanStatement::Execute(_) => None,
        },
        _ => None,
    }
}

/// The rows a DML plan reports in its `count` column.
fn count(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .filter_map(|b| b.columns().first()?.as_any().downcast_ref::<UInt64Array>())
        .flat_map(|a| a.iter().flatten())
        .sum()
}

/// `SHOW tastedb.name` as a query of the settings table: DataFusion's SHOW knows only
/// `datafusion.*`, and lists TasteDB's settings without their prefix.
fn show_tastedb_setting(statement: &DFStatement) -> Result<Option<Box<Query>>> {
    let DFStatement::Statement(sql) = statement else {
        return Ok(None);
    };
    let SqlStatement::ShowVariable { variable } = sql.as_ref() else {
        return Ok(None);
    };
    if variable.len() != 2 || !variable[0].value.eq_ignore_ascii_case("tastedb") {
        return Ok(None);
    }
    let field = variable[1].value.to_lowercase().replace('\'', "''");
    parse_query(&format!(
        "SELECT 'tastedb.{field}' AS name, value FROM information_schema.df_settings \
         WHERE name IN ('{field}', 'tastedb.{field}')"
    ))
    .map(Some)
}
