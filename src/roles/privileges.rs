//! Who runs a statement ([`Actor`]) and what a role may do beyond its privileges on objects:
//! its attributes decide who may manage roles, and only superusers reach the server's files.

use crate::error::{Error, Result};
use crate::roles::users::{Attributes, RoleOptions, Users};

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

impl Users {
    /// The attributes of `actor` now; a role that no longer exists has none.
    pub fn attributes_of(&self, actor: &Actor) -> Result<Attributes> {
        let all = Attributes {
            superuser: true,
            createrole: true,
            login: true,
        };
        Ok(match actor {
            Actor::Embedder => all,
            Actor::Role(name) => self.get(name)?.map_or(
                Attributes {
                    superuser: false,
                    createrole: false,
                    login: false,
                },
                |role| role.attributes,
            ),
        })
    }

    /// Ok when `actor` may read or write files on the server: superusers only (PostgreSQL
    /// also admits members of `pg_read_server_files` / `pg_write_server_files`).
    pub fn check_server_files(&self, actor: &Actor, access: FileAccess) -> Result<()> {
        if self.attributes_of(actor)?.superuser {
            return Ok(());
        }
        let what = match access {
            FileAccess::Read => "to read files on the server (COPY FROM a file, external tables)",
            FileAccess::Write => "to write files on the server (COPY TO a file)",
        };
        Err(Error::InsufficientPrivilege(format!(
            "{what}: only superusers may; COPY … FROM STDIN and TO STDOUT go through the client"
        )))
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
