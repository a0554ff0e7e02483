//! Parsing of `CREATE EXPERIMENT [IF NOT EXISTS] name ON MODEL model (alias weight, …) [SALT
//! 'salt'] [WITH (window = '1 hour', success = 'purchase', events = 'events')]`, `DROP
//! EXPERIMENT [IF EXISTS] name`, `STOP EXPERIMENT name` and `PROMOTE EXPERIMENT name ARM
//! alias`.

use crate::error::{Error, Result};
use crate::sql::names;
use crate::sql::words::option;
use crate::sql::words::{expect_word, parse_words};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

/// A statement about experiments.
#[derive(Debug, Clone, PartialEq)]
pub enum ExperimentStatement {
    /// `CREATE EXPERIMENT`.
    Create(CreateExperiment),
    /// `DROP EXPERIMENT [IF EXISTS] name`.
    Drop {
        /// Experiment name.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `STOP EXPERIMENT name`.
    Stop {
        /// Experiment name.
        name: String,
    },
    /// `PROMOTE EXPERIMENT name ARM alias`.
    Promote {
        /// Experiment name.
        name: String,
        /// The arm whose version becomes the active one.
        arm: String,
    },
}

/// A parsed `CREATE EXPERIMENT`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateExperiment {
    /// Experiment name.
    pub name: String,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// The model.
    pub model: String,
    /// (alias, weight) in order.
    pub arms: Vec<(String, u32)>,
    /// `SALT 'text'`.
    pub salt: Option<String>,
    /// Options as (name, literal text).
    pub options: Vec<(String, String)>,
}

/// Parses an experiment statement; `None` (nothing consumed) for any other statement.
pub fn experiment_statement(parser: &mut Parser) -> Result<Option<ExperimentStatement>> {
    if parse_words(parser, &["create", "experiment"]) {
        return create(parser).map(|c| Some(ExperimentStatement::Create(c)));
    }
    if parse_words(parser, &["drop", "experiment"]) {
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = identifier(parser)?;
        return Ok(Some(ExperimentStatement::Drop { name, if_exists }));
    }
    if parse_words(parser, &["stop", "experiment"]) {
        let name = identifier(parser)?;
        return Ok(Some(ExperimentStatement::Stop { name }));
    }
    if parse_words(parser, &["promote", "experiment"]) {
        let name = identifier(parser)?;
        expect_word(parser, "arm")?;
        let arm = identifier(parser)?;
        return Ok(Some(ExperimentStatement::Promote { name, arm }));
    }
    Ok(None)
}

fn create(parser: &mut Parser) -> Result<CreateExperiment> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = identifier(parser)?;
    parser.expect_keyword(Keyword::ON)?;
    expect_word(parser, "model")?;
    let model = identifier(parser)?;
    parser.expect_token(&Token::LParen)?;
    let arms = parser.parse_comma_separated(|p| {
        let alias = names::ident(&p.parse_identifier()?);
        let weight = match p.next_token().token {
            Token::Number(n, _) => n.parse::<u32>().ok().filter(|w| *w > 0),
            _ => None,
        };
        let weight = weight.ok_or_else(|| {
            datafusion::sql::sqlparser::parser::ParserError::ParserError(format!(
                "arm \"{alias}\" needs a positive integer weight"
            ))
        })?;
        Ok((alias, weight))
    })?;
    parser.expect_token(&Token::RParen)?;
    let salt = match parse_words(parser, &["salt"]) {
        true => match parser.next_token().token {
            Token::SingleQuotedString(salt) => Some(salt),
            other => {
                return Err(Error::Syntax(format!(
                    "expected the salt as a string, found {other}"
                )));
            }
        },
        false => None,
    };
    let options = parser
        .parse_options(Keyword::WITH)?
        .into_iter()
        .map(option)
        .collect::<Result<_>>()?;
    Ok(CreateExperiment {
        name,
        if_not_exists,
        model,
        arms,
        salt,
        options,
    })
}

fn identifier(parser: &mut Parser) -> Result<String> {
    Ok(names::ident(&parser.parse_identifier()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::words::parse_text;

    fn parse(sql: &str) -> Result<Option<ExperimentStatement>> {
        parse_text(sql, experiment_statement)
    }

    #[test]
    fn experiment_statements_parse() {
        let create = parse(
            "CREATE EXPERIMENT Homepage ON MODEL recs (champion 90, Challenger 10) SALT 's1' \
             WITH (window = '1 hour', success = 'purchase')",
        );
        assert_eq!(
            create.unwrap(),
            Some(ExperimentStatement::Create(CreateExperiment {
                name: "homepage".into(),
                if_not_exists: false,
                model: "recs".into(),
                arms: vec![("champion".into(), 90), ("challenger".into(), 10)],
                salt: Some("s1".into()),
                options: vec![
                    ("window".into(), "1 hour".into()),
                    ("success".into(), "purchase".into())
                ],
            }))
        );
        assert_eq!(
            parse("PROMOTE EXPERIMENT homepage ARM challenger").unwrap(),
            Some(ExperimentStatement::Promote {
                name: "homepage".into(),
                arm: "challenger".into()
            })
        );
        assert_eq!(
            parse("stop experiment homepage").unwrap(),
            Some(ExperimentStatement::Stop {
                name: "homepage".into()
            })
        );
        assert_eq!(
            parse("DROP EXPERIMENT IF EXISTS homepage").unwrap(),
            Some(ExperimentStatement::Drop {
                name: "homepage".into(),
                if_exists: true
            })
        );
        for bad in [
            "CREATE EXPERIMENT e ON MODEL m (a)",
            "CREATE EXPERIMENT e ON MODEL m (a 0)",
            "CREATE EXPERIMENT e ON MODEL m (a 1) SALT 3",
            "PROMOTE EXPERIMENT e",
        ] {
            assert_eq!(parse(bad).unwrap_err().sqlstate(), "42601", "{bad}");
        }
        assert_eq!(parse("SELECT 1").unwrap(), None);
    }
}
