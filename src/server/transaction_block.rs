//! The statements of a transaction block, answered as PostgreSQL answers them: `BEGIN` opens
//! the connection's [`Block`] (an engine transaction, `docs/transactions.md`), `COMMIT` commits
//! it (40001 when a concurrent commit wrote the same rows), `ROLLBACK` discards it,
//! `SAVEPOINT`, `RELEASE [SAVEPOINT]` and `ROLLBACK TO [SAVEPOINT]` mark and undo parts of it;
//! after a failed statement the block refuses everything but those with 25P02. Also
//! `DEALLOCATE` / `DISCARD ALL` of the connection's prepared statements.

use crate::engine::{CurrentEngine, Engine, Statement};
use crate::error::{Error, Result};
use crate::storage::{Isolation, Transaction};
use datafusion::sql::sqlparser::ast::{
    DiscardObject, Set, Statement as SqlStatement, TransactionMode,
};
use pgwire::api::ClientInfo;
use pgwire::api::results::{Response, Tag};
use pgwire::messages::response::TransactionStatus;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// A statement this module answers.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockStatement {
    /// `BEGIN` / `START TRANSACTION` [`ISOLATION LEVEL …`].
    Begin(Option<Isolation>),
    /// `SET TRANSACTION ISOLATION LEVEL …` (not `SET SESSION CHARACTERISTICS`).
    SetTransaction(Isolation),
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
        SqlStatement::StartTransaction { modes, .. } => BlockStatement::Begin(isolation(modes)),
        SqlStatement::Set(Set::SetTransaction {
            modes,
            session: false,
            snapshot: None,
        }) => BlockStatement::SetTransaction(isolation(modes)?),
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

/// The isolation level among transaction `modes`; SERIALIZABLE runs as REPEATABLE READ
/// (see [`Isolation::named`]).
fn isolation(modes: &[TransactionMode]) -> Option<Isolation> {
    modes.iter().find_map(|mode| match mode {
        TransactionMode::IsolationLevel(level) => Isolation::named(&level.to_string()),
        TransactionMode::AccessMode(_) => None,
    })
}

/// The level a block of `client` runs at unless its BEGIN names one: the connection's
/// `default_transaction_isolation`, REPEATABLE READ when it has none.
pub fn default_isolation<C: ClientInfo>(client: &C) -> Isolation {
    (client.metadata().get("default_transaction_isolation"))
        .and_then(|level| Isolation::named(level))
        .unwrap_or_default()
}

/// The level `SHOW transaction_isolation` answers for `client`: its open block's, or the one
/// its next block would run at.
pub fn isolation_of<C: ClientInfo>(client: &C) -> Isolation {
    (Block::of(client).isolation()).unwrap_or_else(|| default_isolation(client))
}

/// The engine a statement of `client` starting now runs on: its open block's, or `current`'s.
pub fn engine_for<C: ClientInfo>(current: &CurrentEngine, client: &C) -> Engine {
    Block::of(client).engine().unwrap_or_else(|| current.get())
}

/// A connection's open transaction block, if any.
#[derive(Default)]
pub struct Block(Mutex<BlockState>);

#[derive(Default)]
struct BlockState {
    txn: Option<Open>,
    /// A statement failed: only COMMIT, ROLLBACK and ROLLBACK TO run until the block ends.
    failed: bool,
}

/// An open block's transaction: begun at the block's first statement, not at BEGIN, so its
/// snapshot is as late as it can be (PostgreSQL's `REPEATABLE READ` takes its snapshot there
/// too); a block that runs nothing has none. Either way the block keeps the engine current at
/// its BEGIN: a read replica that moves to a newer checkpoint meanwhile runs the block's
/// statements on the one it began on.
enum Open {
    /// BEGIN ran; no statement of the block yet.
    Waiting(Engine, Isolation),
    /// The block's transaction.
    Begun(Engine, Arc<Transaction>),
}

impl BlockState {
    /// The open block's transaction, begun now if no statement of the block ran yet.
    fn begun(&mut self) -> Option<Arc<Transaction>> {
        let (engine, txn) = match self.txn.as_ref()? {
            Open::Begun(_, txn) => return Some(txn.clone()),
            Open::Waiting(engine, isolation) => (engine.clone(), engine.begin_at(*isolation)),
        };
        self.txn = Some(Open::Begun(engine, txn.clone()));
        Some(txn)
    }
}

impl Block {
    /// `client`'s block.
    pub fn of<C: ClientInfo>(client: &C) -> Arc<Block> {
        client
            .session_extensions()
            .get_or_insert_with(Block::default)
    }

    /// The engine the open block runs on, if one is open.
    pub fn engine(&self) -> Option<Engine> {
        match lock(&self.0).txn.as_ref()? {
            Open::Waiting(engine, _) | Open::Begun(engine, _) => Some(engine.clone()),
        }
    }

    /// The transaction of the open block (begun by the first statement that asks).
    pub fn transaction(&self) -> Option<Arc<Transaction>> {
        lock(&self.0).begun()
    }

    /// The isolation level of the open block.
    pub fn isolation(&self) -> Option<Isolation> {
        match lock(&self.0).txn.as_ref()? {
            Open::Waiting(_, isolation) => Some(*isolation),
            Open::Begun(_, txn) => Some(txn.isolation()),
        }
    }

    /// The status ReadyForQuery reports for this block: idle, in a block, or in an aborted
    /// one (pgwire cannot leave the aborted state by itself, as ROLLBACK TO does).
    pub fn wire_status(&self) -> TransactionStatus {
        let state = lock(&self.0);
        match (&state.txn, state.failed) {
            (None, _) => TransactionStatus::Idle,
            (Some(_), true) => TransactionStatus::Error,
            (Some(_), false) => TransactionStatus::Transaction,
        }
    }

    /// A statement failed: an open block is aborted.
    pub fn failed(&self) {
        let mut state = lock(&self.0);
        state.failed = state.txn.is_some();
    }

    /// 25P02 when the block is aborted and `statement` does not end it or go back to a
    /// savepoint.
    pub fn check(&self, statement: Option<&BlockStatement>) -> Result<()> {
        let ends = matches!(
            statement,
            Some(BlockStatement::Commit | BlockStatement::Rollback | BlockStatement::RollbackTo(_))
        );
        if lock(&self.0).failed && !ends {
            return Err(Error::InFailedTransaction);
        }
        Ok(())
    }
}

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
/// statements) for `client`; `engine` begins the transactions.
pub async fn run<C: ClientInfo>(
    client: &mut C,
    engine: &Engine,
    statement: BlockStatement,
) -> Result<Response> {
    let block = Block::of(client);
    if statement == BlockStatement::Commit {
        let ended = std::mem::take(&mut *lock(&block.0));
        return commit(client, ended).await;
    }
    let mut state = lock(&block.0);
    let execution = |tag: &str| Ok(Response::Execution(Tag::new(tag)));
    let in_block = |state: &mut BlockState, what: &str| {
        state
            .begun()
            .ok_or_else(|| Error::NoActiveTransaction(what.into()))
    };
    match statement {
        BlockStatement::Begin(isolation) => {
            if state.txn.is_none() {
                let isolation = isolation.unwrap_or_else(|| default_isolation(client));
                state.txn = Some(Open::Waiting(engine.clone(), isolation));
                state.failed = false;
            }
            Ok(Response::TransactionStart(Tag::new("BEGIN")))
        }
        BlockStatement::SetTransaction(isolation) => {
            match &mut state.txn {
                Some(Open::Waiting(_, level)) => *level = isolation,
                Some(Open::Begun(_, txn)) if txn.isolation() != isolation => {
                    return Err(Error::IsolationAfterQuery);
                }
                // outside a block PostgreSQL warns and changes nothing
                _ => {}
            }
            execution("SET")
        }
        BlockStatement::Rollback => {
            if let Some(Open::Begun(_, txn)) = &state.txn {
                txn.release_locks();
            }
            *state = BlockState::default();
            Ok(Response::TransactionEnd(Tag::new("ROLLBACK")))
        }
        BlockStatement::Savepoint(name) => {
            in_block(&mut state, "SAVEPOINT")?.savepoint(&name);
            execution("SAVEPOINT")
        }
        BlockStatement::Release(name) => {
            in_block(&mut state, "RELEASE SAVEPOINT")?.release(&name)?;
            execution("RELEASE")
        }
        BlockStatement::RollbackTo(name) => {
            in_block(&mut state, "ROLLBACK TO SAVEPOINT")?.rollback_to(&name)?;
            state.failed = false;
            execution("ROLLBACK")
        }
        BlockStatement::Commit | BlockStatement::Deallocate(_) | BlockStatement::DiscardAll => {
            Err(Error::Internal(
                "COMMIT is answered above, DEALLOCATE and DISCARD by the session".into(),
            ))
        }
    }
}

/// Commits the block that `COMMIT` ended. The synced write runs on a blocking thread, so the
/// connection's runtime thread serves other connections while the WAL is synced (a COMMIT
/// waiting in RocksDB's write group would otherwise hold a runtime thread idle).
async fn commit<C: ClientInfo>(client: &mut C, ended: BlockState) -> Result<Response> {
    // PostgreSQL ends a failed block with ROLLBACK whatever was asked
    if ended.failed {
        return Ok(Response::TransactionEnd(Tag::new("ROLLBACK")));
    }
    if let Some(Open::Begun(_, txn)) = ended.txn {
        let committed = crate::blocking::run("COMMIT", move |_| txn.commit()).await;
        if let Err(error) = committed {
            // the block is over either way: the error leaves the connection idle
            client.set_transaction_status(TransactionStatus::Idle);
            return Err(error);
        }
    }
    Ok(Response::TransactionEnd(Tag::new("COMMIT")))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
