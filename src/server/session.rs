//! One client connection's queries: the simple and the extended query protocol, both running
//! statements through the [`Engine`] and translating its typed [`Outcome`]s to pgwire: rows
//! encoded with `arrow-pg`, or a command tag.

use crate::engine::transaction::maybe_within;
use crate::engine::{self, CommandTag, CurrentEngine, Engine, Outcome, Prepared, Statement};
use crate::error::Error;
use crate::roles::Actor;
use crate::server::asyncpg_types;
use crate::server::compat::ClientRewrites;
use crate::server::cursors::{CursorStatement, Cursors, cursor_statement};
use crate::server::encoded_answers::EncodedAnswers;
use crate::server::errors::{error_info, log_failure, to_pgwire};
use crate::server::held_output::HeldOutput;
use crate::server::settings::{self, SessionStatement};
use crate::server::sql_prepare::{SqlPrepare, SqlPrepared, sql_prepare};
use crate::server::stop::{self, Stop};
use crate::server::transaction_block::{
    self, Block, BlockStatement, PreparedNames, block_statement,
};
use crate::server::{bind, copy, text_format, timeout};
use crate::sql::notices::{Notice, Notices};
use crate::sql::parser::{CopyFormat, CopySourceKind};
use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Expr, Statement as SqlStatement};
use futures::{FutureExt, Sink, SinkExt, StreamExt, TryStreamExt, stream};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler, send_describe_response};
use pgwire::api::results::{DescribePortalResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, DEFAULT_NAME, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::{DataRow, ParameterDescription};
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Describe, Execute, Parse, ParseComplete, Sync as PgSync,
    TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::simplequery::Query as SimpleQuery;
use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;

/// The query side of a connection.
#[derive(Clone)]
pub struct Session {
    engine: CurrentEngine,
    planner: Arc<Planner>,
    compat: Arc<ClientRewrites>,
    /// The server's `statement_timeout`, until a session sets its own.
    statement_timeout: Arc<str>,
    /// The data rows of answers served again, shared by every connection.
    encoded: Arc<EncodedAnswers>,
}

/// Marks a connection whose settings have their server defaults.
struct DefaultsApplied;

impl Session {
    /// A session running statements on the current engine, with `statement_timeout` until it
    /// sets its own.
    pub fn new(engine: CurrentEngine, statement_timeout: &str) -> Self {
        let compat = Arc::new(ClientRewrites::new());
        let planner = Arc::new(Planner {
            engine: engine.clone(),
            compat: compat.clone(),
        });
        Session {
            engine,
            planner,
            compat,
            statement_timeout: statement_timeout.into(),
            encoded: Arc::default(),
        }
    }

    /// Once per connection: for the settings the client did not send at startup, its role's
    /// defaults (`ALTER ROLE … SET`), then the server's, so that statements and `SHOW` see
    /// them.
    fn apply_defaults<C: ClientInfo>(&self, client: &mut C) {
        if client
            .session_extensions()
            .get::<DefaultsApplied>()
            .is_some()
        {
            return;
        }
        let options = client.metadata().get("options").cloned();
        for (name, value) in settings::startup_options(options.as_deref().unwrap_or_default()) {
            match settings::check(&name, &value) {
                Ok(()) => drop(client.metadata_mut().insert(name, value)),
                Err(e) => tracing::warn!("startup option {name} ignored: {e}"),
            }
        }
        let role = client.metadata().get("user").cloned().unwrap_or_default();
        if let Ok(Some(stored)) = self.engine().users().get(&role) {
            for (name, value) in stored.config {
                client.metadata_mut().entry(name).or_insert(value);
            }
        }
        client
            .metadata_mut()
            .entry(timeout::SETTING.to_string())
            .or_insert_with(|| self.statement_timeout.to_string());
        client.session_extensions().insert(DefaultsApplied);
    }

    /// The engine serving now (for what belongs to the process: users, activity, metrics).
    fn engine(&self) -> Engine {
        self.engine.get()
    }

    /// The engine a statement of `client` starting now runs on: its open block's, or the
    /// current one.
    fn engine_for<C: ClientInfo>(&self, client: &C) -> Engine {
        transaction_block::engine_for(&self.engine, client)
    }

    fn actor<C: ClientInfo>(&self, client: &C) -> Result<Arc<Actor>, Error> {
        actor_of(&self.engine(), client)
    }

    /// `sql` starts running for `client`: shown in `pg_stat_activity` until it ends, and
    /// stopped by the session's `statement_timeout` or a cancel.
    fn start<C: ClientInfo>(&self, client: &C, sql: &str) -> PgWireResult<Stop> {
        let (pid, _) = client.pid_and_secret_key();
        let deadline = timeout::deadline(client).map_err(|e| to_pgwire(&e, sql))?;
        Ok(Stop::new(
            deadline,
            self.engine().activity().begin(pid, sql),
        ))
    }

    /// After `responses` to a message of `client`'s: when they leave its session in a
    /// transaction block, its `idle_in_transaction_session_timeout` (if set) starts counting,
    /// and ends the connection with FATAL 25P03 if no statement comes in time.
    fn arm_idle_timeout<'r, C: ClientInfo>(
        &self,
        client: &C,
        responses: impl IntoIterator<Item = &'r Response>,
    ) {
        let before = !matches!(client.transaction_status(), TransactionStatus::Idle);
        let in_block = responses.into_iter().fold(before, |in_block, r| match r {
            Response::TransactionStart(_) => true,
            Response::TransactionEnd(_) => false,
            _ => in_block,
        });
        if in_block && let Some(limit) = timeout::idle_limit(client) {
            let (pid, _) = client.pid_and_secret_key();
            self.engine().activity().end_when_idle(pid, limit);
        }
    }

    /// Runs one statement in the connection's transaction block, if one is open: refused
    /// with 25P02 when the block failed, and failing it when it fails.
    async fn run_statement<C>(
        &self,
        client: &mut C,
        statement: Statement,
        format: &Format,
        sql: &str,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send,
        C::PortalStore: PortalStore,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let started = std::time::Instant::now();
        let kind = statement_kind(&statement, sql);
        let block = Block::of(client);
        let ending = block_statement(&statement);
        // statements that begin, end or mark the block do not begin its transaction
        let txn = ending.is_none().then(|| block.transaction()).flatten();
        let result = match block.check(ending.as_ref()) {
            // boxed: the statement's future is large, and moving it costs a copy per poll
            Ok(()) => {
                let run = Box::pin(self.run_one(client, statement, format, sql));
                maybe_within(txn, run).await
            }
            Err(e) => Err(to_pgwire(&e, sql)),
        };
        if result.is_err() {
            block.failed();
        }
        self.count(&kind, started, result.is_ok());
        result
    }

    /// Counts a statement of `kind` in the engine's metrics.
    fn count(&self, kind: &str, started: std::time::Instant, ok: bool) {
        let seconds = started.elapsed().as_secs_f64();
        self.engine().metrics().statement(kind, ok, seconds);
    }

    /// Runs one statement: a session statement or COPY TO STDOUT here, anything else on the
    /// engine.
    async fn run_one<C>(
        &self,
        client: &mut C,
        statement: Statement,
        format: &Format,
        sql: &str,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send,
        C::PortalStore: PortalStore,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.apply_defaults(client);
        let stop = self.start(client, sql)?;
        if let Some(sql_prepare) = sql_prepare(&statement) {
            return self
                .run_sql_prepare(client, sql_prepare, format, sql, &stop)
                .await;
        }
        if let Some(cursor) = cursor_statement(&statement) {
            let answer = match cursor {
                Ok(cursor) => self.run_cursor(client, cursor, format, sql, &stop).await,
                Err(e) => Err(e),
            };
            return answer.map_err(|e| to_pgwire(&e, sql));
        }
        if let Some(block) = block_statement(&statement) {
            if matches!(block, BlockStatement::Commit | BlockStatement::Rollback) {
                Cursors::of(client).block_ended();
                if client.transaction_status() == TransactionStatus::Idle {
                    // PostgreSQL's answer to COMMIT or ROLLBACK outside a block
                    let warning = ErrorInfo::new(
                        "WARNING".into(),
                        crate::error::sqlstate::NO_ACTIVE_SQL_TRANSACTION.into(),
                        "there is no transaction in progress".into(),
                    );
                    client
                        .send(PgWireBackendMessage::NoticeResponse(warning.into()))
                        .await?;
                }
            }
            let answer = match block {
                BlockStatement::Deallocate(name) => self.deallocate(client, name),
                BlockStatement::DiscardAll => discard_all(client),
                other => transaction_block::run(client, &self.engine(), other).await,
            };
            return answer.map_err(|e| to_pgwire(&e, sql));
        }
        if let Statement::CopyToStdout(copy) = statement {
            let query = DFStatement::Statement(Box::new(SqlStatement::Query(copy.query)));
            let actor = self.actor(client).map_err(|e| to_pgwire(&e, sql))?;
            let (notices, received) = Notices::channel();
            let engine = self.engine_for(client);
            let run = engine.execute_as(Statement::DataFusion(Box::new(query)), &actor, &notices);
            let outcome = with_notices(client, received, stop.within(run))
                .await?
                .and_then(Outcome::into_stream)
                .map_err(|e| to_pgwire(&e, sql))?;
            if copy.options.format == Some(CopyFormat::Binary) {
                return copy::send_binary(client, stop.until(outcome), sql).await;
            }
            return copy::copy_out(stop.until(outcome), &copy.options, sql);
        }
        match settings::session_statement(&statement) {
            Some(SessionStatement::Show(name)) => {
                let stream = settings::show_rows(client, &name).map_err(|e| to_pgwire(&e, sql))?;
                rows(stream, format, sql, recipient(client)).map(Response::Query)
            }
            Some(other) => settings::run(client, other).map_err(|e| to_pgwire(&e, sql)),
            None => {
                let actor = self.actor(client).map_err(|e| to_pgwire(&e, sql))?;
                let (notices, received) = Notices::channel();
                let engine = self.engine_for(client);
                let run = Box::pin(engine.execute_as(statement, &actor, &notices));
                let outcome = with_notices(client, received, stop.within(run)).await?;
                self.respond(
                    outcome.map_err(|e| to_pgwire(&e, sql))?,
                    &stop,
                    format,
                    sql,
                    recipient(client),
                )
            }
        }
    }
}

/// Drives `run` while sending the notices it sends to `received`'s channel to the client as
/// they arrive. The outer error is the connection's, the inner one the statement's.
async fn with_notices<C, T>(
    client: &mut C,
    mut received: UnboundedReceiver<Notice>,
    run: impl Future<Output = T>,
) -> PgWireResult<T>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    tokio::pin!(run);
    let result = loop {
        tokio::select! {
            result = &mut run => break result,
            Some(notice) = received.recv() => send_notice(client, notice).await?,
        }
    };
    while let Ok(notice) = received.try_recv() {
        send_notice(client, notice).await?;
    }
    Ok(result)
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

/// Whom a statement's rows go to: the client's address (errors are logged as its) and its
/// transaction block (which an error mid-stream fails).
struct Recipient {
    addr: SocketAddr,
    block: Arc<Block>,
}

fn recipient<C: ClientInfo>(client: &C) -> Recipient {
    Recipient {
        addr: client.socket_addr(),
        block: Block::of(client),
    }
}

impl Session {
    /// The response Postgres would send for `outcome`; rows stop streaming when `stop` says.
    fn respond(
        &self,
        outcome: Outcome,
        stop: &Stop,
        format: &Format,
        sql: &str,
        client: Recipient,
    ) -> PgWireResult<Response> {
        match outcome {
            Outcome::Rows(stream) => {
                rows(stop.until(stream), format, sql, client).map(Response::Query)
            }
            Outcome::Batch { rows, reused } => {
                self.answer(&rows, reused, format, sql).map(Response::Query)
            }
            Outcome::Done(tag) => {
                if let Some(rows) = tag.rows_written() {
                    self.engine().metrics().rows_written(rows);
                }
                Ok(Response::Execution(wire_tag(&tag)))
            }
            Outcome::Returned {
                command,
                rows: batch,
            } => {
                self.engine()
                    .metrics()
                    .rows_written(batch.num_rows() as u64);
                let schema = batch.schema();
                let stream = MemoryStream::try_new(vec![batch], schema, None)
                    .map_err(|e| to_pgwire(&Error::from(e), sql))?;
                let mut response = rows(Box::pin(stream), format, sql, client)?;
                response.set_command_tag(&command);
                Ok(Response::Query(response))
            }
        }
    }

    /// A row description plus the data rows of a batch answered whole; the rows of a reused
    /// answer are sent as they were encoded before (see [`EncodedAnswers`]).
    fn answer(
        &self,
        batch: &RecordBatch,
        reused: bool,
        format: &Format,
        sql: &str,
    ) -> PgWireResult<QueryResponse> {
        let fields = Arc::new(pg_fields(&batch.schema(), format)?);
        let encode = || -> PgWireResult<Vec<DataRow>> {
            let text = text_format::postgres_text(batch.clone(), &fields)
                .map_err(|e| to_pgwire(&Error::from(e), sql))?;
            encode_recordbatch(fields.clone(), text).collect()
        };
        let data = match reused {
            true => self.encoded.get_or_encode(batch, &fields, encode)?,
            false => Arc::new(encode()?),
        };
        let rows = (0..data.len()).map(move |i| Ok(data[i].clone()));
        Ok(QueryResponse::new(fields, stream::iter(rows)))
    }
}

/// The kind of `statement` for metrics: its data-changing verb when it has one (a query text
/// may hold several statements), else the first word of `sql`.
fn statement_kind(statement: &Statement, sql: &str) -> String {
    let verb = match statement {
        Statement::CopyFrom(_) | Statement::CopyToStdout(_) => Some("COPY"),
        Statement::DataFusion(df) => match df.as_ref() {
            DFStatement::Statement(s) => match s.as_ref() {
                SqlStatement::Query(_) => Some("SELECT"),
                SqlStatement::Insert(_) => Some("INSERT"),
                SqlStatement::Update { .. } => Some("UPDATE"),
                SqlStatement::Delete(_) => Some("DELETE"),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    };
    verb.map_or_else(|| crate::metrics::statement_kind(sql), str::to_string)
}

/// pgwire's form of a command tag (`INSERT` carries the OID 0 before its count).
fn wire_tag(tag: &CommandTag) -> Tag {
    let mut wire = Tag::new(&tag.command);
    if tag.command == "INSERT" {
        wire = wire.with_oid(0);
    }
    match tag.rows {
        Some(rows) => wire.with_rows(rows as usize),
        None => wire,
    }
}

/// The row description of `schema` in `format` (arrow-pg's, PostgreSQL's vector types named).
fn pg_fields(schema: &Schema, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    let fields = arrow_schema_to_pg_fields(schema, format, None)?;
    Ok(text_format::describe_vectors(schema, fields))
}

/// A row-description plus a stream of encoded rows; an error mid-stream keeps its SQLSTATE,
/// is logged as `client`'s and fails its block.
fn rows(
    stream: SendableRecordBatchStream,
    format: &Format,
    sql: &str,
    client: Recipient,
) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(pg_fields(&stream.schema(), format)?);
    let encoder_fields = fields.clone();
    let sql = sql.to_string();
    let data = stream.flat_map(move |batch| {
        let batch = batch
            .map_err(Error::from)
            .and_then(|b| Ok(text_format::postgres_text(b, &encoder_fields)?));
        let rows: Vec<PgWireResult<_>> = match batch {
            Ok(batch) => encode_recordbatch(encoder_fields.clone(), batch).collect(),
            Err(e) => {
                let info = error_info(&e, &sql);
                log_failure(client.addr, &info, &sql);
                client.block.failed();
                vec![Err(PgWireError::UserError(Box::new(info)))]
            }
        };
        stream::iter(rows)
    });
    Ok(QueryResponse::new(fields, data))
}

#[async_trait]
impl SimpleQueryHandler for Session {
    /// pgwire's own simple query, except that a query beginning with `ROLLBACK TO` in an
    /// aborted block starts from the in-block status: pgwire keeps the status a query began
    /// with unless a response changes it, and none says "usable again".
    async fn on_query<C>(&self, client: &mut C, query: SimpleQuery) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if Block::of(client).wire_status() == TransactionStatus::Error {
            let first = engine::parse(&query.query)
                .ok()
                .and_then(|s| s.into_iter().next());
            if let Some(BlockStatement::RollbackTo(_)) = first.as_ref().and_then(block_statement) {
                client.set_transaction_status(TransactionStatus::Transaction);
            }
        }
        self._on_query(client, query).await
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = match self.compat.statements(query) {
            Ok(statements) => statements,
            Err(e) => {
                let info = error_info(&e, query);
                log_failure(client.socket_addr(), &info, query);
                return Ok(vec![Response::Error(Box::new(info))]);
            }
        };
        let mut responses = Vec::with_capacity(statements.len());
        // Statements run one by one; the first failure ends the batch, as in Postgres.
        for statement in statements {
            if let Statement::CopyFrom(copy) = &statement
                && copy.source == CopySourceKind::Stdin
            {
                // The data follows as CopyData messages; nothing after COPY runs in this batch.
                self.apply_defaults(client);
                let stop = self.start(client, query)?;
                let begun = self.actor(client).and_then(|actor| {
                    copy::begin(&self.engine_for(client), client, copy.clone(), &actor, stop)
                });
                match begun {
                    Ok(response) => responses.push(response),
                    Err(e) => {
                        let info = error_info(&e, query);
                        log_failure(client.socket_addr(), &info, query);
                        responses.push(Response::Error(Box::new(info)));
                    }
                }
                break;
            }
            let commits = block_statement(&statement) == Some(BlockStatement::Commit);
            let result = self
                .run_statement(client, statement, &Format::UnifiedText, query)
                .await;
            // Statements later in the batch see the block this one opened or ended (pgwire
            // sets the status from the responses only once the batch is done).
            let status = client.transaction_status();
            match &result {
                Ok(Response::TransactionStart(_)) => {
                    client.set_transaction_status(status.to_in_transaction_state())
                }
                Ok(Response::TransactionEnd(_)) => {
                    client.set_transaction_status(status.to_idle_state())
                }
                _ => {}
            }
            match result {
                Ok(response) => responses.push(response),
                // A FATAL error ends the connection (pgwire closes it after sending it).
                // a COMMIT that fails ends the block: alone in its query, the connection is
                // idle after it (pgwire would call it a failed block in a list of responses)
                Err(PgWireError::UserError(info)) if commits && responses.is_empty() => {
                    log_failure(client.socket_addr(), &info, query);
                    return Err(PgWireError::UserError(info));
                }
                Err(PgWireError::UserError(info)) if info.severity != "FATAL" => {
                    log_failure(client.socket_addr(), &info, query);
                    responses.push(Response::Error(info));
                    break;
                }
                Err(other) => return Err(other),
            }
        }
        self.arm_idle_timeout(client, &responses);
        Ok(responses)
    }
}

/// A statement prepared by the extended protocol.
#[derive(Debug, Clone)]
pub struct PreparedStatement {
    sql: String,
    statement: Statement,
    /// The engine's preparation; `None` for what the session answers itself (BEGIN, SET,
    /// SHOW of a connection parameter) and for COPY to or from the client.
    prepared: Option<Prepared>,
    /// The rows' schema of a SHOW the session answers.
    show_schema: Option<SchemaRef>,
}

impl PreparedStatement {
    /// The schema of the statement's rows as Describe reports it: none when it returns no
    /// rows, or when they are known only once it runs.
    fn result_schema(&self) -> Option<&Schema> {
        let schema = match &self.prepared {
            Some(prepared) => prepared.rows_schema(),
            None => self.show_schema.as_ref(),
        };
        schema.map(|s| s.as_ref())
    }

    fn column_count(&self) -> usize {
        self.result_schema()
            .map_or(0, |schema| schema.fields().len())
    }

    fn parameter_types(&self) -> &[DataType] {
        self.prepared
            .as_ref()
            .map_or(&[], Prepared::parameter_types)
    }
}

/// Who runs the statements of `client`'s connection: the role it logged in as, or, when no
/// role existed at its first statement (a `--auth trust` server on loopback), the embedding
/// superuser. Decided once per connection.
fn actor_of<C: ClientInfo>(engine: &Engine, client: &C) -> Result<Arc<Actor>, Error> {
    if let Some(actor) = client.session_extensions().get::<Actor>() {
        return Ok(actor);
    }
    let actor = if engine.users().is_empty()? {
        Actor::Embedder
    } else {
        Actor::Role(client.metadata().get("user").cloned().unwrap_or_default())
    };
    Ok(client.session_extensions().get_or_insert_with(|| actor))
}

/// Parses and plans statements for the extended protocol.
pub struct Planner {
    engine: CurrentEngine,
    compat: Arc<ClientRewrites>,
}

impl Planner {
    async fn prepare(
        &self,
        engine: &Engine,
        sql: &str,
        actor: &Actor,
    ) -> Result<Option<PreparedStatement>, Error> {
        let mut statements = self.compat.rewrite(sql, engine::parse(sql)?);
        if statements.len() > 1 {
            return Err(Error::Syntax(
                "cannot insert multiple commands into a prepared statement".into(),
            ));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        let session = settings::session_statement(&statement);
        let block = block_statement(&statement);
        let cursor = cursor_statement(&statement);
        let sql_prepared = sql_prepare(&statement);
        let show_schema = match &session {
            Some(SessionStatement::Show(name)) => Some(Arc::new(settings::show_schema(name))),
            _ => None,
        };
        let with_client = matches!(&statement, Statement::CopyToStdout(_))
            || matches!(&statement, Statement::CopyFrom(copy) if copy.source == CopySourceKind::Stdin);
        let by_session =
            session.is_some() || block.is_some() || cursor.is_some() || sql_prepared.is_some();
        let prepared = if !by_session && !with_client {
            Some(engine.prepare_as(statement.clone(), actor).await?)
        } else {
            None
        };
        Ok(Some(PreparedStatement {
            sql: sql.to_string(),
            statement,
            prepared,
            show_schema,
        }))
    }
}

#[async_trait]
impl QueryParser for Planner {
    type Statement = PreparedStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<PreparedStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let prepared = async {
            let engine = transaction_block::engine_for(&self.engine, client);
            let actor = actor_of(&engine, client)?;
            let mut prepared = self.prepare(&engine, sql, &actor).await?;
            // a FETCH describes its rows by the cursor's columns
            if let Some(statement) = &mut prepared
                && let Some(Ok(CursorStatement::Fetch { name, .. })) =
                    cursor_statement(&statement.statement)
            {
                statement.show_schema = Cursors::of(client).schema(&name);
            }
            Ok(prepared)
        };
        let prepared = AssertUnwindSafe(prepared)
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(stop::panicked(panic.as_ref())));
        let block = Block::of(client);
        let checked = prepared.and_then(|statement| {
            let kind = statement
                .as_ref()
                .and_then(|s| block_statement(&s.statement));
            block.check(kind.as_ref())?;
            Ok(statement)
        });
        if checked.is_err() {
            block.failed();
        }
        checked.map_err(|e| to_pgwire(&e, sql))
    }

    fn get_parameter_types(&self, statement: &PreparedStatement) -> PgWireResult<Vec<Type>> {
        if asyncpg_types::is_introspection(&statement.sql) {
            return Ok(asyncpg_types::parameter_types());
        }
        statement
            .parameter_types()
            .iter()
            .map(into_pg_type)
            .collect()
    }

    fn get_result_schema(
        &self,
        statement: &PreparedStatement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.unwrap_or(&Format::UnifiedText);
        match statement.result_schema() {
            Some(schema) => pg_fields(schema, format),
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for Session {
    type Statement = PreparedStatement;
    type QueryParser = Planner;

    fn query_parser(&self) -> Arc<Planner> {
        self.planner.clone()
    }

    /// pgwire's own Sync, with the status the connection's block has: after `ROLLBACK TO`
    /// an aborted block is usable again ('T'), which pgwire's status cannot say.
    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PreparedStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.portal_store().rm_portal(DEFAULT_NAME);
        let status = Block::of(client).wire_status();
        client.set_transaction_status(status);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        client.flush().await?;
        Ok(())
    }

    /// pgwire's own Execute, its answers held until Sync (see [`HeldOutput`]).
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PreparedStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self._on_execute(&mut HeldOutput::new(client), message)
            .await
    }

    /// pgwire's own Describe, its answers held until Sync (see [`HeldOutput`]), except that a statement with parameters but no rows gets
    /// NoData after its ParameterDescription, as in Postgres. (pgwire sends an empty
    /// RowDescription, and pgJDBC then reports an update count of 0 for every INSERT of a
    /// batch.)
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PreparedStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let client = &mut HeldOutput::new(client);
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
        // a SQL cursor is a portal too (psycopg describes its named cursors so)
        if message.target_type == TARGET_TYPE_BYTE_PORTAL
            && client.portal_store().get_portal(name).is_none()
            && let Some(schema) = Cursors::of(client).schema(name)
        {
            let fields = pg_fields(&schema, &Format::UnifiedText)?;
            return send_describe_response(client, &DescribePortalResponse::new(fields)).await;
        }
        self._on_describe(client, message).await
    }

    /// pgwire's own Parse, recording the statement's name for `DEALLOCATE ALL`.
    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PreparedStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message
            .name
            .clone()
            .unwrap_or_else(|| DEFAULT_NAME.to_owned());
        let parsed = StoredStatement::parse(client, &message, self.query_parser()).await;
        if let Err(PgWireError::UserError(info)) = &parsed {
            log_failure(client.socket_addr(), info, &message.query);
            // a statement that fails at Parse never runs: it is counted as failed here
            let kind = crate::metrics::statement_kind(&message.query);
            self.engine().metrics().statement(&kind, false, 0.0);
        }
        match parsed? {
            Some(statement) => client.portal_store().put_statement(Arc::new(statement)),
            None => client.portal_store().put_empty_statement(&name),
        }
        if name != DEFAULT_NAME {
            PreparedNames::of(client).add(&name);
        }
        client
            .feed(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    /// pgwire's own Bind handling, with [`bind::check`] first.
    async fn on_bind<C>(&self, client: &mut C, mut message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PreparedStatement>,
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
                    .max(prepared.parameter_types().len());
                bind::check(&message, shown_name, parameters, prepared.column_count())?;
                bind::finite_dates(&mut message, prepared.parameter_types());
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
            .feed(PgWireBackendMessage::BindComplete(BindComplete::new()))
            .await?;
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<PreparedStatement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PreparedStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let block = Block::of(client);
        let statement = &portal.statement.statement;
        let ending = block_statement(&statement.statement);
        let response = match block.check(ending.as_ref()) {
            Ok(()) => {
                let txn = ending.is_none().then(|| block.transaction()).flatten();
                maybe_within(txn, self.execute_portal(client, portal)).await
            }
            Err(e) => Err(to_pgwire(&e, &statement.sql)),
        };
        if response.is_err() {
            block.failed();
        }
        if let Err(PgWireError::UserError(info)) = &response {
            log_failure(client.socket_addr(), info, &portal.statement.statement.sql);
        }
        self.arm_idle_timeout(client, response.as_ref().ok());
        response
    }
}

impl Session {
    /// `DEALLOCATE name` (a statement the connection prepared, by Parse or SQL `PREPARE`) or
    /// `DEALLOCATE ALL` (all of them).
    fn deallocate<C>(&self, client: &mut C, name: Option<String>) -> Result<Response, Error>
    where
        C: ClientInfo + ClientPortalStore,
        C::PortalStore: PortalStore,
    {
        let names = PreparedNames::of(client);
        let Some(name) = name else {
            for name in names.take() {
                client.portal_store().rm_statement(&name);
            }
            SqlPrepared::of(client).clear();
            return Ok(Response::Execution(Tag::new("DEALLOCATE ALL")));
        };
        if names.remove(&name) {
            client.portal_store().rm_statement(&name);
            return Ok(Response::Execution(Tag::new("DEALLOCATE")));
        }
        if SqlPrepared::of(client).remove(&name) {
            return Ok(Response::Execution(Tag::new("DEALLOCATE")));
        }
        Err(Error::UndefinedPreparedStatement(name))
    }

    /// Runs a SQL PREPARE or EXECUTE (see [`crate::server::sql_prepare`]).
    async fn run_sql_prepare<C: ClientInfo>(
        &self,
        client: &mut C,
        statement: SqlPrepare,
        format: &Format,
        sql: &str,
        stop: &Stop,
    ) -> PgWireResult<Response> {
        let error = |e: Error| to_pgwire(&e, sql);
        let actor = self.actor(client).map_err(error)?;
        let statements = SqlPrepared::of(client);
        let notices = Notices::tracing();
        match statement {
            SqlPrepare::Prepare { name, statement } => {
                let inner = Statement::DataFusion(Box::new(DFStatement::Statement(statement)));
                let prepared = self
                    .engine_for(client)
                    .prepare_as(inner, &actor)
                    .await
                    .map_err(error)?;
                statements.add(&name, prepared).map_err(error)?;
                Ok(Response::Execution(Tag::new("PREPARE")))
            }
            SqlPrepare::Execute { name, arguments } => {
                let prepared = statements.get(&name).map_err(error)?;
                let types = prepared.parameter_types();
                if arguments.len() != types.len() {
                    return Err(error(Error::WrongParameterCount(name)));
                }
                let values = self
                    .argument_values(&arguments, types, &actor, stop)
                    .await
                    .map_err(error)?;
                let engine = self.engine_for(client);
                let run = engine.execute_prepared_as(
                    &prepared,
                    ParamValues::from(values),
                    &actor,
                    &notices,
                );
                let outcome = stop.within(run).await.map_err(error)?;
                self.respond(outcome, stop, format, sql, recipient(client))
            }
        }
    }

    /// The values of EXECUTE's `arguments`, cast to the parameters' `types`.
    async fn argument_values(
        &self,
        arguments: &[Expr],
        types: &[DataType],
        actor: &Actor,
        stop: &Stop,
    ) -> Result<Vec<ScalarValue>, Error> {
        if arguments.is_empty() {
            return Ok(Vec::new());
        }
        let select = arguments
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let mut parsed = engine::parse(&format!("SELECT {select}"))?;
        let Some(query) = parsed.pop() else {
            return Err(Error::Syntax("EXECUTE needs its arguments".into()));
        };
        let notices = Notices::tracing();
        let run = async {
            let stream = self
                .engine()
                .execute_as(query, actor, &notices)
                .await?
                .into_stream()?;
            Ok::<_, Error>(stream.try_collect::<Vec<_>>().await?)
        };
        let batches = stop.within(run).await?;
        let row = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .ok_or_else(|| Error::Internal("EXECUTE arguments gave no row".into()))?;
        row.columns()
            .iter()
            .zip(types)
            .map(|(column, data_type)| {
                Ok(ScalarValue::try_from_array(column, 0)?.cast_to(data_type)?)
            })
            .collect()
    }

    /// Runs a cursor statement (see [`crate::server::cursors`]).
    async fn run_cursor<C: ClientInfo>(
        &self,
        client: &mut C,
        statement: CursorStatement,
        format: &Format,
        sql: &str,
        stop: &Stop,
    ) -> Result<Response, Error> {
        let cursors = Cursors::of(client);
        match statement {
            CursorStatement::Declare { name, query, hold } => {
                if !hold && client.transaction_status() == TransactionStatus::Idle {
                    return Err(Error::NoActiveTransaction("DECLARE CURSOR".into()));
                }
                let query = DFStatement::Statement(Box::new(SqlStatement::Query(query)));
                let actor = self.actor(client)?;
                let notices = Notices::tracing();
                let engine = self.engine_for(client);
                let run =
                    engine.execute_as(Statement::DataFusion(Box::new(query)), &actor, &notices);
                let stream = stop.within(run).await?.into_stream()?;
                cursors.declare(&name, stream, hold)?;
                Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
            }
            CursorStatement::Fetch { name, count } => {
                let batch = stop.within(cursors.fetch(&name, count)).await?;
                let schema = batch.schema();
                let stream = MemoryStream::try_new(vec![batch], schema, None)?;
                let mut response = rows(Box::pin(stream), format, sql, recipient(client))
                    .map_err(|e| Error::Internal(format!("FETCH: {e}")))?;
                response.set_command_tag("FETCH");
                Ok(Response::Query(response))
            }
            CursorStatement::Move { name, count } => {
                let skipped = stop.within(cursors.fetch(&name, count)).await?;
                Ok(Response::Execution(
                    Tag::new("MOVE").with_rows(skipped.num_rows()),
                ))
            }
            CursorStatement::Close(name) => {
                cursors.close(name.as_deref())?;
                Ok(Response::Execution(Tag::new("CLOSE CURSOR")))
            }
        }
    }

    /// Runs the statement bound in `portal` (the extended protocol's Execute).
    async fn execute_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<PreparedStatement>,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PreparedStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = &portal.statement.statement;
        let sql = statement.sql.as_str();
        let Some(prepared) = &statement.prepared else {
            if let Statement::CopyFrom(copy) = &statement.statement {
                self.apply_defaults(client);
                let stop = self.start(client, sql)?;
                return self
                    .actor(client)
                    .and_then(|actor| {
                        copy::begin(&self.engine_for(client), client, copy.clone(), &actor, stop)
                    })
                    .map_err(|e| to_pgwire(&e, sql));
            }
            // boxed: only the prepared path below should size this future (see
            // Engine::execute_prepared_as)
            let statement = statement.statement.clone();
            let format = &portal.result_column_format;
            return Box::pin(self.run_statement(client, statement, format, sql)).await;
        };
        let types: Vec<Option<&DataType>> = prepared.parameter_types().iter().map(Some).collect();
        let values = if asyncpg_types::is_introspection(sql) {
            asyncpg_types::parameters(portal)?
        } else {
            deserialize_parameters(portal, &types)?
        };
        self.apply_defaults(client);
        let started = std::time::Instant::now();
        let stop = self.start(client, sql)?;
        let actor = self.actor(client).map_err(|e| to_pgwire(&e, sql))?;
        let (notices, received) = Notices::channel();
        let engine = self.engine_for(client);
        let run = engine.execute_prepared_as(prepared, values, &actor, &notices);
        let outcome = with_notices(client, received, stop.within(run)).await?;
        let kind = crate::metrics::statement_kind(sql);
        self.count(&kind, started, outcome.is_ok());
        let outcome = outcome.map_err(|e| to_pgwire(&e, sql))?;
        self.respond(
            outcome,
            &stop,
            &portal.result_column_format,
            sql,
            recipient(client),
        )
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

/// `DISCARD ALL`: closes the connection's prepared statements and portals; refused inside a
/// transaction block, as in PostgreSQL.
fn discard_all<C>(client: &mut C) -> Result<Response, Error>
where
    C: ClientInfo + ClientPortalStore,
    C::PortalStore: PortalStore,
{
    if client.transaction_status() != TransactionStatus::Idle {
        return Err(Error::ActiveTransaction("DISCARD ALL".into()));
    }
    for name in PreparedNames::of(client).take() {
        client.portal_store().rm_statement(&name);
    }
    SqlPrepared::of(client).clear();
    Cursors::of(client).close(None)?;
    client.portal_store().clear_portals();
    Ok(Response::Execution(Tag::new("DISCARD ALL")))
}
