//! Users of the wire server and their SCRAM-SHA-256 secrets, stored in RocksDB beside the catalog.

use crate::error::{Error, Result};
use crate::storage::{Store, keys};
use async_trait::async_trait;
use pgwire::api::auth::sasl::scram::gen_salted_password;
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// PBKDF2 iterations of every stored secret (SCRAM sends one count for all users).
pub const SCRAM_ITERATIONS: usize = 4096;

/// What is stored for a user: a random salt and the SCRAM `SaltedPassword`. The password itself
/// is never stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredUser {
    salt: Vec<u8>,
    salted_password: Vec<u8>,
}

/// The users of one data directory.
#[derive(Debug, Clone)]
pub struct Users {
    store: Arc<Store>,
}

impl Users {
    /// The users stored in `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Users { store }
    }

    /// Creates `name` or changes its password; durable when it returns.
    pub fn set_password(&self, name: &str, password: &str) -> Result<()> {
        let salt: [u8; 16] = rand::random();
        let user = StoredUser {
            salt: salt.to_vec(),
            salted_password: gen_salted_password(password, &salt, SCRAM_ITERATIONS),
        };
        let json = serde_json::to_vec(&user).map_err(|e| Error::Internal(e.to_string()))?;
        let mut write = WriteBatch::default();
        write.put(keys::user(name), json);
        self.store.write(write)
    }

    /// True when no user exists yet.
    pub fn is_empty(&self) -> Result<bool> {
        let prefix = keys::user("");
        let first = self
            .store
            .db()
            .prefix_iterator(&prefix)
            .next()
            .transpose()?;
        Ok(!first.is_some_and(|(key, _)| key.starts_with(&prefix)))
    }

    fn get(&self, name: &str) -> Result<Option<StoredUser>> {
        match self.store.db().get(keys::user(name))? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Corrupt(format!("user {name}: {e}"))),
        }
    }
}

#[async_trait]
impl AuthSource for Users {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let name = login.user().unwrap_or_default();
        let stored = self.get(name).map_err(|e| {
            PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                e.sqlstate().into(),
                e.to_string(),
            )))
        })?;
        Ok(match stored {
            Some(user) => Password::new(Some(user.salt), user.salted_password),
            // An unknown user goes through the same exchange and fails at the same step as a
            // wrong password, so the two cannot be told apart.
            None => {
                let salt: [u8; 16] = rand::random();
                let secret: [u8; 32] = rand::random();
                Password::new(Some(salt.to_vec()), secret.to_vec())
            }
        })
    }
}
