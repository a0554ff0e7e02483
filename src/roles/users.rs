//! Roles (users of the wire server), their attributes and SCRAM-SHA-256 secrets, stored in
//! RocksDB beside the tables.

use crate::error::{Error, Result};
use crate::roles::api_keys::ApiKeys;
use crate::roles::grants::Grants;
use crate::roles::secret::ScramSecret;
use crate::storage::{Scan, Store, WriteSet, keys};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

/// What is stored for a role: its attributes, the roles it is a member of, its session
/// defaults, and for a password its SCRAM-SHA-256 verifier (as PostgreSQL stores it: salt,
/// iterations, `StoredKey`, `ServerKey`). The password itself is never stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoredUser {
    /// The password's verifier; `None` when the role has no password.
    #[serde(default)]
    pub secret: Option<ScramSecret>,
    /// How secrets were stored before: the salt and SCRAM `SaltedPassword` (4096 rounds),
    /// enough to log in. Read only to replace them with a verifier when the directory opens.
    #[serde(default, rename = "salt", skip_serializing)]
    legacy_salt: Vec<u8>,
    #[serde(default, rename = "salted_password", skip_serializing)]
    legacy_salted_password: Vec<u8>,
    /// What the role may do beyond the privileges on objects.
    #[serde(default = "Attributes::of_roles_stored_before_attributes")]
    pub attributes: Attributes,
    /// The roles it is a member of (`GRANT role TO this`), whose privileges it has.
    #[serde(default)]
    pub member_of: BTreeSet<String>,
    /// Its session defaults (`ALTER ROLE … SET name = value`), by parameter name.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

impl StoredUser {
    /// Whether the role has a password to log in with.
    pub fn has_password(&self) -> bool {
        self.secret.is_some()
    }

    /// This role with `password` (`None`: no password), under a new random salt.
    fn with_password(self, password: Option<&str>) -> Result<StoredUser> {
        let secret = match password {
            Some("") => {
                return Err(Error::InvalidParameter(
                    "a password must not be empty".into(),
                ));
            }
            Some(password) => Some(ScramSecret::new(password)),
            None => None,
        };
        Ok(StoredUser { secret, ..self })
    }

    /// The role as stored before verifiers, with its `SaltedPassword` replaced by the
    /// verifier derived from it; `None` when there is nothing to migrate.
    fn migrated(&self) -> Option<StoredUser> {
        if self.legacy_salted_password.is_empty() {
            return None;
        }
        let secret = ScramSecret::from_salted_password(
            &self.legacy_salted_password,
            self.legacy_salt.clone(),
            LEGACY_ITERATIONS,
        );
        Some(StoredUser {
            secret: Some(secret),
            legacy_salt: Vec::new(),
            legacy_salted_password: Vec::new(),
            ..self.clone()
        })
    }
}

/// The PBKDF2 rounds of secrets stored before verifiers.
const LEGACY_ITERATIONS: u32 = 4096;

/// A role's attributes, as PostgreSQL's `rolsuper`, `rolcreaterole` and `rolcanlogin`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// The users of one data directory, and the ownership and privileges of its objects. Roles
/// are kept in memory (read at every privilege check) and written through to the store.
#[derive(Debug, Clone)]
pub struct Users {
    store: Arc<Store>,
    /// Every stored role, by name.
    roles: Arc<RwLock<BTreeMap<String, StoredUser>>>,
    /// Ownership and privileges of tables, models and feature views.
    grants: Arc<Grants>,
    /// Serialises CREATE/ALTER/DROP USER and GRANT/REVOKE so that their checks hold.
    ddl: Arc<Mutex<()>>,
    /// The API keys that stand for roles over HTTP.
    api_keys: Arc<ApiKeys>,
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

pub(super) fn missing(name: &str) -> Error {
    Error::UndefinedObject(format!("role \"{name}\" does not exist"))
}

impl Users {
    /// The users and grants stored in `store`.
    pub fn load(store: Arc<Store>) -> Result<Self> {
        let mut roles = BTreeMap::new();
        let prefix = keys::user("");
        store.scan(
            &prefix,
            &keys::prefix_end(&prefix),
            Scan::Cached,
            |key, value| {
                let name = String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default());
                let user = serde_json::from_slice(value)
                    .map_err(|e| Error::Corrupt(format!("user {name}: {e}")))?;
                roles.insert(name.into_owned(), user);
                Ok(true)
            },
        )?;
        let users = Users {
            grants: Arc::new(Grants::load(store.clone())?),
            api_keys: Arc::new(ApiKeys::load(store.clone())?),
            store,
            roles: Arc::new(RwLock::new(roles)),
            ddl: Arc::new(Mutex::new(())),
        };
        users.migrate_secrets()?;
        Ok(users)
    }

    /// Replaces every stored `SaltedPassword` (enough to log in) by its verifier, in one
    /// durable write: the same passwords keep working.
    fn migrate_secrets(&self) -> Result<()> {
        let migrated: Vec<(String, StoredUser)> = self
            .read()
            .iter()
            .filter_map(|(name, user)| user.migrated().map(|user| (name.clone(), user)))
            .collect();
        if migrated.is_empty() {
            return Ok(());
        }
        let mut write = WriteSet::default();
        for (name, user) in &migrated {
            let json = serde_json::to_vec(user).map_err(|e| Error::Internal(e.to_string()))?;
            write.put(keys::user(name), json);
        }
        self.store.write(write)?;
        let mut roles = self.roles.write().unwrap_or_else(|p| p.into_inner());
        for (name, user) in migrated {
            roles.insert(name, user);
        }
        Ok(())
    }

    /// Ownership and privileges of the objects.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// The API keys.
    pub fn api_keys(&self) -> &ApiKeys {
        &self.api_keys
    }

    /// The role an API key's `secret` logs in as: 28P01 for no key, 28000 for a role that
    /// may not log in.
    pub fn authenticate_key(&self, secret: &str) -> Result<String> {
        let user = self.api_keys.authenticate(secret)?;
        let login = self
            .read()
            .get(&user)
            .is_some_and(|role| role.attributes.login);
        match login {
            true => Ok(user),
            false => Err(Error::InvalidAuthorization(format!(
                "role \"{user}\" is not permitted to log in"
            ))),
        }
    }

    /// Holds the lock that serialises changes of roles and grants.
    pub(super) fn lock_ddl(&self) -> MutexGuard<'_, ()> {
        self.ddl.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, StoredUser>> {
        self.roles.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates the administrator `name` (a superuser who can log in) or, when it exists,
    /// changes its password; durable when it returns. Used by `tastedb serve --password`.
    pub fn set_password(&self, name: &str, password: &str) -> Result<()> {
        let _ddl = self.lock_ddl();
        let existing = self.get(name)?;
        let user = StoredUser {
            attributes: Attributes {
                superuser: true,
                createrole: true,
                login: true,
            },
            ..StoredUser::default()
        };
        let user = existing.unwrap_or(user).with_password(Some(password))?;
        self.put(name, user)
    }

    /// Stores role `name` as `user`, durably, then in memory.
    pub(super) fn put(&self, name: &str, user: StoredUser) -> Result<()> {
        if name.is_empty() {
            return Err(Error::InvalidParameter(
                "a role needs a non-empty name".into(),
            ));
        }
        let json = serde_json::to_vec(&user).map_err(|e| Error::Internal(e.to_string()))?;
        let mut write = WriteSet::default();
        write.put(keys::user(name), json);
        self.store.write(write)?;
        self.roles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), user);
        Ok(())
    }

    /// True when no user exists yet.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.read().is_empty())
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
        check_role_name(name)?;
        let _ddl = self.lock_ddl();
        match self.get(name)? {
            Some(_) if if_not_exists => Ok(false),
            Some(_) => Err(Error::DuplicateObject(format!(
                "role \"{name}\" already exists"
            ))),
            None => {
                let password = options.password.clone().flatten();
                let user = StoredUser {
                    attributes: options.applied_to(defaults),
                    ..StoredUser::default()
                }
                .with_password(password.as_deref())?;
                self.put(name, user)?;
                Ok(true)
            }
        }
    }

    /// Changes the attributes and password of `name` that `options` name; 42704 when it does
    /// not exist.
    pub fn alter(&self, name: &str, options: &RoleOptions) -> Result<()> {
        let _ddl = self.lock_ddl();
        let existing = self.get(name)?.ok_or_else(|| missing(name))?;
        let mut user = StoredUser {
            attributes: options.applied_to(existing.attributes),
            ..existing
        };
        if let Some(password) = &options.password {
            user = user.with_password(password.as_deref())?;
        }
        self.put(name, user)
    }

    /// Sets (`Some`) or removes (`None`) the session default `parameter` of role `name`
    /// (`ALTER ROLE name SET parameter = value`, `… RESET parameter`).
    pub fn set_default(&self, name: &str, parameter: &str, value: Option<&str>) -> Result<()> {
        let _ddl = self.lock_ddl();
        let mut user = self.get(name)?.ok_or_else(|| missing(name))?;
        match value {
            Some(value) => user.config.insert(parameter.to_string(), value.to_string()),
            None => user.config.remove(parameter),
        };
        self.put(name, user)
    }

    /// Drops `name`; 42704 when it does not exist (with `if_exists` the result is false).
    /// Refused (2BP01) while it owns objects, and for the last user, as nobody could log in
    /// with a password any more. Its privileges and memberships go with it.
    pub fn drop_user(&self, name: &str, if_exists: bool) -> Result<bool> {
        let _ddl = self.lock_ddl();
        if self.get(name)?.is_none() {
            return if if_exists {
                Ok(false)
            } else {
                Err(missing(name))
            };
        }
        if self.read().len() == 1 {
            return Err(Error::DependentObjects(format!(
                "cannot drop \"{name}\": it is the last user"
            )));
        }
        let owned = self.grants.owned_by(name);
        if !owned.is_empty() {
            let list: Vec<String> = owned.iter().map(|o| format!("owner of {o}")).collect();
            return Err(Error::DependentObjects(format!(
                "role \"{name}\" cannot be dropped because some objects depend on it: {}",
                list.join(", ")
            )));
        }
        self.grants.remove_grantee(name)?;
        self.api_keys.drop_keys_of(name)?;
        let members: Vec<(String, StoredUser)> = self
            .read()
            .iter()
            .filter(|(_, user)| user.member_of.contains(name))
            .map(|(member, user)| (member.clone(), user.clone()))
            .collect();
        for (member, mut user) in members {
            user.member_of.remove(name);
            self.put(&member, user)?;
        }
        let mut write = WriteSet::default();
        write.delete(keys::user(name));
        self.store.write(write)?;
        self.roles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        Ok(true)
    }

    /// Names of all users, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        Ok(self.read().keys().cloned().collect())
    }

    /// The stored role `name`.
    pub fn get(&self, name: &str) -> Result<Option<StoredUser>> {
        Ok(self.read().get(name).cloned())
    }
}

/// 42939 for the names PostgreSQL reserves: `public` and names starting with `pg_`.
fn check_role_name(name: &str) -> Result<()> {
    if name == "public" || name.starts_with("pg_") {
        return Err(Error::ReservedName(format!(
            "role name \"{name}\" is reserved"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory whose roles hold `SaltedPassword`s opens with verifiers derived from them,
    /// rewritten so that no `SaltedPassword` stays on disk.
    #[test]
    fn salted_passwords_are_replaced_by_verifiers_at_open() {
        use pgwire::api::auth::sasl::scram::gen_salted_password;
        let dir = tempfile::tempdir().unwrap();
        let salt = vec![7u8; 16];
        let salted = gen_salted_password("old secret", &salt, 4096);
        {
            let store = Store::open(dir.path()).unwrap();
            let legacy = serde_json::json!({ "salt": salt, "salted_password": salted });
            let mut write = WriteSet::default();
            write.put(keys::user("old"), serde_json::to_vec(&legacy).unwrap());
            store.write(write).unwrap();
        }
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let users = Users::load(store.clone()).unwrap();
        let expected = ScramSecret::from_salted_password(&salted, salt, 4096);
        assert_eq!(users.get("old").unwrap().unwrap().secret, Some(expected));
        let raw = store.get(&keys::user("old")).unwrap().unwrap();
        let raw = String::from_utf8(raw).unwrap();
        assert!(!raw.contains("salted_password"), "{raw}");
    }

    #[test]
    fn roles_stored_before_attributes_stay_superusers() {
        let legacy = r#"{"salt":[1,2],"salted_password":[3,4]}"#;
        let user: StoredUser = serde_json::from_str(legacy).unwrap();
        assert!(user.attributes.superuser && user.attributes.login);
        let dir = tempfile::tempdir().unwrap();
        let users = Users::load(Arc::new(Store::open(dir.path()).unwrap())).unwrap();
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
