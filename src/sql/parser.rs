//! TasteDB's SQL parser: DataFusion's parser plus the statements TasteDB adds. Each statement
//! start is peeked at; TasteDB's own forms are parsed here, all else by `DFParser`.

use crate::error::{Error, Result};
use crate::sql::feature_parser::feature_statement;
pub use crate::sql::feature_parser::{CreateFeatureView, FeatureStatement};
use crate::sql::model_parser::model_statement;
pub use crate::sql::model_parser::{ModelStatement, TrainModel, TrainSource};
use crate::sql::names;
use datafusion::sql::parser::{DFParser, DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Query,
    Statement as SqlStatement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

/// One parsed statement.
#[derive(Debug, Clone)]
pub enum Statement {
    /// Standard SQL and DataFusion's extensions; CREATE/DROP TABLE are still TasteDB's to run.
    DataFusion(Box<DFStatement>),
    /// `COPY table [(columns)] FROM 'file' | STDIN [WITH] (options)`.
    CopyFrom(CopyFrom),
    /// `CREATE USER`, `ALTER USER`, `DROP USER` (also spelled `ROLE`).
    User(UserStatement),
    /// `COPY table [(columns)] | (query) TO STDOUT [WITH] (options)`.
    CopyToStdout(CopyToStdout),
    /// `TRAIN MODEL`, `DROP MODEL`, `SHOW MODELS`, `EVALUATE MODEL`, `ALTER MODEL`.
    Model(ModelStatement),
    /// `CREATE|DROP FEATURE VIEW`, `SHOW FEATURE VIEWS`, `MATERIALIZE FEATURE VIEW`.
    Feature(FeatureStatement),
}

/// A parsed `COPY … TO STDOUT`.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyToStdout {
    /// The rows to send, as a query (`COPY t (a, b)` becomes `SELECT a, b FROM t`).
    pub query: Box<Query>,
    /// Format options (text by default, or csv).
    pub options: CopyOptions,
}

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

/// Parses one or more `;`-separated statements.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    let dialect = PostgreSqlDialect {};
    let mut parser = DFParserBuilder::new(sql).with_dialect(&dialect).build()?;
    let mut statements = Vec::new();
    loop {
        let mut separated = statements.is_empty();
        while parser.parser.consume_token(&Token::SemiColon) {
            separated = true;
        }
        let next = parser.parser.peek_token();
        if next.token == Token::EOF {
            break;
        }
        if !separated {
            return Err(Error::Syntax(format!(
                "expected end of statement, found {next}"
            )));
        }
        statements.push(parse_one(&mut parser)?);
    }
    Ok(statements)
}

/// Parses `text` that must be one query (SELECT, VALUES, …): view definitions, filter and
/// spine arguments, internal rewrites. Anything else is 42601.
pub fn parse_query(text: &str) -> Result<Box<Query>> {
    let not_a_query = || Error::Syntax(format!("expected a query, found {text}"));
    match parse(text)?.pop() {
        Some(Statement::DataFusion(df)) => match *df {
            DFStatement::Statement(statement) => match *statement {
                SqlStatement::Query(query) => Ok(query),
                _ => Err(not_a_query()),
            },
            _ => Err(not_a_query()),
        },
        _ => Err(not_a_query()),
    }
}

/// A query as a DataFusion statement.
pub fn query_statement(query: Box<Query>) -> DFStatement {
    DFStatement::Statement(Box::new(SqlStatement::Query(query)))
}

fn parse_one(parser: &mut DFParser) -> Result<Statement> {
    if let Some(user) = user_statement(&mut parser.parser)? {
        return Ok(Statement::User(user));
    }
    if let Some(model) = model_statement(&mut parser.parser)? {
        return Ok(Statement::Model(model));
    }
    if let Some(feature) = feature_statement(&mut parser.parser)? {
        return Ok(Statement::Feature(feature));
    }
    if is_copy_to_stdout(&parser.parser) {
        let statement = parser.parser.parse_statement()?;
        return copy_to_stdout(statement).map(Statement::CopyToStdout);
    }
    if is_copy_from(&parser.parser) {
        let statement = parser.parser.parse_statement()?;
        return copy_from(statement).map(Statement::CopyFrom);
    }
    Ok(Statement::DataFusion(Box::new(parser.parse_statement()?)))
}

/// Parses `CREATE|ALTER|DROP USER|ROLE …` in Postgres' syntax, which sqlparser reads the
/// Snowflake way; `None` (nothing consumed) for any other statement.
fn user_statement(parser: &mut Parser) -> Result<Option<UserStatement>> {
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

/// True at `COPY … TO STDOUT`; DataFusion's `COPY … TO` takes only file names.
fn is_copy_to_stdout(parser: &Parser) -> bool {
    match copy_direction(parser) {
        Some((Keyword::TO, i)) => matches!(
            &parser.peek_nth_token_ref(i + 1).token,
            Token::Word(w) if w.keyword == Keyword::STDOUT
        ),
        _ => false,
    }
}

/// True at `COPY name [(columns)] FROM`; DataFusion's parser knows only `COPY … TO`.
fn is_copy_from(parser: &Parser) -> bool {
    matches!(copy_direction(parser), Some((Keyword::FROM, _)))
}

/// At `COPY …`, the first FROM or TO outside parentheses and its token index.
fn copy_direction(parser: &Parser) -> Option<(Keyword, usize)> {
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

fn copy_to_stdout(statement: SqlStatement) -> Result<CopyToStdout> {
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

fn copy_from(statement: SqlStatement) -> Result<CopyFrom> {
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
        other => Err(Error::InvalidParameter(format!(
            "COPY format \"{other}\" not recognized; use csv, text or parquet"
        ))),
    }
}

fn single_byte(c: char) -> Result<u8> {
    u8::try_from(c).ok().filter(u8::is_ascii).ok_or_else(|| {
        Error::InvalidParameter("COPY delimiter must be a single ASCII character".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_from_is_ours_and_copy_to_is_datafusions() {
        let statements = parse(
            "COPY events (user_id, item_id) FROM '/tmp/e.csv' WITH (FORMAT csv, HEADER true); \
             COPY events TO '/tmp/out.csv'; SELECT 1",
        )
        .unwrap();
        assert_eq!(statements.len(), 3);
        let Statement::CopyFrom(copy) = &statements[0] else {
            panic!("expected COPY FROM, got {:?}", statements[0]);
        };
        assert_eq!(copy.table, "events");
        assert_eq!(copy.columns, vec!["user_id", "item_id"]);
        assert_eq!(copy.source, CopySourceKind::File("/tmp/e.csv".into()));
        assert_eq!(copy.options.format, Some(CopyFormat::Csv));
        assert!(copy.options.header);
        assert!(matches!(statements[1], Statement::DataFusion(_)));
    }

    #[test]
    fn user_statements_use_postgres_syntax() {
        let statements = parse(
            "CREATE USER Ann WITH PASSWORD 'a b'; ALTER ROLE ann PASSWORD 'c'; DROP USER IF EXISTS ann",
        )
        .unwrap();
        let users: Vec<_> = statements
            .into_iter()
            .map(|s| match s {
                Statement::User(user) => user,
                other => panic!("expected a user statement, got {other:?}"),
            })
            .collect();
        assert_eq!(
            users,
            vec![
                UserStatement::Create {
                    name: "ann".into(),
                    password: "a b".into(),
                    if_not_exists: false
                },
                UserStatement::Alter {
                    name: "ann".into(),
                    password: "c".into()
                },
                UserStatement::Drop {
                    name: "ann".into(),
                    if_exists: true
                },
            ]
        );
        assert_eq!(parse("CREATE USER bob").unwrap_err().sqlstate(), "42601");
    }

    #[test]
    fn missing_separator_is_a_syntax_error() {
        let error = parse("SELECT 1 SELECT 2").unwrap_err();
        assert_eq!(error.sqlstate(), "42601");
    }
}
