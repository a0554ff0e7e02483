//! Parsing of the feature-store statements: `CREATE FEATURE VIEW`, `DROP FEATURE VIEW`,
//! `SHOW FEATURE VIEWS` and `MATERIALIZE FEATURE VIEW`. Their words are not sqlparser keywords,
//! so the statement start is matched by text, as for the model statements.

use crate::error::{Error, Result};
use crate::sql::names;
use crate::sql::words::{expect_word, skip};
use datafusion::sql::sqlparser::ast::Query;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

/// A statement about feature views.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureStatement {
    /// `CREATE FEATURE VIEW [IF NOT EXISTS] name ENTITY (column) TIMESTAMP column
    /// [TTL 'interval'] AS query`.
    Create(CreateFeatureView),
    /// `DROP FEATURE VIEW [IF EXISTS] name`.
    Drop {
        /// View name.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `SHOW FEATURE VIEWS`.
    Show,
    /// `MATERIALIZE FEATURE VIEW name`.
    Materialize {
        /// View name.
        name: String,
    },
}

/// A parsed `CREATE FEATURE VIEW`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateFeatureView {
    /// View name (normalised).
    pub name: String,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// The entity key column (normalised).
    pub entity: String,
    /// The feature timestamp column (normalised).
    pub timestamp: String,
    /// The TTL as written, if any.
    pub ttl: Option<String>,
    /// The definition.
    pub query: Box<Query>,
}

/// Parses a feature statement at the parser's position; `None` (nothing consumed) for any
/// other statement.
pub fn feature_statement(parser: &mut Parser) -> Result<Option<FeatureStatement>> {
    let word = |i: usize| match &parser.peek_nth_token_ref(i).token {
        Token::Word(w) => w.value.to_lowercase(),
        _ => String::new(),
    };
    let words = (word(0), word(1), word(2));
    let statement = match (words.0.as_str(), words.1.as_str(), words.2.as_str()) {
        ("create", "feature", "view") => {
            skip(parser, 3);
            FeatureStatement::Create(create(parser)?)
        }
        ("drop", "feature", "view") => {
            skip(parser, 3);
            let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            FeatureStatement::Drop {
                name: view_name(parser)?,
                if_exists,
            }
        }
        ("show", "feature", "views") => {
            skip(parser, 3);
            FeatureStatement::Show
        }
        ("materialize", "feature", "view") => {
            skip(parser, 3);
            FeatureStatement::Materialize {
                name: view_name(parser)?,
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(statement))
}

fn view_name(parser: &mut Parser) -> Result<String> {
    Ok(names::ident(&parser.parse_identifier()?))
}

fn create(parser: &mut Parser) -> Result<CreateFeatureView> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = view_name(parser)?;
    expect_word(parser, "entity")?;
    parser.expect_token(&Token::LParen)?;
    let entity = parser.parse_comma_separated(|p| p.parse_identifier())?;
    parser.expect_token(&Token::RParen)?;
    let [entity] = entity.as_slice() else {
        return Err(Error::FeatureNotSupported(
            "a feature view has exactly one entity column; combine several into one key \
             (e.g. concat_ws) in the definition"
                .into(),
        ));
    };
    parser.expect_keyword(Keyword::TIMESTAMP)?;
    let timestamp = names::ident(&parser.parse_identifier()?);
    let ttl_next = matches!(
        &parser.peek_token_ref().token,
        Token::Word(w) if w.value.eq_ignore_ascii_case("ttl")
    );
    let ttl = if ttl_next {
        parser.next_token();
        Some(parser.parse_literal_string()?)
    } else {
        None
    };
    parser.expect_keyword(Keyword::AS)?;
    let query = parser.parse_query()?;
    Ok(CreateFeatureView {
        name,
        if_not_exists,
        entity: names::ident(entity),
        timestamp,
        ttl,
        query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::words::parse_text;

    fn parse(sql: &str) -> Result<Option<FeatureStatement>> {
        parse_text(sql, feature_statement)
    }

    fn feature(sql: &str) -> FeatureStatement {
        match parse(sql).unwrap() {
            Some(statement) => statement,
            None => panic!("expected a feature statement: {sql}"),
        }
    }

    #[test]
    fn feature_statements_parse() {
        let FeatureStatement::Create(create) = feature(
            "CREATE FEATURE VIEW User_Activity ENTITY (User_Id) TIMESTAMP ts TTL '30 days' AS \
             SELECT user_id, max(ts) AS ts, count(*) AS events FROM events GROUP BY user_id",
        ) else {
            panic!("expected CREATE");
        };
        assert_eq!(create.name, "user_activity");
        assert_eq!(create.entity, "user_id");
        assert_eq!(create.timestamp, "ts");
        assert_eq!(create.ttl.as_deref(), Some("30 days"));
        assert!(!create.if_not_exists);
        assert_eq!(feature("show feature views"), FeatureStatement::Show);
        assert_eq!(
            feature("DROP FEATURE VIEW IF EXISTS v"),
            FeatureStatement::Drop {
                name: "v".into(),
                if_exists: true
            }
        );
        assert_eq!(
            feature("MATERIALIZE FEATURE VIEW v"),
            FeatureStatement::Materialize { name: "v".into() }
        );
        let two_keys = "CREATE FEATURE VIEW v ENTITY (a, b) TIMESTAMP ts AS SELECT 1";
        assert_eq!(parse(two_keys).unwrap_err().sqlstate(), "0A000");
        let no_as = "CREATE FEATURE VIEW v ENTITY (a) TIMESTAMP ts SELECT 1";
        assert_eq!(parse(no_as).unwrap_err().sqlstate(), "42601");
    }
}
