//! The statements about sources:
//! `CREATE SOURCE [IF NOT EXISTS] name FROM KAFKA (option = value, …) INTO table [(column, …)]`,
//! `ALTER SOURCE name PAUSE | RESUME` and `DROP SOURCE [IF EXISTS] name`.

use crate::error::{Error, Result};
use crate::sql::names;
use crate::sql::words::{expect_word, option, parse_words};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

/// A statement about sources.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceStatement {
    /// `CREATE SOURCE … FROM KAFKA (…) INTO table [(columns)]`.
    Create {
        /// Source name.
        name: String,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// The options, as (lower-case name, value text), in order.
        options: Vec<(String, String)>,
        /// The target table.
        table: String,
        /// The columns a message gives values for (empty: all).
        columns: Vec<String>,
    },
    /// `ALTER SOURCE name PAUSE | RESUME`.
    Pause {
        /// Source name.
        name: String,
        /// PAUSE (true) or RESUME (false).
        paused: bool,
    },
    /// `DROP SOURCE [IF EXISTS] name`.
    Drop {
        /// Source name.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
}

/// Parses a source statement; `None` (nothing consumed) for any other statement.
pub fn source_statement(parser: &mut Parser) -> Result<Option<SourceStatement>> {
    if parse_words(parser, &["create", "source"]) {
        let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = names::ident(&parser.parse_identifier()?);
        parser.expect_keyword(Keyword::FROM)?;
        let connector = names::ident(&parser.parse_identifier()?);
        if connector != "kafka" {
            return Err(Error::FeatureNotSupported(format!(
                "sources read from KAFKA only, not {connector}"
            )));
        }
        parser.expect_token(&Token::LParen)?;
        let options = parser.parse_comma_separated(Parser::parse_sql_option)?;
        parser.expect_token(&Token::RParen)?;
        let options = options.into_iter().map(option).collect::<Result<_>>()?;
        parser.expect_keyword(Keyword::INTO)?;
        let table = names::table_name(&parser.parse_object_name(false)?)?;
        let columns = match parser.consume_token(&Token::LParen) {
            true => {
                let columns = parser.parse_comma_separated(|p| p.parse_identifier())?;
                parser.expect_token(&Token::RParen)?;
                columns.iter().map(names::ident).collect()
            }
            false => Vec::new(),
        };
        return Ok(Some(SourceStatement::Create {
            name,
            if_not_exists,
            options,
            table,
            columns,
        }));
    }
    if parse_words(parser, &["alter", "source"]) {
        let name = names::ident(&parser.parse_identifier()?);
        let paused = if parse_words(parser, &["pause"]) {
            true
        } else {
            expect_word(parser, "resume")?;
            false
        };
        return Ok(Some(SourceStatement::Pause { name, paused }));
    }
    if parse_words(parser, &["drop", "source"]) {
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = names::ident(&parser.parse_identifier()?);
        return Ok(Some(SourceStatement::Drop { name, if_exists }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::words::parse_text;

    fn parse(sql: &str) -> Result<Option<SourceStatement>> {
        parse_text(sql, source_statement)
    }

    #[test]
    fn source_statements_parse() {
        let create = parse(
            "CREATE SOURCE IF NOT EXISTS Clicks FROM KAFKA (brokers = 'h:9092', topic = 'c', \
             \"fetch.wait.max.ms\" = 20) INTO Events (user_id, item_id)",
        )
        .unwrap();
        assert_eq!(
            create,
            Some(SourceStatement::Create {
                name: "clicks".into(),
                if_not_exists: true,
                options: vec![
                    ("brokers".into(), "h:9092".into()),
                    ("topic".into(), "c".into()),
                    ("fetch.wait.max.ms".into(), "20".into()),
                ],
                table: "events".into(),
                columns: vec!["user_id".into(), "item_id".into()],
            })
        );
        assert_eq!(
            parse("ALTER SOURCE clicks PAUSE").unwrap(),
            Some(SourceStatement::Pause {
                name: "clicks".into(),
                paused: true
            })
        );
        assert_eq!(
            parse("alter source clicks resume").unwrap(),
            Some(SourceStatement::Pause {
                name: "clicks".into(),
                paused: false
            })
        );
        assert_eq!(
            parse("DROP SOURCE IF EXISTS clicks").unwrap(),
            Some(SourceStatement::Drop {
                name: "clicks".into(),
                if_exists: true
            })
        );
        assert_eq!(parse("DROP TABLE clicks").unwrap(), None);
        let other = parse("CREATE SOURCE s FROM PULSAR (topic = 't') INTO t").unwrap_err();
        assert_eq!(other.sqlstate(), "0A000");
        let bad = parse("ALTER SOURCE s STOP").unwrap_err();
        assert_eq!(bad.sqlstate(), "42601");
    }
}
