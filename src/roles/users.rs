//! Roles (users of the wire server), their attributes and SCRAM-SHA-256 secrets, stored in
//! RocksDB beside the tables.

use crate::error::{Error, Result};
use crate::storage::{Scan, Store, WriteSet, keys};
use pgwire::api::auth::sasl::scram::gen_salted_password;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// PBKDF2 iterations of every stored secret (SCRAM sends one count for all users).
pub const SCRAM_ITERATIONS: usize = 4096;

/// What is stored for a role: its attributes, and for a password a random salt and the SCRAM
/// `SaltedPassword` (empty when the role has no password). The password itself is never
/// stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredUser {
    /// Random salt of the PBKDF2 derivation.
    pub salt: Vec<u8>,
    /// SCRAM `SaltedPassword`: PBKDF2-HMAC-SHA-256 of the password, [`SCRAM_ITERATIONS`] rounds.
    pub salted_password: Vec<u8>,
    /// What the role may do beyond the privileges on objects.
    #[serde(default = "Attributes::of_roles_stored_before_attributes")]
    pub attributes: Attributes,
}

impl StoredUser {
    /// Whether the role has a password to log in with.
    pub fn has_password(&self) -> bool {
        !self.salted_password.is_empty()
    }
}

/// A role's attributes, as PostgreSQL's `rolsuper`, `rolcreaterole` and `rolcanlogin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes {
    /// May do everything, without privilege checks.
    pub superuser: bool,
    /// May create, alter and drop roles that are not superusers.
    pub createrole: bool,
    /// May log in.
    pub login: bool,
}

impl Attributes {
    /// Roles stored before roles had attributes were created when every login could do
    /// everything: they stay superusers (`ALTER ROLE … NOSUPERUSER` takes it away).
    fn of_roles_stored_before_attributes() -> Attributes {
        Attributes {
            superuser: true,
            createrole: true,
            login: true,
        }
    }
}

/// What `CREATE ROLE` or `ALTER ROLE` sets; `None` leaves a value as it is (or at its default
/// for a new role).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleOptions {
    /// `SUPERUSER` / `NOSUPERUSER`.
    pub superuser: Option<bool>,
    /// `CREATEROLE` / `NOCREATEROLE`.
    pub createrole: Option<bool>,
    /// `LOGIN` / `NOLOGIN`.
    pub login: Option<bool>,
    /// `PASSWORD 'secret'`, or `PASSWORD NULL` (no password).
    pub password: Option<Option<String>>,
}

/// The users of one data directory.
#[derive(Debug, Clone)]
pub struct Users {
    store: Arc<Store>,
    /// Serialises CREATE/ALTER/DROP USER so that their existence checks hold.
    ddl: Arc<Mutex<()>>,
}

impl RoleOptions {
    /// `attributes` with the ones these options set changed.
    pub fn applied_to(&self, attributes: Attributes) -> Attributes {
        Attributes {
            superuser: self.superuser.unwrap_or(attributes.superuser),
            createrole: self.createrole.unwrap_or(attributes.createrole),
            login: self.login.unwrap_or(attributes.login),
        }
    }
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

    /// Creates the administrator `name` (a superuser who can log in) or, when it exists,
    /// changes its password; durable when it returns. Used by `tastedb serve --password`.
    pub fn set_password(&self, name: &str, password: &str) -> Result<()> {
        let _ddl = self.ddl.lock().unwrap_or_else(|p| p.into_inner());
        let attributes = match self.get(name)? {
            Some(existing) => existing.attributes,
            None => Attributes {
                superuser: true,
                createrole: true,
                login: true,
            },
        };
        self.put(name, attributes, Some(password))
    }

    /// Stores role `name` with `attributes` and `password` (`None`: no password).
    fn put(&self, name: &str, attributes: Attributes, password: Option<&str>) -> Result<()> {
        if name.is_empty() || password.is_some_and(str::is_empty) {
            return Err(Error::InvalidParameter(
                "a role needs a non-empty name, and a password must not be empty".into(),
            ));
        }
        let (salt, salted_password) = match password {
            Some(password) => {
                let salt: [u8; 16] = rand::random();
                let secret = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
                (salt.to_vec(), secret)
            }
            None => (Vec::new(), Vec::new()),
        };
        let user = StoredUser {
            salt,
            salted_password,
            attributes,
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

    /// Creates role `name` with `options` over `defaults`; 42710 when it exists. With
    /// `if_not_exists`, an existing role is kept as it is and the result is false.
    pub fn create(
        &self,
        name: &str,
        defaults: Attributes,
        options: &RoleOptions,
        if_not_exists: bool,
    ) -> Result<bool> {
        let _ddl = self.ddl.lock().unwrap_or_else(|p| p.into_inner());
        match self.get(name)? {
            Some(_) if if_not_exists => Ok(false),
            Some(_) => Err(Error::DuplicateObject(format!(
                "role \"{name}\" already exists"
            ))),
            None => {
                let password = options.password.clone().flatten();
                self.put(name, options.applied_to(defaults), password.as_deref())?;
                Ok(true)
            }
        }
    }

    /// Changes the attributes and password of `name` that `options` name; 42704 when it does
    /// not exist.
    pub fn alter(&self, name: &str, options: &RoleOptions) -> Result<()> {
        let _ddl = self.ddl.lock().unwrap_or_else(|p| p.into_inner());
        let existing = self.get(name)?.ok_or_else(|| missing(name))?;
        let attributes = options.applied_to(existing.attributes);
        match &options.password {
            Some(password) => self.put(name, attributes, password.as_deref()),
            None => {
                let user = StoredUser {
                    attributes,
                    ..existing
                };
                let json = serde_json::to_vec(&user).map_err(|e| Error::Internal(e.to_string()))?;
                let mut write = WriteSet::default();
                write.put(keys::user(name), json);
                self.store.write(write)
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_stored_before_attributes_stay_superusers() {
        let legacy = r#"{"salt":[1,2],"salted_password":[3,4]}"#;
        let user: StoredUser = serde_json::from_str(legacy).unwrap();
        assert!(user.attributes.superuser && user.attributes.login);
        let dir = tempfile::tempdir().unwrap();
        let users = Users::new(Arc::new(Store::open(dir.path()).unwrap()));
        users.set_password("admin", "pw").unwrap();
        let created = RoleOptions {
            password: Some(Some("x".into())),
            ..RoleOptions::default()
        };
        let defaults = Attributes {
            superuser: false,
            createrole: false,
            login: true,
        };
        assert!(users.create("bob", defaults, &created, false).unwrap());
        assert!(users.get("admin").unwrap().unwrap().attributes.superuser);
        let bob = users.get("bob").unwrap().unwrap();
        assert_eq!(bob.attributes, defaults);
        assert!(bob.has_password());
    }
}
