//! Parsing of `CREATE USER`, `ALTER USER` and `DROP USER` (also spelled `ROLE`) in Postgres'
//! syntax, which sqlparser reads the Snowflake way.

use crate::error::{Error, Result};
use crate::roles::users::RoleOptions;
use crate::sql::names;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

/// A statement about roles.
#[derive(Debug, Clone, PartialEq)]
pub enum UserStatement {
    /// `CREATE USER|ROLE [IF NOT EXISTS] name [[WITH] option …]`.
    Create {
        /// Role name.
        name: String,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// `CREATE USER` (which may log in unless `NOLOGIN`), not `CREATE ROLE`.
        user: bool,
        /// The attributes and password given.
        options: RoleOptions,
    },
    /// `ALTER USER|ROLE name [WITH] option …`.
    Alter {
        /// Role name.
        name: String,
        /// The attributes and password to change.
        options: RoleOptions,
    },
    /// `ALTER USER|ROLE name SET parameter {TO|=} value` (`Some`) or `… RESET parameter`
    /// (`None`): the role's default for a session setting.
    SetDefault {
        /// Role name.
        name: String,
        /// The setting's name.
        parameter: String,
        /// Its value, or `None` to remove the role's default.
        value: Option<String>,
    },
    /// `DROP USER|ROLE [IF EXISTS] name`.
    Drop {
        /// Role name.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
}

/// Parses `CREATE|ALTER|DROP USER|ROLE …` in Postgres' syntax, which sqlparser reads the
/// Snowflake way; `None` (nothing consumed) for any other statement.
pub fn user_statement(parser: &mut Parser) -> Result<Option<UserStatement>> {
    let keyword = |i: usize| match parser.peek_nth_token_ref(i).token {
        Token::Word(ref w) => Some(w.keyword),
        _ => None,
    };
    let verb = keyword(0);
    let noun = keyword(1);
    let is_role = matches!(noun, Some(Keyword::USER | Keyword::ROLE));
    if !is_role || !matches!(verb, Some(Keyword::CREATE | Keyword::ALTER | Keyword::DROP)) {
        return Ok(None);
    }
    parser.next_token();
    parser.next_token();
    let statement = match verb {
        Some(Keyword::CREATE) => {
            let if_not_exists =
                parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            UserStatement::Create {
                name: names::ident(&parser.parse_identifier()?),
                if_not_exists,
                user: noun == Some(Keyword::USER),
                options: role_options(parser)?,
            }
        }
        Some(Keyword::ALTER) => {
            let name = names::ident(&parser.parse_identifier()?);
            if let Some(statement) = set_default(parser, &name)? {
                return Ok(Some(statement));
            }
            let options = role_options(parser)?;
            if options == RoleOptions::default() {
                return Err(Error::Syntax(format!(
                    "ALTER ROLE {name} changes nothing: give an attribute or a PASSWORD"
                )));
            }
            UserStatement::Alter { name, options }
        }
        _ => {
            let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            UserStatement::Drop {
                name: names::ident(&parser.parse_identifier()?),
                if_exists,
            }
        }
    };
    Ok(Some(statement))
}

/// `SET parameter {TO|=} value` or `RESET parameter` after `ALTER ROLE name`; `None` when
/// neither follows.
fn set_default(parser: &mut Parser, name: &str) -> Result<Option<UserStatement>> {
    let value = if parser.parse_keyword(Keyword::SET) {
        true
    } else if parser.parse_keyword(Keyword::RESET) {
        false
    } else {
        return Ok(None);
    };
    let parameter = names::ident(&parser.parse_identifier()?);
    let value = if value {
        if !parser.consume_token(&Token::Eq) {
            parser.expect_keyword(Keyword::TO)?;
        }
        let token = parser.next_token();
        Some(match token.token {
            Token::SingleQuotedString(text) | Token::Number(text, _) => text,
            Token::Word(word) => word.value,
            other => return Err(Error::Syntax(format!("expected a value, found {other}"))),
        })
    } else {
        None
    };
    Ok(Some(UserStatement::SetDefault {
        name: name.to_string(),
        parameter,
        value,
    }))
}

/// `[WITH] option …` up to the end of the statement: `[NO]SUPERUSER`, `[NO]CREATEROLE`,
/// `[NO]LOGIN`, `[ENCRYPTED] PASSWORD 'secret' | NULL`.
fn role_options(parser: &mut Parser) -> Result<RoleOptions> {
    let _ = parser.parse_keyword(Keyword::WITH);
    let mut options = RoleOptions::default();
    loop {
        let token = parser.peek_token();
        let word = match &token.token {
            Token::EOF | Token::SemiColon => return Ok(options),
            Token::Word(w) => w.value.to_uppercase(),
            other => {
                return Err(Error::Syntax(format!(
                    "expected a role option, found {other}"
                )));
            }
        };
        parser.next_token();
        match word.as_str() {
            "SUPERUSER" => options.superuser = Some(true),
            "NOSUPERUSER" => options.superuser = Some(false),
            "CREATEROLE" => options.createrole = Some(true),
            "NOCREATEROLE" => options.createrole = Some(false),
            "LOGIN" => options.login = Some(true),
            "NOLOGIN" => options.login = Some(false),
            "ENCRYPTED" | "PASSWORD" => {
                if word == "ENCRYPTED" {
                    parser.expect_keyword(Keyword::PASSWORD)?;
                }
                options.password = Some(if parser.parse_keyword(Keyword::NULL) {
                    None
                } else {
                    Some(parser.parse_literal_string()?)
                });
            }
            "INHERIT" | "NOINHERIT" | "CREATEDB" | "NOCREATEDB" | "REPLICATION"
            | "NOREPLICATION" | "BYPASSRLS" | "NOBYPASSRLS" | "CONNECTION" | "VALID" | "IN"
            | "ROLE" | "ADMIN" | "SYSID" => {
                return Err(Error::FeatureNotSupported(format!(
                    "role option {word} is not supported; TasteDB roles have SUPERUSER, \
                     CREATEROLE, LOGIN and PASSWORD"
                )));
            }
            other => {
                return Err(Error::Syntax(format!(
                    "expected a role option, found {other}"
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::words::parse_text;

    fn parsed(sql: &str) -> Result<Option<UserStatement>> {
        parse_text(sql, user_statement)
    }

    #[test]
    fn role_statements_use_postgres_syntax() {
        assert_eq!(
            parsed("CREATE USER Ann WITH PASSWORD 'a b'").unwrap(),
            Some(UserStatement::Create {
                name: "ann".into(),
                if_not_exists: false,
                user: true,
                options: RoleOptions {
                    password: Some(Some("a b".into())),
                    ..RoleOptions::default()
                },
            })
        );
        assert_eq!(
            parsed("CREATE ROLE IF NOT EXISTS admins WITH CREATEROLE NOLOGIN").unwrap(),
            Some(UserStatement::Create {
                name: "admins".into(),
                if_not_exists: true,
                user: false,
                options: RoleOptions {
                    createrole: Some(true),
                    login: Some(false),
                    ..RoleOptions::default()
                },
            })
        );
        assert_eq!(
            parsed("ALTER ROLE ann NOSUPERUSER ENCRYPTED PASSWORD NULL").unwrap(),
            Some(UserStatement::Alter {
                name: "ann".into(),
                options: RoleOptions {
                    superuser: Some(false),
                    password: Some(None),
                    ..RoleOptions::default()
                },
            })
        );
        assert_eq!(
            parsed("DROP USER IF EXISTS ann").unwrap(),
            Some(UserStatement::Drop {
                name: "ann".into(),
                if_exists: true
            })
        );
        assert_eq!(
            parsed("ALTER ROLE ann SET statement_timeout = '5s'").unwrap(),
            Some(UserStatement::SetDefault {
                name: "ann".into(),
                parameter: "statement_timeout".into(),
                value: Some("5s".into()),
            })
        );
        assert_eq!(
            parsed("ALTER USER ann RESET Statement_Timeout").unwrap(),
            Some(UserStatement::SetDefault {
                name: "ann".into(),
                parameter: "statement_timeout".into(),
                value: None,
            })
        );
        assert_eq!(parsed("DROP TABLE ann").unwrap(), None);
        assert_eq!(parsed("ALTER USER bob").unwrap_err().sqlstate(), "42601");
        assert_eq!(
            parsed("CREATE USER bob PASSWORD").unwrap_err().sqlstate(),
            "42601"
        );
        assert_eq!(
            parsed("CREATE ROLE bob CREATEDB").unwrap_err().sqlstate(),
            "0A000"
        );
    }
}
