//! Parsing of `CREATE USER`, `ALTER USER` and `DROP USER` (also spelled `ROLE`) in Postgres'
//! syntax, which sqlparser reads the Snowflake way.

use crate::error::Result;
use crate::sql::names;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

/// A statement about the users of the wire server.
#[derive(Debug, Clone, PartialEq)]
pub enum UserStatement {
    /// `CREATE USER [IF NOT EXISTS] name [WITH] PASSWORD 'secret'`.
    Create {
        /// User name.
        name: String,
        /// The password.
        password: String,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
    },
    /// `ALTER USER name [WITH] PASSWORD 'secret'`.
    Alter {
        /// User name.
        name: String,
        /// The new password.
        password: String,
    },
    /// `DROP USER [IF EXISTS] name`.
    Drop {
        /// User name.
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
    let is_user = matches!(keyword(1), Some(Keyword::USER | Keyword::ROLE));
    if !is_user || !matches!(verb, Some(Keyword::CREATE | Keyword::ALTER | Keyword::DROP)) {
        return Ok(None);
    }
    parser.next_token();
    parser.next_token();
    let statement = match verb {
        Some(Keyword::CREATE) => {
            let if_not_exists =
                parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            let name = names::ident(&parser.parse_identifier()?);
            UserStatement::Create {
                password: password_clause(parser)?,
                name,
                if_not_exists,
            }
        }
        Some(Keyword::ALTER) => {
            let name = names::ident(&parser.parse_identifier()?);
            UserStatement::Alter {
                password: password_clause(parser)?,
                name,
            }
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

/// `[WITH] [LOGIN] PASSWORD 'secret'`.
fn password_clause(parser: &mut Parser) -> Result<String> {
    let _ = parser.parse_keyword(Keyword::WITH);
    let _ = parser.parse_keyword(Keyword::LOGIN);
    parser.expect_keyword(Keyword::PASSWORD)?;
    Ok(parser.parse_literal_string()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::words::parse_text;

    fn parsed(sql: &str) -> Result<Option<UserStatement>> {
        parse_text(sql, user_statement)
    }

    #[test]
    fn user_statements_use_postgres_syntax() {
        assert_eq!(
            parsed("CREATE USER Ann WITH PASSWORD 'a b'").unwrap(),
            Some(UserStatement::Create {
                name: "ann".into(),
                password: "a b".into(),
                if_not_exists: false
            })
        );
        assert_eq!(
            parsed("ALTER ROLE ann PASSWORD 'c'").unwrap(),
            Some(UserStatement::Alter {
                name: "ann".into(),
                password: "c".into()
            })
        );
        assert_eq!(
            parsed("DROP USER IF EXISTS ann").unwrap(),
            Some(UserStatement::Drop {
                name: "ann".into(),
                if_exists: true
            })
        );
        assert_eq!(parsed("DROP TABLE ann").unwrap(), None);
        assert_eq!(parsed("CREATE USER bob").unwrap_err().sqlstate(), "42601");
    }
}
