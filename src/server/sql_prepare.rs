//! SQL `PREPARE name [(types)] AS statement` and `EXECUTE name [(arguments)]`, per
//! connection as in PostgreSQL (DataFusion's own are shared by every connection, and do not
//! see the `$n` of table functions such as `recommend('m', $1, 5)`). A statement is prepared
//! by the engine as the extended protocol prepares it; EXECUTE evaluates its arguments and
//! casts them to the parameters' types. `DEALLOCATE` closes them (see
//! [`crate::server::transaction_block`]).

use crate::engine::{Prepared, Statement};
use crate::error::{Error, Result};
use datafusion::sql::sqlparser::ast::{Expr, Statement as SqlStatement};
use pgwire::api::ClientInfo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A SQL PREPARE or EXECUTE.
#[derive(Debug, Clone)]
pub enum SqlPrepare {
    /// `PREPARE name AS statement` (declared types are taken from the statement instead).
    Prepare {
        /// Statement name.
        name: String,
        /// The statement prepared.
        statement: Box<SqlStatement>,
    },
    /// `EXECUTE name (arguments)`.
    Execute {
        /// Statement name.
        name: String,
        /// Argument expressions.
        arguments: Vec<Expr>,
    },
}

/// Recognises a SQL PREPARE or EXECUTE.
pub fn sql_prepare(statement: &Statement) -> Option<SqlPrepare> {
    let sql = statement.sql()?;
    match sql {
        SqlStatement::Prepare {
            name, statement, ..
        } => Some(SqlPrepare::Prepare {
            name: name.value.clone(),
            statement: statement.clone(),
        }),
        SqlStatement::Execute {
            name: Some(name),
            parameters,
            immediate: false,
            ..
        } => Some(SqlPrepare::Execute {
            name: name.to_string(),
            arguments: parameters.clone(),
        }),
        _ => None,
    }
}

/// The statements a connection prepared with SQL `PREPARE`, by name.
#[derive(Default)]
pub struct SqlPrepared(Mutex<HashMap<String, Arc<Prepared>>>);

impl SqlPrepared {
    /// `client`'s statements.
    pub fn of<C: ClientInfo>(client: &C) -> Arc<SqlPrepared> {
        client
            .session_extensions()
            .get_or_insert_with(SqlPrepared::default)
    }

    /// Keeps `prepared` as `name`; 42P05 when the name is taken.
    pub fn add(&self, name: &str, prepared: Prepared) -> Result<()> {
        let mut statements = lock(&self.0);
        if statements.contains_key(name) {
            return Err(Error::DuplicatePreparedStatement(name.to_string()));
        }
        statements.insert(name.to_string(), Arc::new(prepared));
        Ok(())
    }

    /// Statement `name`; 26000 when there is none.
    pub fn get(&self, name: &str) -> Result<Arc<Prepared>> {
        lock(&self.0)
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UndefinedPreparedStatement(name.to_string()))
    }

    /// Closes statement `name`; whether it was there.
    pub fn remove(&self, name: &str) -> bool {
        lock(&self.0).remove(name).is_some()
    }

    /// Closes them all.
    pub fn clear(&self) {
        lock(&self.0).clear();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
