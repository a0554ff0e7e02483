//! The statements of a transaction block, answered from the connection's state as PostgreSQL
//! answers them: `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `RELEASE [SAVEPOINT]` and
//! `ROLLBACK TO [SAVEPOINT]`, and `DEALLOCATE` / `DISCARD ALL` of the connection's prepared
//! statements. Writes are not transactional yet (each statement commits on its own, see
//! docs/server.md), so savepoints are names kept in order: drivers that wrap work in nested
//! transactions (psycopg's `conn.transaction()`, SQLAlchemy's `begin_nested()`) get the answers
//! and errors PostgreSQL gives, without a rollback undoing writes.

use crate::engine::Statement;
use crate::error::{Error, Result};
use datafusion::sql::sqlparser::ast::{DiscardObject, Statement as SqlStatement};
use pgwire::api::ClientInfo;
use pgwire::api::results::{Response, Tag};
use pgwire::messages::response::TransactionStatus;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// A statement this module answers.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockStatement {
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT` / `END`.
    Commit,
    /// `ROLLBACK` / `ABORT`.
    Rollback,
    /// `SAVEPOINT name`.
    Savepoint(String),
    /// `RELEASE [SAVEPOINT] name`.
    Release(String),
    /// `ROLLBACK TO [SAVEPOINT] name`.
    RollbackTo(String),
    /// `DEALLOCATE [PREPARE] name`, or `ALL` (`None`).
    Deallocate(Option<String>),
    /// `DISCARD ALL`.
    DiscardAll,
}

/// Recognises a transaction-block statement.
pub fn block_statement(statement: &Statement) -> Option<BlockStatement> {
    let sql = statement.sql()?;
    Some(match sql {
        SqlStatement::StartTransaction { .. } => BlockStatement::Begin,
        SqlStatement::Commit { .. } => BlockStatement::Commit,
        SqlStatement::Rollback {
            savepoint: Some(name),
            ..
        } => BlockStatement::RollbackTo(name.value.clone()),
        SqlStatement::Rollback { .. } => BlockStatement::Rollback,
        SqlStatement::Savepoint { name } => BlockStatement::Savepoint(name.value.clone()),
        SqlStatement::ReleaseSavepoint { name } => BlockStatement::Release(name.value.clone()),
        SqlStatement::Deallocate { name, .. } => BlockStatement::Deallocate(
            (!(name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all")))
                .then(|| name.value.clone()),
        ),
        SqlStatement::Discard {
            object_type: DiscardObject::ALL,
        } => BlockStatement::DiscardAll,
        _ => return None,
    })
}

/// The savepoints of a connection's open transaction block, oldest first.
#[derive(Default)]
struct Savepoints(Mutex<Vec<String>>);

/// The names of the statements a connection prepared (Parse messages and SQL `PREPARE`),
/// which `DEALLOCATE ALL` and `DISCARD ALL` close.
#[derive(Default)]
pub struct PreparedNames(Mutex<BTreeSet<String>>);

impl PreparedNames {
    /// `client`'s names.
    pub fn of<C: ClientInfo>(client: &C) -> Arc<PreparedNames> {
        client
            .session_extensions()
            .get_or_insert_with(PreparedNames::default)
    }

    /// Records that statement `name` was prepared.
    pub fn add(&self, name: &str) {
        lock(&self.0).insert(name.to_string());
    }

    /// Forgets statement `name`; whether it was there.
    pub fn remove(&self, name: &str) -> bool {
        lock(&self.0).remove(name)
    }

    /// Forgets every statement; their names.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.0)).into_iter().collect()
    }
}

/// Answers `statement` (not `Deallocate` or `DiscardAll`, which need the connection's
/// statements) for `client`.
pub fn run<C: ClientInfo>(client: &C, statement: BlockStatement) -> Result<Response> {
    let in_block = client.transaction_status() != TransactionStatus::Idle;
    let savepoints = client
        .session_extensions()
        .get_or_insert_with(Savepoints::default);
    let mut names = lock(&savepoints.0);
    let execution = |tag: &str| Ok(Response::Execution(Tag::new(tag)));
    let rollback = matches!(statement, BlockStatement::Rollback);
    let releasing = matches!(statement, BlockStatement::Release(_));
    match statement {
        BlockStatement::Begin => {
            names.clear();
            Ok(Response::TransactionStart(Tag::new("BEGIN")))
        }
        BlockStatement::Commit | BlockStatement::Rollback => {
            names.clear();
            // PostgreSQL ends a failed block with ROLLBACK whatever was asked
            let failed = client.transaction_status() == TransactionStatus::Error;
            let tag = if rollback || failed {
                "ROLLBACK"
            } else {
                "COMMIT"
            };
            Ok(Response::TransactionEnd(Tag::new(tag)))
        }
        BlockStatement::Savepoint(name) => {
            if !in_block {
                return Err(Error::NoActiveTransaction("SAVEPOINT".into()));
            }
            names.push(name);
            execution("SAVEPOINT")
        }
        BlockStatement::Release(name) | BlockStatement::RollbackTo(name) => {
            let what = match releasing {
                true => "RELEASE SAVEPOINT",
                false => "ROLLBACK TO SAVEPOINT",
            };
            if !in_block {
                return Err(Error::NoActiveTransaction(what.into()));
            }
            // the newest savepoint of that name; later ones go, and RELEASE takes it too
            let at = names
                .iter()
                .rposition(|n| *n == name)
                .ok_or(Error::UndefinedSavepoint(name))?;
            names.truncate(if releasing { at } else { at + 1 });
            execution(match releasing {
                true => "RELEASE",
                false => "ROLLBACK",
            })
        }
        BlockStatement::Deallocate(_) | BlockStatement::DiscardAll => Err(Error::Internal(
            "DEALLOCATE and DISCARD are answered by the session".into(),
        )),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
