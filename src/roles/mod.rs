//! Roles: the users of the wire server (`CREATE USER`, `ALTER USER`, `DROP USER`) and their
//! SCRAM secrets, stored beside the tables.

mod parser;
mod users;

pub use parser::UserStatement;
pub use users::{SCRAM_ITERATIONS, StoredUser, Users};

use crate::engine::{Command, Engine, Family, Outcome};
use crate::error::Result;
use crate::sql::notices::{Notice, Notices};
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use std::sync::Arc;

/// The role statements.
pub const STATEMENTS: Family = Family {
    name: "roles",
    parse: |parser| Ok(parser::user_statement(parser)?.map(|s| Arc::new(s) as Arc<dyn Command>)),
};

#[async_trait]
impl Command for UserStatement {
    fn rows_schema(&self) -> Option<SchemaRef> {
        None
    }

    async fn execute(&self, engine: &Engine, notices: &Notices) -> Result<Outcome> {
        let users = engine.users();
        match self {
            UserStatement::Create {
                name,
                password,
                if_not_exists,
            } => {
                if !users.create(name, password, *if_not_exists)? {
                    notices.send(Notice::with_code(
                        "42710",
                        format!("role \"{name}\" already exists, skipping"),
                    ));
                }
                Ok(Outcome::done("CREATE ROLE"))
            }
            UserStatement::Alter { name, password } => {
                users.alter(name, password)?;
                Ok(Outcome::done("ALTER ROLE"))
            }
            UserStatement::Drop { name, if_exists } => {
                if !users.drop_user(name, *if_exists)? {
                    notices.send(Notice::info(format!(
                        "role \"{name}\" does not exist, skipping"
                    )));
                }
                Ok(Outcome::done("DROP ROLE"))
            }
        }
    }
}
