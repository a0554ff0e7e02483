//! One client connection's queries: the simple and the extended query protocol, both running
//! statements through the [`Engine`] and encoding Arrow results with `arrow-pg`.

use crate::catalog::{PointQuery, system_tables};
use crate::engine::Engine;
use crate::error::Error;
use crate::server::compat::rewrite_for_clients;
use crate::server::errors::{error_info, to_pgwire};
use crate::server::settings::{self, SessionStatement};
use crate::server::{bind, copy};
use crate::sql::notices::{Notice, Notices};
use crate::sql::parser::{
    self, CopySourceKind, FeatureStatement, ModelStatement, Statement, UserStatement,
};
use crate::sql::ranking_table;
use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::arrow::array::UInt64Array;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use futures::{Sink, SinkExt, StreamExt, TryStreamExt, stream};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler, send_describe_response};
use pgwire::api::results::{DescribePortalResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, DEFAULT_NAME, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::ParameterDescription;
use pgwire::messages::extendedquery::{Bind, BindComplete, Describe, TARGET_TYPE_BYTE_STATEMENT};
use std::fmt::Debug;
use std::sync::Arc;

/// The query side of a connection.
#[derive(Clone)]
pub struct Session {
    engine: Engine,
    planner: Arc<Planner>,
    compat: Arc<PostgresCompatibilityParser>,
}

impl Session {
    /// A session running statements on `engine`.
    pub fn new(engine: Engine) -> Self {
        let compat = Arc::new(PostgresCompatibilityParser::new());
        let planner = Arc::new(Planner {
            engine: engine.clone(),
            compat: compat.clone(),
        });
        Session {
            engine,
            planner,
            compat,
        }
    }
}

impl Session {
    /// The engine statements run on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

impl Session {
    /// Runs one statement: a session statement here, anything else on the engine.
    async fn run_statement<C>(
        &self,
        client: &mut C,
        statement: Statement,
        format: &Format,
        sql: &str,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Statement::CopyToStdout(copy) = statement {
            let query = DFStatement::Statement(Box::new(SqlStatement::Query(copy.query)));
            let stream = self
                .execute(client, Statement::DataFusion(Box::new(query)))
                .await?
                .map_err(|e| to_pgwire(&e, sql))?;
            return copy::copy_out(stream, &copy.options, sql);
        }
        match settings::session_statement(&statement) {
            Some(SessionStatement::Show(name)) => {
                let stream = settings::show_rows(client, &name).map_err(|e| to_pgwire(&e, sql))?;
                respond(Kind::Rows, stream, format, sql).await
            }
            Some(other) => settings::run(client, other).map_err(|e| to_pgwire(&e, sql)),
            None => {
                let kind = kind_of(&statement);
                match self.execute(client, statement).await? {
                    Ok(stream) => respond(kind, stream, format, sql).await,
                    Err(e) => Err(to_pgwire(&e, sql)),
                }
            }
        }
    }
}

impl Session {
    /// Runs `statement` on the engine, sending its notices to the client as they arrive.
    /// The outer error is the connection's, the inner one the statement's.
    async fn execute<C>(
        &self,
        client: &mut C,
        statement: Statement,
    ) -> PgWireResult<Result<SendableRecordBatchStream, Error>>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (notices, mut received) = Notices::channel();
        let result = {
            let run = self.engine.execute(statement, &notices);
            tokio::pin!(run);
            loop {
                tokio::select! {
                    result = &mut run => break result,
                    Some(notice) = received.recv() => send_notice(client, notice).await?,
                }
            }
        };
        drop(notices);
        while let Ok(notice) = received.try_recv() {
            send_notice(client, notice).await?;
        }
        Ok(result)
    }
}

async fn send_notice<C>(client: &mut C, notice: Notice) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let info = ErrorInfo::new("NOTICE".into(), notice.code.into(), notice.message);
    client
        .send(PgWireBackendMessage::NoticeResponse(info.into()))
        .await?;
    Ok(())
}

/// How a statement's result is reported: rows, or a command tag.
#[derive(Debug, Clone)]
enum Kind {
    /// Rows (SELECT, EXPLAIN, SHOW …).
    Rows,
    /// `INSERT 0 n`.
    Insert,
    /// `COPY n`.
    Copy,
    /// `SELECT n` (CREATE TABLE … AS).
    CreateTableAs,
    /// A tag made of the statement's first words (`CREATE TABLE`, `DROP TABLE`, `SET` …).
    Command(String),
}

fn kind_of(statement: &Statement) -> Kind {
    let sql = match statement {
        Statement::CopyFrom(_) | Statement::CopyToStdout(_) => return Kind::Copy,
        Statement::Model(model) => {
            return match model {
                ModelStatement::Drop { .. } => Kind::Command("DROP MODEL".into()),
                ModelStatement::SetActiveVersion { .. } => Kind::Command("ALTER MODEL".into()),
                _ => Kind::Rows,
            };
        }
        Statement::Feature(feature) => {
            return match feature {
                FeatureStatement::Create(_) => Kind::Command("CREATE FEATURE VIEW".into()),
                FeatureStatement::Drop { .. } => Kind::Command("DROP FEATURE VIEW".into()),
                _ => Kind::Rows,
            };
        }
        Statement::User(user) => {
            let verb = match user {
                UserStatement::Create { .. } => "CREATE ROLE",
                UserStatement::Alter { .. } => "ALTER ROLE",
                UserStatement::Drop { .. } => "DROP ROLE",
            };
            return Kind::Command(verb.into());
        }
        Statement::DataFusion(df) => match df.as_ref() {
            DFStatement::Statement(sql) => match sql.as_ref() {
                SqlStatement::Query(_) => return Kind::Rows,
                SqlStatement::Insert(_) => return Kind::Insert,
                SqlStatement::CreateTable(create) if create.query.is_some() => {
                    return Kind::CreateTableAs;
                }
                other => other.to_string(),
            },
            DFStatement::CopyTo(_) => return Kind::Copy,
            DFStatement::Explain(_) => return Kind::Rows,
            other => other.to_string(),
        },
    };
    let mut words = sql.split_whitespace().map(str::to_uppercase);
    let first = words.next().unwrap_or_default();
    match first.as_str() {
        "CREATE" | "DROP" | "ALTER" => {
            let second = words.find(|w| !matches!(w.as_str(), "OR" | "REPLACE" | "EXTERNAL"));
            Kind::Command(format!("{first} {}", second.unwrap_or_default()))
        }
        _ => Kind::Command(first),
    }
}

/// Turns a statement's result stream into the response Postgres would send for it.
async fn respond(
    kind: Kind,
    stream: SendableRecordBatchStream,
    format: &Format,
    sql: &str,
) -> PgWireResult<Response> {
    let schema = stream.schema();
    let counted = |tag: Tag, rows: u64| tag.with_rows(rows as usize);
    match kind {
        Kind::Insert | Kind::Copy | Kind::CreateTableAs if is_count(&schema) => {
            let rows = count(stream).await.map_err(|e| to_pgwire(&e, sql))?;
            Ok(Response::Execution(match kind {
                Kind::Insert => counted(Tag::new("INSERT").with_oid(0), rows),
                Kind::Copy => counted(Tag::new("COPY"), rows),
                _ => counted(Tag::new("SELECT"), rows),
            }))
        }
        Kind::Command(tag) if schema.fields().is_empty() => {
            let _: Vec<_> = stream
                .try_collect()
                .await
                .map_err(|e| to_pgwire(&e.into(), sql))?;
            Ok(Response::Execution(Tag::new(&tag)))
        }
        _ => rows(stream, format, sql).map(Response::Query),
    }
}

fn is_count(schema: &Schema) -> bool {
    schema.fields().len() == 1
        && schema.field(0).name() == "count"
        && schema.field(0).data_type() == &DataType::UInt64
}

async fn count(stream: SendableRecordBatchStream) -> Result<u64, Error> {
    let batches: Vec<_> = stream.try_collect().await?;
    Ok(batches
        .iter()
        .filter_map(|b| b.column(0).as_any().downcast_ref::<UInt64Array>())
        .flat_map(|a| a.iter().flatten())
        .sum())
}

/// A row-description plus a stream of encoded rows; an error mid-stream keeps its SQLSTATE.
fn rows(
    stream: SendableRecordBatchStream,
    format: &Format,
    sql: &str,
) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(arrow_schema_to_pg_fields(&stream.schema(), format, None)?);
    let encoder_fields = fields.clone();
    let sql = sql.to_string();
    let data = stream.flat_map(move |batch| {
        let rows: Vec<PgWireResult<_>> = match batch {
            Ok(batch) => encode_recordbatch(encoder_fields.clone(), batch).collect(),
            Err(e) => vec![Err(to_pgwire(&Error::from(e), &sql))],
        };
        stream::iter(rows)
    });
    Ok(QueryResponse::new(fields, data))
}

#[async_trait]
impl SimpleQueryHandler for Session {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = match parser::parse(query) {
            Ok(statements) => rewrite_for_clients(&self.compat, query, statements),
            Err(e) => return Ok(vec![Response::Error(Box::new(error_info(&e, query)))]),
        };
        let mut responses = Vec::with_capacity(statements.len());
        // Statements run one by one; the first failure ends the batch, as in Postgres.
        for statement in statements {
            if let Statement::CopyFrom(copy) = &statement
                && copy.source == CopySourceKind::Stdin
            {
                // The data follows as CopyData messages; nothing after COPY runs in this batch.
                match copy::begin(&self.engine, client, copy.clone()) {
                    Ok(response) => responses.push(response),
                    Err(e) => responses.push(Response::Error(Box::new(error_info(&e, query)))),
                }
                break;
            }
            let result = self
                .run_statement(client, statement, &Format::UnifiedText, query)
                .await;
            match result {
                Ok(response) => responses.push(response),
                Err(PgWireError::UserError(info)) => {
                    responses.push(Response::Error(info));
                    break;
                }
                Err(other) => return Err(other),
            }
        }
        Ok(responses)
    }
}

/// A statement prepared by the extended protocol.
#[derive(Debug, Clone)]
pub struct Prepared {
    sql: String,
    statement: Statement,
    /// DataFusion's plan, with `$n` placeholders, for statements that take parameters.
    plan: Option<LogicalPlan>,
    /// Arrow types of the parameters `$1…$n` (TEXT where nothing else is known).
    parameter_types: Vec<DataType>,
    /// The rows' schema where it is known without a plan (`SHOW`).
    rows_schema: Option<Schema>,
    /// A lookup by primary key, answered without planning at each execution.
    point: Option<PointQuery>,
    /// The catalog generation the plan was made in; a CREATE or DROP since means planning
    /// again.
    generation: u64,
}

impl Prepared {
    /// The schema of the statement's rows as Describe reports it: none when it returns no
    /// rows, or when they are known only once it runs.
    fn result_schema(&self) -> Option<&Schema> {
        match (&self.plan, &self.rows_schema) {
            (Some(plan), _) if !matches!(plan, LogicalPlan::Dml(_)) => {
                Some(plan.schema().as_arrow())
            }
            (None, Some(schema)) => Some(schema),
            _ => None,
        }
    }

    fn column_count(&self) -> usize {
        self.result_schema()
            .map_or(0, |schema| schema.fields().len())
    }
}

/// Parses and plans statements for the extended protocol.
pub struct Planner {
    engine: Engine,
    compat: Arc<PostgresCompatibilityParser>,
}

impl Planner {
    async fn prepare(&self, sql: &str) -> Result<Option<Prepared>, Error> {
        let generation = self.engine.catalog().generation();
        let mut statements = rewrite_for_clients(&self.compat, sql, parser::parse(sql)?);
        if statements.len() > 1 {
            return Err(Error::Syntax(
                "cannot insert multiple commands into a prepared statement".into(),
            ));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        let plan = match &statement {
            Statement::DataFusion(df) if takes_parameters(df) => {
                Some(self.engine.plan(df.as_ref().clone()).await?)
            }
            _ => None,
        };
        let parameter_types = match &plan {
            Some(plan) => parameter_types(plan)?,
            None => Vec::new(),
        };
        let point = plan
            .as_ref()
            .and_then(|plan| PointQuery::recognise(self.engine.catalog(), plan));
        let rows_schema = match (&statement, settings::session_statement(&statement)) {
            (_, Some(SessionStatement::Show(name))) => Some(settings::show_schema(&name)),
            (Statement::Feature(FeatureStatement::Show), _) => {
                Some(system_tables::feature_views_schema().as_ref().clone())
            }
            (Statement::Feature(FeatureStatement::Materialize { .. }), _) => {
                Some(crate::sql::features::materialize_schema().as_ref().clone())
            }
            (Statement::Model(ModelStatement::Show), _) => {
                Some(system_tables::models_schema().as_ref().clone())
            }
            (Statement::Model(ModelStatement::Train(_) | ModelStatement::Evaluate { .. }), _) => {
                Some(system_tables::versions_schema().as_ref().clone())
            }
            _ => None,
        };
        Ok(Some(Prepared {
            sql: sql.to_string(),
            statement,
            plan,
            parameter_types,
            rows_schema,
            point,
            generation,
        }))
    }
}

/// Statements DataFusion plans (with `$n` placeholders) at Parse; the rest run through the
/// engine whole at Execute.
fn takes_parameters(statement: &DFStatement) -> bool {
    match statement {
        DFStatement::Statement(sql) => {
            matches!(
                sql.as_ref(),
                SqlStatement::Query(_) | SqlStatement::Insert(_)
            ) || settings::is_engine_show(sql)
        }
        DFStatement::Explain(_) => true,
        _ => false,
    }
}

/// The types of `$1…$n`: DataFusion's inference, then those of table-function arguments
/// (`recommend('m', $1, $2)`), then TEXT.
fn parameter_types(plan: &LogicalPlan) -> Result<Vec<DataType>, Error> {
    let found = plan.get_parameter_types()?;
    let in_functions = ranking_table::parameter_types(plan);
    let count = found
        .keys()
        .chain(in_functions.keys())
        .filter_map(|id| id.strip_prefix('$')?.parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    Ok((1..=count)
        .map(|i| {
            let id = format!("${i}");
            found
                .get(&id)
                .cloned()
                .flatten()
                .or_else(|| in_functions.get(&id).cloned())
                .unwrap_or(DataType::Utf8)
        })
        .collect())
}

#[async_trait]
impl QueryParser for Planner {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        self.prepare(sql).await.map_err(|e| to_pgwire(&e, sql))
    }

    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        statement.parameter_types.iter().map(into_pg_type).collect()
    }

    fn get_result_schema(
        &self,
        statement: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.unwrap_or(&Format::UnifiedText);
        match statement.result_schema() {
            Some(schema) => arrow_schema_to_pg_fields(schema, format, None),
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for Session {
    type Statement = Prepared;
    type QueryParser = Planner;

    fn query_parser(&self) -> Arc<Planner> {
        self.planner.clone()
    }

    /// pgwire's own Describe, except that a statement with parameters but no rows gets
    /// NoData after its ParameterDescription, as in Postgres. (pgwire sends an empty
    /// RowDescription, and pgJDBC then reports an update count of 0 for every INSERT of a
    /// batch.)
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        if message.target_type == TARGET_TYPE_BYTE_STATEMENT
            && let Some(Entry::Value(statement)) = client.portal_store().get_statement(name)
        {
            let described = self.do_describe_statement(client, &statement).await?;
            let oids = described.parameters.iter().map(Type::oid).collect();
            client
                .send(PgWireBackendMessage::ParameterDescription(
                    ParameterDescription::new(oids),
                ))
                .await?;
            let rows = DescribePortalResponse::new(described.fields);
            return send_describe_response(client, &rows).await;
        }
        self._on_describe(client, message).await
    }

    /// pgwire's own Bind handling, with [`bind::check`] first.
    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement_name = message.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
        let shown_name = message.statement_name.as_deref().unwrap_or("");
        match client.portal_store().get_statement(statement_name) {
            Some(Entry::Value(statement)) => {
                let prepared = &statement.statement;
                let parameters = statement
                    .parameter_types
                    .len()
                    .max(prepared.parameter_types.len());
                bind::check(&message, shown_name, parameters, prepared.column_count())?;
                let portal = Portal::try_new(&message, statement)?;
                client.portal_store().put_portal(Arc::new(portal));
            }
            Some(Entry::Empty) => {
                bind::check(&message, shown_name, 0, 0)?;
                let portal_name = message.portal_name.as_deref().unwrap_or(DEFAULT_NAME);
                client.portal_store().put_empty_portal(portal_name);
            }
            None => return Err(PgWireError::StatementNotFound(shown_name.to_owned())),
        }
        client
            .send(PgWireBackendMessage::BindComplete(BindComplete::new()))
            .await?;
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut prepared = &portal.statement.statement;
        let sql = prepared.sql.as_str();
        let replanned;
        if prepared.generation != self.engine.catalog().generation() {
            replanned = self
                .planner
                .prepare(sql)
                .await
                .map_err(|e| to_pgwire(&e, sql))?;
            if let Some(fresh) = &replanned {
                prepared = fresh;
            }
        }
        if let Statement::CopyFrom(copy) = &prepared.statement
            && copy.source == CopySourceKind::Stdin
        {
            return copy::begin(&self.engine, client, copy.clone()).map_err(|e| to_pgwire(&e, sql));
        }
        let Some(plan) = &prepared.plan else {
            return self
                .run_statement(
                    client,
                    prepared.statement.clone(),
                    &portal.result_column_format,
                    sql,
                )
                .await;
        };
        let types: Vec<Option<&DataType>> = prepared.parameter_types.iter().map(Some).collect();
        let values = deserialize_parameters(portal, &types)?;
        if let Some(point) = &prepared.point {
            let found = point
                .run(self.engine.catalog(), &values)
                .map_err(|e| to_pgwire(&e, sql))?;
            if let Some(batch) = found {
                let schema = batch.schema();
                let stream = MemoryStream::try_new(vec![batch], schema, None)
                    .map_err(|e| to_pgwire(&e.into(), sql))?;
                return respond(
                    Kind::Rows,
                    Box::pin(stream),
                    &portal.result_column_format,
                    sql,
                )
                .await;
            }
        }
        let bound = plan
            .clone()
            .with_param_values(values.clone())
            .map_err(|e| to_pgwire(&e.into(), sql))?;
        // table functions read their parameters while the plan is turned into a physical one
        let stream = ranking_table::with_parameters(values, self.engine.execute_plan(bound))
            .await
            .map_err(|e| to_pgwire(&e, sql))?;
        let kind = kind_of(&prepared.statement);
        respond(kind, stream, &portal.result_column_format, sql).await
    }
}

/// A FATAL error with `code` (used during startup).
pub fn fatal(code: &str, message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message.into(),
    )))
}
