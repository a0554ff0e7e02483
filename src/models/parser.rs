//! Parsing of the model statements: `TRAIN MODEL`, `DROP MODEL`, `SHOW MODELS`,
//! `EVALUATE MODEL`, `ALTER MODEL … SET ACTIVE VERSION`, `ALTER MODEL … SET ALIAS a = n | DROP
//! ALIAS a` and `ALTER MODEL … SET | RESET (…)` (the retraining policy). Their words are not sqlparser keywords, so the statement start is
//! matched by text.

use crate::error::{Error, Result};
use crate::sql::names;
use crate::sql::words::{expect_word, literal_text, option, skip};
use datafusion::sql::sqlparser::ast::{Expr, Query, SqlOption};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

/// A statement about models.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelStatement {
    /// `TRAIN MODEL name USING algorithm FROM table | (query) [WITH (option = value, …)]`.
    Train(TrainModel),
    /// `DROP MODEL [IF EXISTS] name`.
    Drop {
        /// Model name.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `SHOW MODELS`.
    Show,
    /// `EVALUATE MODEL name [VERSION n] [ON IMPRESSIONS OF experiment]`.
    Evaluate {
        /// Model name.
        name: String,
        /// The version (the active one when not given).
        version: Option<u32>,
        /// Replay on the impressions logged by this experiment.
        impressions_of: Option<String>,
    },
    /// `ALTER MODEL name SET ACTIVE VERSION n`.
    SetActiveVersion {
        /// Model name.
        name: String,
        /// The version to serve.
        version: u32,
    },
    /// `ALTER MODEL name SET ALIAS alias = n`.
    SetAlias {
        /// Model name.
        name: String,
        /// The alias.
        alias: String,
        /// The version it names.
        version: u32,
    },
    /// `ALTER MODEL name DROP ALIAS [IF EXISTS] alias`.
    DropAlias {
        /// Model name.
        name: String,
        /// The alias.
        alias: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `ALTER MODEL name SET (option = value, …)`: the retraining policy.
    SetOptions {
        /// Model name.
        name: String,
        /// Options as (name, literal text).
        options: Vec<(String, String)>,
    },
    /// `ALTER MODEL name RESET (option, …)`.
    ResetOptions {
        /// Model name.
        name: String,
        /// Option names.
        options: Vec<String>,
    },
}

/// A parsed `TRAIN MODEL`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainModel {
    /// Model name.
    pub name: String,
    /// Algorithm name as written.
    pub algorithm: String,
    /// Where the events come from.
    pub source: TrainSource,
    /// Options as (name, literal text).
    pub options: Vec<(String, String)>,
    /// Options given as lists of values (`factors = [32, 64]`): a hyper-parameter search.
    pub lists: Vec<(String, Vec<String>)>,
}

/// The FROM of a `TRAIN MODEL`.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainSource {
    /// A table (or view) name.
    Table(String),
    /// A parenthesised query.
    Query(Box<Query>),
}

impl TrainSource {
    /// The source as SQL text, for the registry.
    pub fn to_sql(&self) -> String {
        match self {
            TrainSource::Table(name) => name.clone(),
            TrainSource::Query(query) => format!("({query})"),
        }
    }
}

/// Parses a model statement at the parser's position; `None` (nothing consumed) for any
/// other statement.
pub fn model_statement(parser: &mut Parser) -> Result<Option<ModelStatement>> {
    let word = |parser: &Parser, i: usize| match &parser.peek_nth_token_ref(i).token {
        Token::Word(w) => w.value.to_lowercase(),
        _ => String::new(),
    };
    let statement = match (word(parser, 0).as_str(), word(parser, 1).as_str()) {
        ("train", "model") => {
            skip(parser, 2);
            ModelStatement::Train(train(parser)?)
        }
        ("drop", "model") => {
            skip(parser, 2);
            let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            ModelStatement::Drop {
                name: model_name(parser)?,
                if_exists,
            }
        }
        ("show", "models") => {
            skip(parser, 2);
            ModelStatement::Show
        }
        ("evaluate", "model") => {
            skip(parser, 2);
            let name = model_name(parser)?;
            let version = match parser.parse_keyword(Keyword::VERSION) {
                true => Some(version_number(parser)?),
                false => None,
            };
            let impressions_of = match parser.parse_keyword(Keyword::ON) {
                true => {
                    expect_word(parser, "impressions")?;
                    parser.expect_keyword(Keyword::OF)?;
                    Some(model_name(parser)?)
                }
                false => None,
            };
            ModelStatement::Evaluate {
                name,
                version,
                impressions_of,
            }
        }
        ("alter", "model") => {
            skip(parser, 2);
            let name = model_name(parser)?;
            if parser.parse_keyword(Keyword::RESET) {
                parser.expect_token(&Token::LParen)?;
                let options = parser.parse_comma_separated(|p| p.parse_identifier())?;
                parser.expect_token(&Token::RParen)?;
                let options = options.iter().map(|o| o.value.to_lowercase()).collect();
                return Ok(Some(ModelStatement::ResetOptions { name, options }));
            }
            if parser.peek_nth_token_ref(1).token == Token::LParen {
                let options = parser
                    .parse_options(Keyword::SET)?
                    .into_iter()
                    .map(option)
                    .collect::<Result<_>>()?;
                return Ok(Some(ModelStatement::SetOptions { name, options }));
            }
            if parser.parse_keyword(Keyword::DROP) {
                expect_word(parser, "alias")?;
                let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
                let alias = model_name(parser)?;
                return Ok(Some(ModelStatement::DropAlias {
                    name,
                    alias,
                    if_exists,
                }));
            }
            parser.expect_keyword(Keyword::SET)?;
            if word(parser, 0) == "alias" {
                skip(parser, 1);
                let alias = model_name(parser)?;
                parser.expect_token(&Token::Eq)?;
                let version = version_number(parser)?;
                return Ok(Some(ModelStatement::SetAlias {
                    name,
                    alias,
                    version,
                }));
            }
            expect_word(parser, "active")?;
            parser.expect_keyword(Keyword::VERSION)?;
            ModelStatement::SetActiveVersion {
                name,
                version: version_number(parser)?,
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(statement))
}

fn model_name(parser: &mut Parser) -> Result<String> {
    Ok(names::ident(&parser.parse_identifier()?))
}

fn version_number(parser: &mut Parser) -> Result<u32> {
    let token = parser.next_token();
    match &token.token {
        Token::Number(n, _) => n.parse().map_err(|_| {
            Error::InvalidParameter(format!("model version must be a positive integer, not {n}"))
        }),
        other => Err(Error::Syntax(format!(
            "expected a version number, found {other}"
        ))),
    }
}

fn train(parser: &mut Parser) -> Result<TrainModel> {
    let name = model_name(parser)?;
    parser.expect_keyword(Keyword::USING)?;
    let algorithm = parser.parse_identifier()?.value;
    parser.expect_keyword(Keyword::FROM)?;
    let source = if parser.consume_token(&Token::LParen) {
        let query = parser.parse_query()?;
        parser.expect_token(&Token::RParen)?;
        TrainSource::Query(query)
    } else {
        TrainSource::Table(names::table_name(&parser.parse_object_name(false)?)?)
    };
    let (mut options, mut lists) = (Vec::new(), Vec::new());
    for given in parser.parse_options(Keyword::WITH)? {
        match &given {
            SqlOption::KeyValue {
                key,
                value: Expr::Array(array),
            } => {
                let values = array.elem.iter().map(literal_text).collect::<Result<_>>()?;
                lists.push((key.value.to_lowercase(), values));
            }
            _ => options.push(option(given)?),
        }
    }
    Ok(TrainModel {
        name,
        algorithm,
        source,
        options,
        lists,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::words::parse_text;

    fn parse(sql: &str) -> Result<Option<ModelStatement>> {
        parse_text(sql, model_statement)
    }

    fn model(sql: &str) -> ModelStatement {
        match parse(sql).unwrap() {
            Some(statement) => statement,
            None => panic!("expected a model statement: {sql}"),
        }
    }

    #[test]
    fn model_statements_parse() {
        let ModelStatement::Train(train) = model(
            "TRAIN MODEL Recs USING als FROM (SELECT user_id, item_id FROM events) \
             WITH (factors = 8, alpha = -1.5, split = 'time', refit = false)",
        ) else {
            panic!("expected TRAIN");
        };
        assert_eq!(train.name, "recs");
        assert_eq!(train.algorithm, "als");
        assert!(matches!(train.source, TrainSource::Query(_)));
        assert!(train.lists.is_empty());
        assert_eq!(
            train.options,
            [
                ("factors", "8"),
                ("alpha", "-1.5"),
                ("split", "time"),
                ("refit", "false")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let ModelStatement::Train(search) = model(
            "TRAIN MODEL recs USING als FROM events WITH (factors = [32, 64], \
             regularization = ARRAY[1, 10], trials = 4)",
        ) else {
            panic!("expected TRAIN");
        };
        assert_eq!(search.options, [("trials".to_string(), "4".to_string())]);
        let listed = |values: &[&str]| values.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        assert_eq!(
            search.lists,
            [
                ("factors".to_string(), listed(&["32", "64"])),
                ("regularization".to_string(), listed(&["1", "10"]))
            ]
        );
        assert_eq!(
            model("ALTER MODEL recs SET ACTIVE VERSION 2"),
            ModelStatement::SetActiveVersion {
                name: "recs".into(),
                version: 2
            }
        );
        assert_eq!(
            model("ALTER MODEL recs SET (retrain_every = '1 hour', promote = 'if_better')"),
            ModelStatement::SetOptions {
                name: "recs".into(),
                options: vec![
                    ("retrain_every".into(), "1 hour".into()),
                    ("promote".into(), "if_better".into())
                ]
            }
        );
        assert_eq!(
            model("ALTER MODEL recs RESET (Retrain_Every)"),
            ModelStatement::ResetOptions {
                name: "recs".into(),
                options: vec!["retrain_every".into()]
            }
        );
        assert_eq!(
            model("ALTER MODEL recs SET ALIAS Challenger = 4"),
            ModelStatement::SetAlias {
                name: "recs".into(),
                alias: "challenger".into(),
                version: 4
            }
        );
        assert_eq!(
            model("ALTER MODEL recs DROP ALIAS IF EXISTS challenger"),
            ModelStatement::DropAlias {
                name: "recs".into(),
                alias: "challenger".into(),
                if_exists: true
            }
        );
        assert_eq!(
            model("EVALUATE MODEL recs VERSION 4 ON IMPRESSIONS OF homepage"),
            ModelStatement::Evaluate {
                name: "recs".into(),
                version: Some(4),
                impressions_of: Some("homepage".into())
            }
        );
        assert_eq!(model("show models"), ModelStatement::Show);
        assert_eq!(
            model("DROP MODEL IF EXISTS recs"),
            ModelStatement::Drop {
                name: "recs".into(),
                if_exists: true
            }
        );
        assert_eq!(
            parse("TRAIN MODEL m FROM t").unwrap_err().sqlstate(),
            "42601"
        );
    }
}
