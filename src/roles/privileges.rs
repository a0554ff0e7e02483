//! Who runs a statement ([`Actor`]) and what it may do: privileges on objects (its own, its
//! roles' and PUBLIC's), ownership, role attributes (who may manage roles) and the predefined
//! roles that reach the server's files.

use crate::error::{Error, Result};
use crate::roles::grants::{Acl, Object, PUBLIC, Privilege};
use crate::roles::users::{Attributes, RoleOptions, Users};
use std::collections::BTreeSet;

/// Who runs a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The program that embeds the engine (and a `--auth trust` login before any role
    /// exists): may do everything.
    Embedder,
    /// A role, by name. Its attributes are read at each check, so that a change applies to
    /// sessions that are already running.
    Role(String),
}

/// How a statement reaches the server's file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAccess {
    /// Reads a file (`COPY … FROM 'file'`, `CREATE EXTERNAL TABLE … LOCATION`).
    Read,
    /// Writes a file (`COPY … TO 'file'`).
    Write,
}

/// The predefined roles a superuser may grant: they admit their members to the server's files,
/// to cancelling other roles' statements and to consuming other systems' streams.
pub const PREDEFINED_ROLES: &[&str] = &[
    READ_SERVER_FILES,
    WRITE_SERVER_FILES,
    SIGNAL_BACKEND,
    CREATE_SUBSCRIPTION,
];
/// Members may read files on the server.
pub const READ_SERVER_FILES: &str = "pg_read_server_files";
/// Members may write files on the server.
pub const WRITE_SERVER_FILES: &str = "pg_write_server_files";
/// Members may cancel the statements of roles that are not superusers.
pub const SIGNAL_BACKEND: &str = "pg_signal_backend";
/// Members may create sources, which open network connections from the server
/// (PostgreSQL 16's role for CREATE SUBSCRIPTION).
pub const CREATE_SUBSCRIPTION: &str = "pg_create_subscription";

impl Users {
    /// The attributes of `actor` now; a role that no longer exists has none.
    pub fn attributes_of(&self, actor: &Actor) -> Result<Attributes> {
        Ok(match actor {
            Actor::Embedder => Attributes {
                superuser: true,
                createrole: true,
                login: true,
            },
            Actor::Role(name) => self
                .read()
                .get(name)
                .map_or(Attributes::default(), |role| role.attributes),
        })
    }

    /// Whether `actor` is a superuser now.
    pub fn is_superuser(&self, actor: &Actor) -> bool {
        match actor {
            Actor::Embedder => true,
            Actor::Role(name) => self
                .read()
                .get(name)
                .is_some_and(|role| role.attributes.superuser),
        }
    }

    /// The roles whose privileges `role` has: itself and the roles it is a member of,
    /// directly or through other roles.
    pub fn roles_of(&self, role: &str) -> BTreeSet<String> {
        let roles = self.read();
        let mut found = BTreeSet::from([role.to_string()]);
        let mut next = vec![role.to_string()];
        while let Some(current) = next.pop() {
            for parent in roles
                .get(&current)
                .map(|r| &r.member_of)
                .into_iter()
                .flatten()
            {
                if found.insert(parent.clone()) {
                    next.push(parent.clone());
                }
            }
        }
        found
    }

    /// Whether role `role` (with its memberships and PUBLIC's grants) holds `privilege` on
    /// `object`; superusers and the owner hold every privilege. A role's own grants are
    /// looked at first, so that the common case (on every execution of a prepared statement)
    /// walks no memberships.
    pub fn has_privilege(&self, role: &str, object: &Object, privilege: Privilege) -> bool {
        let (superuser, member) = self.read().get(role).map_or((false, false), |r| {
            (r.attributes.superuser, !r.member_of.is_empty())
        });
        if superuser {
            return true;
        }
        let held_by = |acl: &Acl, holds: &dyn Fn(&str) -> bool| {
            acl.owner.as_deref().is_some_and(holds)
                || acl.grants.iter().any(|(grantee, privileges)| {
                    (grantee == PUBLIC || holds(grantee)) && privileges.contains(&privilege)
                })
        };
        let direct = self.grants().with_acl(object, |acl| {
            acl.is_some_and(|acl| held_by(acl, &|name| name == role))
        });
        if direct || !member {
            return direct;
        }
        let roles = self.roles_of(role);
        self.grants().with_acl(object, |acl| {
            acl.is_some_and(|acl| held_by(acl, &|name| roles.contains(name)))
        })
    }

    /// Ok when `actor` holds `privilege` on `object`; 42501 otherwise.
    pub fn check(&self, actor: &Actor, object: &Object, privilege: Privilege) -> Result<()> {
        match actor {
            Actor::Embedder => Ok(()),
            Actor::Role(role) if self.has_privilege(role, object, privilege) => Ok(()),
            Actor::Role(_) => Err(Error::InsufficientPrivilege(format!("for {object}"))),
        }
    }

    /// Ok when `actor` owns `object` (is a superuser, the owner or a member of the owning
    /// role): what ALTER, DROP, GRANT and REVOKE on it take; 42501 otherwise.
    pub fn check_owner(&self, actor: &Actor, object: &Object) -> Result<()> {
        if self.is_superuser(actor) {
            return Ok(());
        }
        if let Actor::Role(role) = actor
            && let Some(owner) = self.grants().acl(object).owner
            && self.roles_of(role).contains(&owner)
        {
            return Ok(());
        }
        Err(Error::MustBeOwner(object.to_string()))
    }

    /// The role that becomes the owner of what `actor` creates (`None`: superusers).
    pub fn owner_for(actor: &Actor) -> Option<&str> {
        match actor {
            Actor::Embedder => None,
            Actor::Role(name) => Some(name),
        }
    }

    /// Ok when `actor` may make the server connect to other systems (CREATE SOURCE):
    /// superusers and members of `pg_create_subscription`.
    pub fn check_network(&self, actor: &Actor) -> Result<()> {
        if self.is_superuser(actor) || self.is_member(actor, CREATE_SUBSCRIPTION) {
            return Ok(());
        }
        Err(Error::InsufficientPrivilege(format!(
            "to create a source, which connects the server to other systems: only superusers \
             and members of {CREATE_SUBSCRIPTION} may"
        )))
    }

    /// Ok when `actor` may read or write files on the server: superusers and members of
    /// `pg_read_server_files` / `pg_write_server_files`.
    pub fn check_server_files(&self, actor: &Actor, access: FileAccess) -> Result<()> {
        let (role, what) = match access {
            FileAccess::Read => (
                READ_SERVER_FILES,
                "to read files on the server (COPY FROM a file, external tables)",
            ),
            FileAccess::Write => (
                WRITE_SERVER_FILES,
                "to write files on the server (COPY TO a file)",
            ),
        };
        if self.is_superuser(actor) || self.is_member(actor, role) {
            return Ok(());
        }
        Err(Error::InsufficientPrivilege(format!(
            "{what}: only superusers and members of {role} may; COPY … FROM STDIN and TO \
             STDOUT go through the client"
        )))
    }

    /// Whether `actor` is a member of `role`, directly or through other roles.
    pub fn is_member(&self, actor: &Actor, role: &str) -> bool {
        match actor {
            Actor::Embedder => true,
            Actor::Role(name) => self.roles_of(name).contains(role),
        }
    }

    /// Ok when `actor` may create a role with `options`: a superuser, or a role with
    /// CREATEROLE creating a role that is not a superuser.
    pub fn check_create_role(&self, actor: &Actor, options: &RoleOptions) -> Result<()> {
        let mine = self.attributes_of(actor)?;
        if mine.superuser || (mine.createrole && options.superuser != Some(true)) {
            return Ok(());
        }
        Err(denied("to create role", options.superuser == Some(true)))
    }

    /// Ok when `actor` may change role `name` as `options` say: a superuser; a role with
    /// CREATEROLE changing a role that is not and does not become a superuser; or any role
    /// changing only its own password.
    pub fn check_alter_role(&self, actor: &Actor, name: &str, options: &RoleOptions) -> Result<()> {
        let mine = self.attributes_of(actor)?;
        let own_password = *actor == Actor::Role(name.to_string())
            && RoleOptions {
                password: None,
                ..options.clone()
            } == RoleOptions::default();
        let target_is_superuser = self.get(name)?.is_some_and(|r| r.attributes.superuser);
        let superuser_involved = target_is_superuser || options.superuser.is_some();
        if mine.superuser || own_password || (mine.createrole && !superuser_involved) {
            return Ok(());
        }
        Err(denied(
            &format!("to alter role \"{name}\""),
            superuser_involved,
        ))
    }

    /// Ok when `actor` may drop role `name`: a superuser, or a role with CREATEROLE dropping
    /// a role that is not a superuser; nobody drops the role they are logged in as (55006).
    pub fn check_drop_role(&self, actor: &Actor, name: &str) -> Result<()> {
        if *actor == Actor::Role(name.to_string()) {
            return Err(Error::ObjectInUse(format!(
                "current user \"{name}\" cannot be dropped"
            )));
        }
        let mine = self.attributes_of(actor)?;
        let target_is_superuser = self.get(name)?.is_some_and(|r| r.attributes.superuser);
        if mine.superuser || (mine.createrole && !target_is_superuser) {
            return Ok(());
        }
        Err(denied(
            &format!("to drop role \"{name}\""),
            target_is_superuser,
        ))
    }
}

fn denied(what: &str, superuser_involved: bool) -> Error {
    let who = if superuser_involved {
        "only superusers may create, change or drop superusers"
    } else {
        "it takes the CREATEROLE attribute"
    };
    Error::InsufficientPrivilege(format!("{what}: {who}"))
}
