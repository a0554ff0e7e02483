//! The Postgres wire-protocol server (`tastedb serve`): pgwire on tokio, one task per
//! connection, every statement run by the shared [`Engine`].

mod asyncpg_types;
mod bind;
mod column_names;
mod compat;
mod copy;
mod cursors;
mod encoded_answers;
mod ending;
mod errors;
mod held_output;
mod psql_describe;
mod scram;
mod session;
mod set_returning;
mod settings;
mod sql_prepare;
mod stop;
mod text_format;
mod timeout;
mod tls;
mod transaction_block;

use crate::engine::{Activity, Connection, CurrentEngine, depth};
use crate::error::{Error, Result};
use crate::roles::Users;
use async_trait::async_trait;
use ending::Ending;
use futures::Sink;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::{DefaultServerParameterProvider, StartupHandler};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::{
    ClientInfo, PgWireConnectionState, PgWireServerHandlers, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::TlsAcceptor;
use session::{Session, fatal};
use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
pub use tls::acceptor as tls_acceptor;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// SCRAM-SHA-256 against the users stored in the data directory (the default).
    Scram,
    /// No authentication; refused on a listener that is not loopback.
    Trust,
}

/// Settings of a server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Authentication.
    pub auth: AuthMode,
    /// Connections served at once; one more is refused with 53300.
    pub max_connections: usize,
    /// PEM certificate chain and private key; TLS is offered when set.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Refuse clients that do not use TLS (needs `tls`).
    pub tls_required: bool,
    /// The `statement_timeout` of every session until it sets its own (PostgreSQL's forms:
    /// `0` for none, milliseconds, or `2s`, `1min`, …).
    pub statement_timeout: String,
    /// A checkpoint directory or object-store URL and an interval: a checkpoint of the data
    /// directory is added to it at that interval while the server runs, for read replicas to
    /// follow.
    pub checkpoints: Option<(crate::backups::CheckpointPlace, std::time::Duration)>,
    /// Checkpoints followed and an interval: a read replica looks at that interval and moves
    /// to the newest checkpoint when there is a newer one than it serves, keeping its
    /// connections (`backups::follow`).
    pub follow: Option<(crate::backups::Followed, std::time::Duration)>,
}

/// A bound, not yet running server.
pub struct Server {
    engine: CurrentEngine,
    listener: TcpListener,
    options: ServeOptions,
    tls: Option<TlsAcceptor>,
}

impl Server {
    /// Binds the listener to serve `engine` (an [`Engine`](crate::Engine), or the
    /// [`CurrentEngine`] an HTTP server shares). Refuses trust authentication on a non-loopback
    /// address, and SCRAM when no user exists yet.
    pub async fn bind(engine: impl Into<CurrentEngine>, options: ServeOptions) -> Result<Server> {
        let engine = engine.into();
        if options.auth == AuthMode::Trust && !options.listen.ip().is_loopback() {
            return Err(Error::InvalidParameter(format!(
                "--auth trust is only allowed on a loopback address, not {}",
                options.listen
            )));
        }
        if options.auth == AuthMode::Scram && engine.get().users().is_empty()? {
            return Err(Error::InvalidParameter(
                "no user exists yet: start once with --password (or TASTEDB_PASSWORD) to create \
                 the admin user, or use --auth trust on a loopback address"
                    .into(),
            ));
        }
        timeout::parse(&options.statement_timeout)?;
        if options.tls_required && options.tls.is_none() {
            return Err(Error::InvalidParameter(
                "--tls-required needs --tls-cert and --tls-key".into(),
            ));
        }
        let tls = match &options.tls {
            Some((cert, key)) => Some(tls::acceptor(cert, key, b"postgresql")?),
            None => None,
        };
        let listener = listen(options.listen).await?;
        Ok(Server {
            engine,
            listener,
            options,
            tls,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves connections, and runs the models' retraining policies, until `shutdown`
    /// completes; then stops accepting and returns. Every statement that returned to its
    /// client is durable (see `docs/durability.md`).
    ///
    /// Connections are served on a runtime of the server's own, whose threads have the stack
    /// that statements nested up to `engine::depth::MAX_DEPTH` need, whatever runtime the
    /// caller runs.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        self.run_with(shutdown, Vec::new()).await
    }

    /// Like [`Server::run`], with `alongside` (e.g. the HTTP server) running on the same
    /// runtime: each must end by itself once `shutdown` has completed (it is waited for, up to
    /// 30 s), and an error of one ends the server.
    pub async fn run_with(
        self,
        shutdown: impl Future<Output = ()>,
        alongside: Vec<Alongside>,
    ) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("tastedb-session")
            .thread_stack_size(depth::STATEMENT_STACK_BYTES)
            .enable_all()
            .build()?;
        let sessions = runtime.handle().clone();
        let _runtime = SessionRuntime(Some(runtime));
        let engine = self.engine.get();
        // Models retrain on their policies while the server runs (the runtime ends them).
        if !engine.is_read_only() {
            sessions.spawn(crate::models::run_policies(engine.clone()));
        }
        if let Some((place, every)) = self.options.checkpoints.clone() {
            sessions.spawn(crate::backups::checkpoint_every(
                engine.clone(),
                place,
                every,
            ));
        }
        if let Some((followed, every)) = self.options.follow.clone() {
            let current = self.engine.clone();
            sessions.spawn(crate::backups::follow(current, followed, every));
        }
        // Active model versions load in the background, so the first requests find them.
        sessions.spawn(crate::models::warm(engine.clone()));
        let shared = Arc::new(Shared {
            engine: self.engine.clone(),
            session: Session::new(self.engine.clone(), &self.options.statement_timeout),
            // the same for every engine that replaces this one (`Engine::open_replacement`)
            activity: engine.activity().clone(),
            pids: Arc::new(RandomPidSecretKeyGenerator::default()),
            impostor_key: Arc::new(rand::random()),
            auth: self.options.auth,
            tls_required: self.options.tls_required,
        });
        let listener = self.listener.into_std()?;
        let accepting = sessions.spawn(accept(
            listener,
            shared,
            self.tls,
            self.options.max_connections,
        ));
        let mut others: futures::stream::FuturesUnordered<_> = alongside
            .into_iter()
            .map(|task| sessions.spawn(task))
            .collect();
        let failed = async {
            use futures::StreamExt;
            while let Some(ended) = others.next().await {
                match ended {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return e,
                    Err(e) => return Error::Internal(format!("server task stopped: {e}")),
                }
            }
            std::future::pending().await
        };
        let result = tokio::select! {
            _ = shutdown => Ok(()),
            ended = accepting => ended.map_err(|e| Error::Internal(format!("server stopped: {e}")))?,
            error = failed => Err(error),
        };
        let _ = tokio::time::timeout(STOP_WAIT, async {
            use futures::StreamExt;
            while others.next().await.is_some() {}
        })
        .await;
        // the answers served until now keep their impressions
        let engine = self.engine.get();
        let flushed = sessions.spawn(async move { engine.impressions().flush().await });
        if let Ok(Err(e)) = flushed.await {
            tracing::warn!("impressions pending at shutdown were not written: {e}");
        }
        result
    }
}

/// A task that runs with the wire server ([`Server::run_with`]).
pub type Alongside = std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send + 'static>>;

/// A listener on `addr`, or an error that names it (the HTTP server binds with it too).
pub async fn listen(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr}: {e}"),
        ))
    })
}

/// How long a stopping server waits for the work of statements still running (which their
/// dropped sessions have told to stop) before it leaves them behind.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The runtime connections are served on. When the server stops it is shut down and waited
/// for, so that every session (and the engine it holds) is gone when `Server::run` returns or
/// is dropped: a RocksDB database closed by a leftover thread while the process exits aborts
/// it ("pthread lock: Invalid argument", facebook/rocksdb#11349).
struct SessionRuntime(Option<tokio::runtime::Runtime>);

impl Drop for SessionRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            // A runtime may not be shut down with waiting from inside another runtime's
            // context, which is where this drop usually runs; a thread of its own has none.
            let stopping = std::thread::spawn(move || runtime.shutdown_timeout(STOP_WAIT));
            if stopping.join().is_err() {
                tracing::warn!("the session runtime panicked while stopping");
            }
        }
    }
}

/// Accepts connections on `listener` and serves each in a task of its own; a panic or error
/// ends that connection only.
async fn accept(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    max_connections: usize,
) -> Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let slot = slots.clone().try_acquire_owned().ok();
        let ending = Ending::new(&socket);
        let handlers = ConnectionHandlers {
            shared: shared.clone(),
            over_limit: slot.is_none(),
            ending: ending.clone(),
        };
        let tls = tls.clone();
        tokio::spawn(crate::engine::session_values::within_session(async move {
            tokio::select! {
                served = pgwire::tokio::process_socket(socket, tls, handlers) => {
                    if let Err(e) = served {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                () = ending.fired() => ending.goodbye().await,
            }
            drop(slot);
        }));
    }
}

struct Shared {
    /// What connections serve; its users are the logins of a connection starting now.
    engine: CurrentEngine,
    session: Session,
    activity: Arc<Activity>,
    /// Process ids and secret keys for every connection, so that a CancelRequest names one.
    pids: Arc<RandomPidSecretKeyGenerator>,
    /// Makes the SCRAM salts of roles that do not exist, stable while the server runs.
    impostor_key: Arc<[u8; 32]>,
    auth: AuthMode,
    tls_required: bool,
}

/// The handlers of one connection (pgwire asks for them once per connection).
struct ConnectionHandlers {
    shared: Arc<Shared>,
    over_limit: bool,
    ending: Arc<Ending>,
}

impl PgWireServerHandlers for ConnectionHandlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        Arc::new(self.shared.session.clone())
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        Arc::new(self.shared.session.clone())
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        Arc::new(copy::CopyIn::new(self.shared.engine.clone()))
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        let parameters = Arc::new(server_parameters());
        let users = self.shared.engine.get().users().clone();
        // SCRAM keeps the state of one login, so every connection gets its own handler.
        let scram = scram::ScramLogin::new(
            users.clone(),
            parameters,
            self.shared.pids.clone(),
            self.shared.impostor_key.clone(),
        );
        Arc::new(Startup {
            users,
            activity: self.shared.activity.clone(),
            ending: self.ending.clone(),
            over_limit: self.over_limit,
            tls_required: self.shared.tls_required,
            auth: self.shared.auth,
            scram,
            trust: TrustStartup(self.shared.pids.clone()),
        })
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(Cancel(self.shared.activity.clone()))
    }
}

/// Answers the protocol's CancelRequest: cancels the statement that the named session is
/// running, when the secret key matches (otherwise nothing happens, as in PostgreSQL).
struct Cancel(Arc<Activity>);

#[async_trait]
impl CancelHandler for Cancel {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let matched = self
            .0
            .cancel(request.pid, Some(&request.secret_key.to_bytes()));
        tracing::debug!(pid = request.pid, matched, "cancel request");
    }
}

fn server_parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = format!("16.6 (TasteDB {})", env!("CARGO_PKG_VERSION"));
    parameters
}

/// Checks the connection limit, then authenticates as the server is configured to.
struct Startup {
    users: Users,
    activity: Arc<Activity>,
    ending: Arc<Ending>,
    over_limit: bool,
    tls_required: bool,
    auth: AuthMode,
    scram: scram::ScramLogin,
    trust: TrustStartup,
}

/// Trust authentication: pgwire's no-op startup, with the server's process ids.
struct TrustStartup(Arc<RandomPidSecretKeyGenerator>);

impl Startup {
    /// Under `--auth trust` a client logs in as the role it names, which must exist and may
    /// log in; before any role exists, any name logs in as the superuser (loopback only).
    fn check_trusted_login(&self, name: &str) -> PgWireResult<()> {
        let refused = |e: Error| fatal(e.sqlstate(), &e.to_string());
        if self.users.is_empty().map_err(refused)? {
            return Ok(());
        }
        match self.users.get(name).map_err(refused)? {
            Some(role) if role.attributes.login => Ok(()),
            Some(_) => Err(fatal(
                "28000",
                &format!("role \"{name}\" is not permitted to log in"),
            )),
            None => Err(fatal("28000", &format!("role \"{name}\" does not exist"))),
        }
    }
}

impl NoopStartupHandler for TrustStartup {
    fn pid_secret_key_generator(&self) -> &dyn PidSecretKeyGenerator {
        self.0.as_ref()
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if matches!(message, PgWireFrontendMessage::Startup(_)) {
            if self.over_limit {
                return Err(fatal("53300", "sorry, too many clients already"));
            }
            if self.tls_required && !client.is_secure() {
                return Err(fatal(
                    "28000",
                    "this server requires TLS: connect with sslmode=require",
                ));
            }
        }
        match self.auth {
            AuthMode::Scram => self.scram.on_startup(client, message).await?,
            AuthMode::Trust => {
                if let PgWireFrontendMessage::Startup(startup) = &message {
                    let name = startup.parameters.get("user").cloned().unwrap_or_default();
                    self.check_trusted_login(&name)?;
                }
                self.trust.on_startup(client, message).await?
            }
        }
        if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            self.register(client);
        }
        Ok(())
    }
}

impl Startup {
    /// A logged-in connection joins `pg_stat_activity` (and can be cancelled) until it ends.
    fn register<C: ClientInfo>(&self, client: &C) {
        let (pid, secret) = client.pid_and_secret_key();
        let metadata = client.metadata();
        let text = |key: &str| metadata.get(key).cloned().unwrap_or_default();
        let connected = self.activity.connect(Connection {
            pid,
            secret: secret.to_bytes().to_vec(),
            role: text("user"),
            client_addr: client.socket_addr().ip().to_string(),
            application_name: text("application_name"),
            end: self.ending.token(client.is_secure()),
        });
        client.session_extensions().insert(connected);
    }
}
