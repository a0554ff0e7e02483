//! Users of the wire server and their SCRAM-SHA-256 secrets, stored in RocksDB beside the tables.

use crate::error::{Error, Result};
use crate::storage::{Scan, Store, WriteSet, keys};
use pgwire::api::auth::sasl::scram::gen_salted_password;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// PBKDF2 iterations of every stored secret (SCRAM sends one count for all users).
pub const SCRAM_ITERATIONS: usize = 4096;

/// What is stored for a user: a random salt and the SCRAM `SaltedPassword`. The password itself
/// is never stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredUser {
    /// Random salt of the PBKDF2 derivation.
    pub salt: Vec<u8>,
    /// SCRAM `SaltedPassword`: PBKDF2-HMAC-SHA-256 of the password, [`SCRAM_ITERATIONS`] rounds.
    pub salted_password: Vec<u8>,
}

/// The users of one data directory.
#[derive(Debug, Clone)]
pub struct Users {
    store: Arc<Store>,
    /// Serialises CREATE/ALTER/DROP USER so that their existence checks hold.
    ddl: Arc<Mutex<()>>,
}

fn missing(name: &str) -> Error {
    Error::UndefinedObject(format!("role \"{name}\" does not exist"))
}

impl Users {
    /// The users stored in `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Users {
            store,
            ddl: Arc::new(Mutex::new(())),
        }
    }

    /// Creates `name` or changes its password; durable when it returns.
    pub fn set_password(&self, name: &str, password: &str) -> Result<()> {
        if name.is_empty() || password.is_empty() {
            return Err(Error::InvalidParameter(
                "a user needs a non-empty name and password".into(),
            ));
        }
        let salt: [u8; 16] = rand::random();
        let user = StoredUser {
            salt: salt.to_vec(),
            salted_password: gen_salted_password(password, &salt, SCRAM_ITERATIONS),
        };
        let json = serde_json::to_vec(&user).map_err(|e| Error::Internal(e.to_string()))?;
        let mut write = WriteSet::default();
        write.put(keys::user(name), json);
        self.store.write(write)
    }

    /// True when no user exists yet.
    pub fn is_empty(&self) -> Result<bool> {
        let prefix = keys::user("");
        let mut empty = true;
        self.store
            .scan(&prefix, &keys::prefix_end(&prefix), Scan::Cached, |_, _| {
                empty = false;
                Ok(false)
            })?;
        Ok(empty)
    }

    /// Creates user `name`; 42710 when it exists. With `if_not_exists`, an existing user is
    /// kept as it is and the result is false.
    pub fn create(&self, name: &str, password: &str, if_not_exists: bool) -> Result<bool> {
        let _ddl = self.ddl.lock().unwrap_or_else(|p| p.into_inner());
        match self.get(name)? {
            Some(_) if if_not_exists => Ok(false),
            Some(_) => Err(Error::DuplicateObject(format!(
                "role \"{name}\" already exists"
            ))),
            None => self.set_password(name, password).map(|()| true),
        }
    }

    /// Changes the password of `name`; 42704 when it does not exist.
    pub fn alter(&self, name: &str, password: &str) -> Result<()> {
        let _ddl = self.ddl.lock().unwrap_or_else(|p| p.into_inner());
        self.get(name)?.ok_or_else(|| missing(name))?;
        self.set_password(name, password)
    }

    /// Drops `name`; 42704 when it does not exist (with `if_exists` the result is false). The
    /// last user cannot be dropped: nobody could log in with a password any more.
    pub fn drop_user(&self, name: &str, if_exists: bool) -> Result<bool> {
        let _ddl = self.ddl.lock().unwrap_or_else(|p| p.into_inner());
        if self.get(name)?.is_none() {
            return if if_exists {
                Ok(false)
            } else {
                Err(missing(name))
            };
        }
        if self.names()?.len() == 1 {
            return Err(Error::DependentObjects(format!(
                "cannot drop \"{name}\": it is the last user"
            )));
        }
        let mut write = WriteSet::default();
        write.delete(keys::user(name));
        self.store.write(write).map(|()| true)
    }

    /// Names of all users, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        let prefix = keys::user("");
        let mut names = Vec::new();
        self.store.scan(
            &prefix,
            &keys::prefix_end(&prefix),
            Scan::Cached,
            |key, _| {
                let name = key.get(prefix.len()..).unwrap_or_default();
                names.push(String::from_utf8_lossy(name).into_owned());
                Ok(true)
            },
        )?;
        Ok(names)
    }

    /// The stored secret of `name`.
    pub fn get(&self, name: &str) -> Result<Option<StoredUser>> {
        match self.store.get(&keys::user(name))? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Corrupt(format!("user {name}: {e}"))),
        }
    }
}
