//! `COPY {table [(columns)] | (query)} TO 'target' [WITH] (FORMAT parquet, PARTITION BY (c, …),
//! HEADER, DELIMITER ',')`: PostgreSQL's option list for a COPY to a file or an object store URL,
//! which DataFusion's COPY (`STORED AS … PARTITIONED BY … OPTIONS (…)`) does not take, read into
//! DataFusion's statement. `PARTITION BY` writes Hive-style directories (`c=value/…`), as
//! DataFusion's `PARTITIONED BY` does; DataFusion's own spelling keeps working.

use crate::error::{Error, Result};
use crate::sql::parser::{copy_direction, parse_query};
use datafusion::sql::parser::{CopyToSource, CopyToStatement, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::Value;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

/// True at `COPY … TO 'target' [WITH] (`.
pub fn is_copy_to_file_with_options(parser: &Parser) -> bool {
    let Some((Keyword::TO, at)) = copy_direction(parser) else {
        return false;
    };
    let token = |n: usize| &parser.peek_nth_token_ref(at + n).token;
    if !matches!(token(1), Token::SingleQuotedString(_)) {
        return false;
    }
    match token(2) {
        Token::LParen => true,
        Token::Word(w) if w.keyword == Keyword::WITH => token(3) == &Token::LParen,
        _ => false,
    }
}

/// The statement at the parser, which [`is_copy_to_file_with_options`] recognised.
pub fn copy_to_file(parser: &mut Parser) -> Result<DFStatement> {
    parser.expect_keyword(Keyword::COPY)?;
    let source = if parser.consume_token(&Token::LParen) {
        let query = parser.parse_query()?;
        parser.expect_token(&Token::RParen)?;
        CopyToSource::Query(query)
    } else {
        let table = parser.parse_object_name(false)?;
        if parser.consume_token(&Token::LParen) {
            let columns = parser.parse_comma_separated(|p| p.parse_identifier())?;
            parser.expect_token(&Token::RParen)?;
            let columns: Vec<String> = columns.iter().map(ToString::to_string).collect();
            let text = format!("SELECT {} FROM {table}", columns.join(", "));
            CopyToSource::Query(parse_query(&text)?)
        } else {
            CopyToSource::Relation(table)
        }
    };
    parser.expect_keyword(Keyword::TO)?;
    let target = parser.parse_literal_string()?;
    let _with = parser.parse_keyword(Keyword::WITH);
    parser.expect_token(&Token::LParen)?;
    let mut copy = CopyToStatement {
        source,
        target,
        partitioned_by: Vec::new(),
        stored_as: None,
        options: Vec::new(),
    };
    loop {
        option(parser, &mut copy)?;
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    parser.expect_token(&Token::RParen)?;
    Ok(DFStatement::CopyTo(copy))
}

/// One option of the list, added to `copy`.
fn option(parser: &mut Parser, copy: &mut CopyToStatement) -> Result<()> {
    let name = parser.parse_identifier()?.value.to_lowercase();
    match name.as_str() {
        "format" => {
            let format = parser.parse_identifier()?.value.to_lowercase();
            copy.stored_as = Some(match format.as_str() {
                "parquet" | "csv" | "json" => format.to_uppercase(),
                other => {
                    return Err(Error::FeatureNotSupported(format!(
                        "COPY TO a file writes csv, parquet or json, not {other}"
                    )));
                }
            });
        }
        "partition" => {
            parser.expect_keyword(Keyword::BY)?;
            let parenthesised = parser.consume_token(&Token::LParen);
            let columns = parser.parse_comma_separated(|p| p.parse_identifier())?;
            if parenthesised {
                parser.expect_token(&Token::RParen)?;
            }
            copy.partitioned_by = columns.iter().map(crate::sql::names::ident).collect();
        }
        "header" => {
            let on = match parser.peek_token_ref().token {
                Token::Comma | Token::RParen => true,
                _ => boolean(parser)?,
            };
            copy.options
                .push(("format.has_header".into(), Value::Boolean(on)));
        }
        "delimiter" => {
            let delimiter = parser.parse_literal_string()?;
            copy.options.push((
                "format.delimiter".into(),
                Value::SingleQuotedString(delimiter),
            ));
        }
        other => {
            return Err(Error::FeatureNotSupported(format!(
                "COPY option \"{other}\" is not supported when writing to a file; these are: \
                 FORMAT, PARTITION BY, HEADER, DELIMITER"
            )));
        }
    }
    Ok(())
}

/// A boolean option value as PostgreSQL takes it: true/false, on/off, 1/0, as a word or a string.
fn boolean(parser: &mut Parser) -> Result<bool> {
    let token = parser.next_token();
    let text = match &token.token {
        Token::Word(w) => w.value.to_lowercase(),
        Token::SingleQuotedString(s) | Token::Number(s, _) => s.to_lowercase(),
        _ => String::new(),
    };
    match text.as_str() {
        "true" | "on" | "1" => Ok(true),
        "false" | "off" | "0" => Ok(false),
        _ => Err(Error::Syntax(format!(
            "HEADER takes a boolean, not {}",
            token.token
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

    fn parse(sql: &str) -> Result<DFStatement> {
        let mut parser = Parser::new(&PostgreSqlDialect {}).try_with_sql(sql)?;
        assert!(is_copy_to_file_with_options(&parser), "{sql}");
        copy_to_file(&mut parser)
    }

    #[test]
    fn postgres_options_become_datafusions() {
        let DFStatement::CopyTo(copy) =
            parse("COPY events TO 's3://b/x' (FORMAT parquet, PARTITION BY (day, kind))").unwrap()
        else {
            panic!("not a COPY TO");
        };
        assert_eq!(copy.stored_as.as_deref(), Some("PARQUET"));
        assert_eq!(copy.partitioned_by, ["day", "kind"]);
        assert_eq!(copy.target, "s3://b/x");
        let DFStatement::CopyTo(copy) =
            parse("COPY events (a, b) TO '/tmp/x.csv' WITH (FORMAT csv, HEADER, DELIMITER ';')")
                .unwrap()
        else {
            panic!("not a COPY TO");
        };
        assert_eq!(copy.source.to_string(), "(SELECT a, b FROM events)");
        assert_eq!(copy.options.len(), 2);
        assert_eq!(
            parse("COPY t TO '/tmp/x' (FORMAT binary)")
                .unwrap_err()
                .sqlstate(),
            "0A000"
        );
        assert_eq!(
            parse("COPY t TO '/tmp/x' (FREEZE)").unwrap_err().sqlstate(),
            "0A000"
        );
    }

    #[test]
    fn datafusions_own_spelling_is_left_to_it() {
        let parser = Parser::new(&PostgreSqlDialect {})
            .try_with_sql("COPY t TO '/tmp/x' STORED AS PARQUET PARTITIONED BY (a)")
            .unwrap();
        assert!(!is_copy_to_file_with_options(&parser));
    }
}
