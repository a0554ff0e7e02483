//! The sessions a server runs and their statements: `pg_stat_activity`, and cancelling a
//! session's running statement, by the protocol's CancelRequest (pid and secret key) or by
//! `pg_cancel_backend(pid)`. A cancelled statement stops with `57014 canceling statement due
//! to user request` and the session goes on.

use crate::catalog::system_tables::{self, SystemTables};
use crate::clock::now_micros;
use crate::error::{Error, Result};
use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanBuilder, Int32Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use tokio_util::sync::CancellationToken;

/// The sessions of a server, by process id.
#[derive(Debug, Default)]
pub struct Activity {
    sessions: Mutex<BTreeMap<i32, Backend>>,
}

/// What `pg_stat_activity` shows of a session, and how to stop its statement.
#[derive(Debug)]
struct Backend {
    secret: Vec<u8>,
    role: String,
    client_addr: String,
    application_name: String,
    backend_start: i64,
    query: String,
    query_start: Option<i64>,
    running: bool,
    /// Counts the session's statements, so that the end of one does not end the next.
    statement: u64,
    /// When its last statement ended (or it connected).
    idle_since: std::time::Instant,
    cancel: CancellationToken,
    end: CancellationToken,
}

/// A session's place in [`Activity`]: dropping it (when the connection ends) removes it.
#[derive(Debug)]
pub struct Connected {
    activity: Weak<Activity>,
    pid: i32,
}

impl Drop for Connected {
    fn drop(&mut self) {
        if let Some(activity) = self.activity.upgrade() {
            activity.lock().remove(&self.pid);
        }
    }
}

/// A running statement (see [`Activity::begin`]); dropping it marks the session idle.
#[derive(Debug)]
pub struct Running {
    activity: Weak<Activity>,
    pid: i32,
    statement: u64,
    cancel: CancellationToken,
}

impl Running {
    /// Fired when the statement is cancelled.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(activity) = self.activity.upgrade()
            && let Some(backend) = activity.lock().get_mut(&self.pid)
            && backend.statement == self.statement
        {
            backend.running = false;
            backend.idle_since = std::time::Instant::now();
        }
    }
}

/// Who connected, as `pg_stat_activity` shows it.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The backend process id sent in BackendKeyData.
    pub pid: i32,
    /// The secret key sent with it.
    pub secret: Vec<u8>,
    /// The role logged in.
    pub role: String,
    /// The client's address.
    pub client_addr: String,
    /// The client's `application_name`.
    pub application_name: String,
    /// Fired to end the connection (see [`Activity::end_when_idle`]).
    pub end: CancellationToken,
}

impl Activity {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, Backend>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a session; it is forgotten when the result is dropped.
    pub fn connect(self: &Arc<Self>, connection: Connection) -> Connected {
        self.lock().insert(
            connection.pid,
            Backend {
                secret: connection.secret,
                role: connection.role,
                client_addr: connection.client_addr,
                application_name: connection.application_name,
                backend_start: now_micros(),
                query: String::new(),
                query_start: None,
                running: false,
                statement: 0,
                idle_since: std::time::Instant::now(),
                cancel: CancellationToken::new(),
                end: connection.end,
            },
        );
        Connected {
            activity: Arc::downgrade(self),
            pid: connection.pid,
        }
    }

    /// Session `pid` starts running `query`; it runs until the result is dropped, and a
    /// cancel of it fires the result's token.
    pub fn begin(self: &Arc<Self>, pid: i32, query: &str) -> Running {
        let mut sessions = self.lock();
        let Some(backend) = sessions.get_mut(&pid) else {
            return Running {
                activity: Weak::new(),
                pid,
                statement: 0,
                cancel: CancellationToken::new(),
            };
        };
        backend.query = query.to_string();
        backend.query_start = Some(now_micros());
        backend.running = true;
        backend.statement += 1;
        backend.cancel = CancellationToken::new();
        Running {
            activity: Arc::downgrade(self),
            pid,
            statement: backend.statement,
            cancel: backend.cancel.clone(),
        }
    }

    /// Cancels the running statement of session `pid`, when `secret` (if given, as in a
    /// CancelRequest) is its key; whether the session exists.
    pub fn cancel(&self, pid: i32, secret: Option<&[u8]>) -> bool {
        let sessions = self.lock();
        match sessions.get(&pid) {
            Some(backend) if secret.is_none_or(|s| same_secret(s, &backend.secret)) => {
                if backend.running {
                    backend.cancel.cancel();
                }
                true
            }
            _ => false,
        }
    }

    /// PostgreSQL's `idle_in_transaction_session_timeout`, armed after a statement that leaves
    /// session `pid` in a transaction block: once the session has run nothing for `limit`
    /// after that statement ends, its connection's `end` token fires, unless it starts another
    /// statement first.
    pub fn end_when_idle(self: &Arc<Self>, pid: i32, limit: std::time::Duration) {
        let Some(armed_at) = self.lock().get(&pid).map(|b| b.statement) else {
            return;
        };
        let activity = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut wait = limit;
            loop {
                tokio::time::sleep(wait).await;
                let Some(activity) = activity.upgrade() else {
                    return;
                };
                let sessions = activity.lock();
                let backend = match sessions.get(&pid) {
                    Some(backend) if backend.statement == armed_at => backend,
                    _ => return,
                };
                let idle = match backend.running {
                    true => std::time::Duration::ZERO,
                    false => backend.idle_since.elapsed(),
                };
                if idle >= limit {
                    backend.end.cancel();
                    return;
                }
                wait = limit - idle;
            }
        });
    }

    /// How many sessions are connected.
    pub fn sessions(&self) -> usize {
        self.lock().len()
    }

    /// The role of the session `pid`, if it is connected.
    pub fn role_of(&self, pid: i32) -> Option<String> {
        self.lock().get(&pid).map(|b| b.role.clone())
    }

    fn rows(&self) -> Result<RecordBatch> {
        let sessions = self.lock();
        let backends: Vec<(&i32, &Backend)> = sessions.iter().collect();
        let text = |f: &dyn Fn(&Backend) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(
                backends.iter().map(|(_, b)| f(b)),
            ))
        };
        let time = |values: Vec<Option<i64>>| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(values))
        };
        let fields = vec![
            Field::new("datname", DataType::Utf8, false),
            Field::new("pid", DataType::Int32, false),
            Field::new("usename", DataType::Utf8, false),
            Field::new("application_name", DataType::Utf8, false),
            Field::new("client_addr", DataType::Utf8, false),
            Field::new("backend_start", system_tables::timestamp_type(), true),
            Field::new("query_start", system_tables::timestamp_type(), true),
            Field::new("state", DataType::Utf8, false),
            Field::new("query", DataType::Utf8, false),
        ];
        let columns = vec![
            text(&|_| crate::sql::names::CATALOG.to_string()),
            Arc::new(Int32Array::from_iter_values(
                backends.iter().map(|(p, _)| **p),
            )) as ArrayRef,
            text(&|b| b.role.clone()),
            text(&|b| b.application_name.clone()),
            text(&|b| b.client_addr.clone()),
            time(
                backends
                    .iter()
                    .map(|(_, b)| Some(b.backend_start))
                    .collect(),
            ),
            time(backends.iter().map(|(_, b)| b.query_start).collect()),
            text(&|b| if b.running { "active" } else { "idle" }.to_string()),
            text(&|b| b.query.clone()),
        ];
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }
}

impl SystemTables for Activity {
    fn names(&self) -> &'static [&'static str] {
        &["pg_stat_activity"]
    }

    fn rows(&self, name: &str) -> Option<Result<RecordBatch>> {
        (name == "pg_stat_activity").then(|| Activity::rows(self))
    }
}

/// Compares keys in time that does not depend on where they differ.
fn same_secret(given: &[u8], stored: &[u8]) -> bool {
    given.len() == stored.len()
        && given
            .iter()
            .zip(stored)
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
}

/// `pg_cancel_backend(pid)`: cancels that session's running statement; false when there is
/// no such session. Who may cancel whom is checked before the statement runs
/// (`engine::access`).
#[derive(Debug)]
pub struct CancelBackend {
    activity: Arc<Activity>,
    signature: Signature,
}

impl CancelBackend {
    /// The function over `activity`.
    pub fn new(activity: Arc<Activity>) -> Self {
        CancelBackend {
            activity,
            signature: Signature::uniform(1, vec![DataType::Int64], Volatility::Volatile),
        }
    }
}

impl PartialEq for CancelBackend {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.activity, &other.activity)
    }
}
impl Eq for CancelBackend {}
impl std::hash::Hash for CancelBackend {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "pg_cancel_backend".hash(state)
    }
}

impl ScalarUDFImpl for CancelBackend {
    fn name(&self) -> &str {
        "pg_cancel_backend"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let rows = args.number_rows;
        let Some(pids) = args.args.first() else {
            return Err(Error::InvalidParameter("pg_cancel_backend(pid)".into()).into_datafusion());
        };
        let pids = pids.to_array(rows)?;
        let pids = datafusion::arrow::compute::cast(&pids, &DataType::Int64)?;
        let pids = pids.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let mut out = BooleanBuilder::with_capacity(rows);
        for pid in pids.iter() {
            let cancelled =
                pid.map(|pid| i32::try_from(pid).is_ok_and(|pid| self.activity.cancel(pid, None)));
            out.append_option(cancelled);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
