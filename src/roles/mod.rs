//! Roles: the users of the wire server (`CREATE|ALTER|DROP ROLE`, also spelled `USER`), their
//! attributes and SCRAM secrets, who runs a statement ([`Actor`]) and what a role may do.

mod api_keys;
mod catalog;
mod grant;
mod grants;
mod owners;
mod parser;
mod privileges;
mod secret;
mod tables;
mod users;

pub use api_keys::{ApiKey, ApiKeyStatement, ApiKeys};
pub use catalog::{RoleCatalog, personalize, register as register_catalog};
pub use grant::{GrantStatement, Granted};
pub use grants::{Acl, Grants, Object, ObjectKind, PUBLIC, Privilege};
pub use owners::{RoleOids, role_oid};
pub use parser::UserStatement;
pub use privileges::{Actor, FileAccess, PREDEFINED_ROLES, SIGNAL_BACKEND};
pub use secret::{SCRAM_ITERATIONS, ScramSecret};
pub use tables::RoleTables;
pub use users::{Attributes, RoleOptions, StoredUser, Users};

use crate::engine::{Command, Context, Family, Outcome};
use crate::error::{Error, Result};
use crate::sql::notices::Notice;
use crate::sql::timeouts;
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use std::sync::Arc;

/// The role statements: CREATE/ALTER/DROP ROLE (or USER), GRANT and REVOKE, CREATE/DROP API
/// KEY.
pub const STATEMENTS: Family = Family {
    name: "roles",
    parse: |parser| {
        if let Some(statement) = parser::user_statement(parser)? {
            return Ok(Some(Arc::new(statement)));
        }
        if let Some(statement) = api_keys::api_key_statement(parser)? {
            return Ok(Some(Arc::new(statement)));
        }
        Ok(grant::grant_statement(parser)?.map(|s| Arc::new(s) as Arc<dyn Command>))
    },
};

#[async_trait]
impl Command for UserStatement {
    fn rows_schema(&self) -> Option<SchemaRef> {
        None
    }

    async fn execute(&self, cx: &Context<'_>) -> Result<Outcome> {
        let users = cx.engine.users();
        match self {
            UserStatement::Create {
                name,
                if_not_exists,
                user,
                options,
            } => {
                users.check_create_role(cx.actor, options)?;
                let defaults = Attributes {
                    superuser: false,
                    createrole: false,
                    login: *user,
                };
                if !users.create(name, defaults, options, *if_not_exists)? {
                    cx.notices.send(Notice::with_code(
                        "42710",
                        format!("role \"{name}\" already exists, skipping"),
                    ));
                }
                Ok(Outcome::done("CREATE ROLE"))
            }
            UserStatement::Alter { name, options } => {
                users.check_alter_role(cx.actor, name, options)?;
                users.alter(name, options)?;
                Ok(Outcome::done("ALTER ROLE"))
            }
            UserStatement::SetDefault {
                name,
                parameter,
                value,
            } => {
                if users.get(name)?.is_none() {
                    return Err(users::missing(name));
                }
                if *cx.actor != Actor::Role(name.clone()) {
                    users.check_alter_role(cx.actor, name, &RoleOptions::default())?;
                }
                if !timeouts::TIMEOUTS.contains(&parameter.as_str()) {
                    return Err(Error::FeatureNotSupported(format!(
                        "\"{parameter}\" cannot be a role default; these can: {}",
                        timeouts::TIMEOUTS.join(", ")
                    )));
                }
                if let Some(value) = value {
                    timeouts::parse(parameter, value)?;
                }
                users.set_default(name, parameter, value.as_deref())?;
                Ok(Outcome::done("ALTER ROLE"))
            }
            UserStatement::Drop { name, if_exists } => {
                if users.get(name)?.is_some() {
                    users.check_drop_role(cx.actor, name)?;
                }
                if !users.drop_user(name, *if_exists)? {
                    cx.notices.send(Notice::info(format!(
                        "role \"{name}\" does not exist, skipping"
                    )));
                }
                Ok(Outcome::done("DROP ROLE"))
            }
        }
    }
}
