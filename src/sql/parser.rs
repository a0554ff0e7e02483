//! Parsing helpers shared by TasteDB's statements: `COPY … FROM` and `COPY … TO STDOUT` (which
//! DataFusion's parser does not take), and single queries given as text. Splitting a script
//! into statements is `crate::engine::parse`.

use crate::error::{Error, Result};
use crate::sql::names;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, FetchDirection,
    FetchPosition, Query, Statement as SqlStatement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

/// A parsed `COPY … TO STDOUT`.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyToStdout {
    /// The rows to send, as a query (`COPY t (a, b)` becomes `SELECT a, b FROM t`).
    pub query: Box<Query>,
    /// Format options (text by default, or csv).
    pub options: CopyOptions,
}

/// A parsed `COPY … FROM`.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyFrom {
    /// Target table (normalised).
    pub table: String,
    /// Columns the input provides, in input order; empty means all columns of the table.
    pub columns: Vec<String>,
    /// Where rows come from.
    pub source: CopySourceKind,
    /// Format options.
    pub options: CopyOptions,
}

/// Where the rows of a COPY come from.
#[derive(Debug, Clone, PartialEq)]
pub enum CopySourceKind {
    /// A file on the server's file system.
    File(String),
    /// The client connection (wire protocol only).
    Stdin,
}

/// The input format of a COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    /// Comma-separated values.
    Csv,
    /// Postgres text format: tab-separated, `\N` for NULL.
    Text,
    /// Apache Parquet.
    Parquet,
    /// PostgreSQL's binary COPY format.
    Binary,
}

/// Options of a COPY.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyOptions {
    /// Input format; `None` lets the file extension decide.
    pub format: Option<CopyFormat>,
    /// Whether the first line is a header to skip.
    pub header: bool,
    /// Field delimiter (text and csv).
    pub delimiter: Option<u8>,
}

/// Parses `text` that must be one query (SELECT, VALUES, …): view definitions, filter and
/// spine arguments, internal rewrites. Anything else is 42601.
pub fn parse_query(text: &str) -> Result<Box<Query>> {
    let mut parser = Parser::new(&PostgreSqlDialect {}).try_with_sql(text)?;
    let query = parser.parse_query()?;
    while parser.consume_token(&Token::SemiColon) {}
    match parser.peek_token().token {
        Token::EOF => Ok(query),
        _ => Err(Error::Syntax(format!("expected a query, found {text}"))),
    }
}

/// A query as a DataFusion statement.
pub fn query_statement(query: Box<Query>) -> DFStatement {
    DFStatement::Statement(Box::new(SqlStatement::Query(query)))
}

/// True at `COPY … TO STDOUT`; DataFusion's `COPY … TO` takes only file names.
pub fn is_copy_to_stdout(parser: &Parser) -> bool {
    match copy_direction(parser) {
        Some((Keyword::TO, i)) => matches!(
            &parser.peek_nth_token_ref(i + 1).token,
            Token::Word(w) if w.keyword == Keyword::STDOUT
        ),
        _ => false,
    }
}

/// True at `COPY name [(columns)] FROM`; DataFusion's parser knows only `COPY … TO`.
pub fn is_copy_from(parser: &Parser) -> bool {
    matches!(copy_direction(parser), Some((Keyword::FROM, _)))
}

/// At `COPY …`, the first FROM or TO outside parentheses and its token index.
pub(crate) fn copy_direction(parser: &Parser) -> Option<(Keyword, usize)> {
    let word = |i: usize| match parser.peek_nth_token_ref(i).token {
        Token::Word(ref w) => Some(w.keyword),
        _ => None,
    };
    if word(0) != Some(Keyword::COPY) {
        return None;
    }
    let mut i = 1;
    let mut depth = 0usize;
    loop {
        match &parser.peek_nth_token_ref(i).token {
            Token::EOF | Token::SemiColon => return None,
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(w) if depth == 0 && matches!(w.keyword, Keyword::FROM | Keyword::TO) => {
                return Some((w.keyword, i));
            }
            _ => {}
        }
        i += 1;
    }
}

/// The `COPY … TO STDOUT` that `statement` is.
pub fn copy_to_stdout(statement: SqlStatement) -> Result<CopyToStdout> {
    let SqlStatement::Copy {
        source,
        to: true,
        target: CopyTarget::Stdout,
        options,
        legacy_options,
        ..
    } = statement
    else {
        return Err(Error::Syntax("expected COPY … TO STDOUT".into()));
    };
    let query = match source {
        CopySource::Query(query) => query,
        CopySource::Table {
            table_name,
            columns,
        } => {
            let list = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let sql = format!("SELECT {list} FROM {table_name}");
            Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&sql)?
                .parse_query()?
        }
    };
    Ok(CopyToStdout {
        query,
        options: copy_options(&options, &legacy_options)?,
    })
}

/// The `COPY … FROM` that `statement` is.
pub fn copy_from(statement: SqlStatement) -> Result<CopyFrom> {
    let SqlStatement::Copy {
        source,
        to: false,
        target,
        options,
        legacy_options,
        ..
    } = statement
    else {
        return Err(Error::Syntax("expected COPY … FROM".into()));
    };
    let CopySource::Table {
        table_name,
        columns,
    } = source
    else {
        return Err(Error::Syntax("COPY FROM needs a table, not a query".into()));
    };
    let source = match target {
        CopyTarget::File { filename } => CopySourceKind::File(filename),
        CopyTarget::Stdin => CopySourceKind::Stdin,
        other => {
            return Err(Error::FeatureNotSupported(format!(
                "COPY FROM {other} is not supported"
            )));
        }
    };
    Ok(CopyFrom {
        table: names::table_name(&table_name)?,
        columns: columns.iter().map(names::ident).collect(),
        source,
        options: copy_options(&options, &legacy_options)?,
    })
}

fn copy_options(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<CopyOptions> {
    let mut parsed = CopyOptions {
        format: None,
        header: false,
        delimiter: None,
    };
    for option in options {
        match option {
            CopyOption::Format(name) => parsed.format = Some(format_named(&name.value)?),
            CopyOption::Header(header) => parsed.header = *header,
            CopyOption::Delimiter(c) => parsed.delimiter = Some(single_byte(*c)?),
            // rows are visible at once anyway: nothing to freeze
            CopyOption::Freeze(_) => {}
            other => {
                return Err(Error::FeatureNotSupported(format!(
                    "COPY option {other} is not supported"
                )));
            }
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Csv(csv_options) => {
                parsed.format = Some(CopyFormat::Csv);
                for csv_option in csv_options {
                    match csv_option {
                        CopyLegacyCsvOption::Header => parsed.header = true,
                        other => {
                            return Err(Error::FeatureNotSupported(format!(
                                "COPY option {other} is not supported"
                            )));
                        }
                    }
                }
            }
            CopyLegacyOption::Header => parsed.header = true,
            CopyLegacyOption::Delimiter(c) => parsed.delimiter = Some(single_byte(*c)?),
            other => {
                return Err(Error::FeatureNotSupported(format!(
                    "COPY option {other} is not supported"
                )));
            }
        }
    }
    Ok(parsed)
}

fn format_named(name: &str) -> Result<CopyFormat> {
    match name.to_lowercase().as_str() {
        "csv" => Ok(CopyFormat::Csv),
        "text" => Ok(CopyFormat::Text),
        "parquet" => Ok(CopyFormat::Parquet),
        "binary" => Ok(CopyFormat::Binary),
        other => Err(Error::InvalidParameter(format!(
            "COPY format \"{other}\" not recognized; use csv, text, binary or parquet"
        ))),
    }
}

fn single_byte(c: char) -> Result<u8> {
    u8::try_from(c).ok().filter(u8::is_ascii).ok_or_else(|| {
        Error::InvalidParameter("COPY delimiter must be a single ASCII character".into())
    })
}

/// `FETCH [FROM | IN] cursor` without a direction, which PostgreSQL reads as `FETCH NEXT` and
/// sqlparser refuses: consumed and answered as that statement when `parser` is at one.
pub fn fetch_next(parser: &mut Parser) -> Option<SqlStatement> {
    match parser.peek_token().token {
        Token::Word(word) if word.keyword == Keyword::FETCH => next_from(parser, 1),
        _ => None,
    }
}

/// `MOVE [direction] [FROM | IN] cursor` (which sqlparser does not know), consumed and
/// answered as the FETCH it moves like, when `parser` is at one.
pub fn move_statement(parser: &mut Parser) -> Option<Result<SqlStatement>> {
    match parser.peek_token().token {
        Token::Word(word) if word.value.eq_ignore_ascii_case("move") => {}
        _ => return None,
    }
    parser.next_token();
    Some(match next_from(parser, 0) {
        Some(fetch) => Ok(fetch),
        None => parser.parse_fetch_statement().map_err(Error::from),
    })
}

/// `[FROM | IN] cursor` and the statement's end, `start` tokens ahead: consumed with those
/// `start` tokens, as `FETCH NEXT FROM cursor`.
fn next_from(parser: &mut Parser, start: usize) -> Option<SqlStatement> {
    let word = |n: usize| {
        let token = parser.peek_nth_token(start + n);
        match token.token {
            Token::Word(word) => Some((word, token.span)),
            _ => None,
        }
    };
    let (position, name_at) = match word(0)?.0.keyword {
        Keyword::FROM => (FetchPosition::From, 1),
        Keyword::IN => (FetchPosition::In, 1),
        _ => (FetchPosition::From, 0),
    };
    let (name, span) = word(name_at)?;
    let end = parser.peek_nth_token(start + name_at + 1).token;
    if !matches!(end, Token::SemiColon | Token::EOF) {
        return None;
    }
    for _ in 0..start + name_at + 1 {
        parser.next_token();
    }
    Some(SqlStatement::Fetch {
        name: name.into_ident(span),
        direction: FetchDirection::Next,
        position,
        into: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_as_text_is_one_query() {
        assert!(parse_query("SELECT item_id FROM items WHERE price < 10;").is_ok());
        assert_eq!(parse_query("DROP TABLE t").unwrap_err().sqlstate(), "42601");
        assert_eq!(
            parse_query("SELECT 1; SELECT 2").unwrap_err().sqlstate(),
            "42601"
        );
    }
}
