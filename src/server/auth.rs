//! SCRAM-SHA-256 logins against the users stored in the data directory.

use crate::roles::Users;
use async_trait::async_trait;
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

/// pgwire's view of the stored users.
#[derive(Debug)]
pub struct UserAuth(pub Users);

#[async_trait]
impl AuthSource for UserAuth {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let name = login.user().unwrap_or_default();
        let stored = self.0.get(name).map_err(|e| {
            PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                e.sqlstate().into(),
                e.to_string(),
            )))
        })?;
        Ok(match stored {
            Some(user) if user.attributes.login && user.has_password() => {
                Password::new(Some(user.salt), user.salted_password)
            }
            // An unknown role, or one that may not log in or has no password, goes through the
            // same exchange and fails at the same step as a wrong password, so that none of
            // them can be told apart.
            _ => {
                let salt: [u8; 16] = rand::random();
                let secret: [u8; 32] = rand::random();
                Password::new(Some(salt.to_vec()), secret.to_vec())
            }
        })
    }
}
