//! [`Statement`] and [`parse`]: a script split into statements. Each statement start is
//! offered to TasteDB's statement families first (`FAMILIES`), then recognised as a COPY
//! that DataFusion's parser does not take, and otherwise parsed by `DFParser` (PostgreSQL
//! dialect).

use crate::engine::command::Command;
use crate::engine::depth;
use crate::engine::extensions::FAMILIES;
use crate::engine::fast_path::Shaped;
use crate::error::{Error, Result};
use crate::sql::parser::{
    CopyFrom, CopyToStdout, copy_from, copy_to_stdout, is_copy_from, is_copy_to_stdout,
};
use datafusion::sql::parser::{DFParser, DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::Token;
use std::sync::Arc;

/// One parsed statement.
#[derive(Debug, Clone)]
pub enum Statement {
    /// Standard SQL and DataFusion's extensions, planned by DataFusion; TasteDB runs
    /// CREATE TABLE, DROP TABLE and INSERT into stored tables itself.
    DataFusion(Box<DFStatement>),
    /// `COPY table [(columns)] FROM 'file' | STDIN [WITH] (options)`.
    CopyFrom(CopyFrom),
    /// `COPY table [(columns)] | (query) TO STDOUT [WITH] (options)`.
    CopyToStdout(CopyToStdout),
    /// A statement of one of TasteDB's statement families.
    Command(Arc<dyn Command>),
    /// `MOVE …`, held as the FETCH it moves like (cursors belong to server connections).
    Move(Box<SqlStatement>),
    /// A statement known by its tokens, not parsed (see [`crate::engine::Template`]).
    Shaped(Box<Shaped>),
}

impl Statement {
    /// The SQL statement, when this is one DataFusion plans (not a DataFusion extension such
    /// as `CREATE EXTERNAL TABLE`).
    pub fn sql(&self) -> Option<&SqlStatement> {
        match self {
            Statement::DataFusion(df) => match df.as_ref() {
                DFStatement::Statement(sql) => Some(sql),
                _ => None,
            },
            _ => None,
        }
    }

    /// [`Statement::sql`], to rewrite.
    pub fn sql_mut(&mut self) -> Option<&mut SqlStatement> {
        match self {
            Statement::DataFusion(df) => match df.as_mut() {
                DFStatement::Statement(sql) => Some(sql),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Parses one or more `;`-separated statements; a script nested deeper than
/// `depth::MAX_DEPTH` is refused with `54001` before it is parsed.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    depth::check(sql)?;
    let freeze_words = crate::sql::words::copy_freeze_booleans(sql);
    let sql = freeze_words.as_deref().unwrap_or(sql);
    let dialect = PostgreSqlDialect {};
    let mut parser = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .with_recursion_limit(depth::MAX_DEPTH)
        .build()?;
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
        let mut statement = parse_one(&mut parser)?;
        if let Some(sql) = statement.sql_mut() {
            crate::sql::precedence::regroup_distinct_from(sql);
        }
        statements.push(statement);
    }
    Ok(statements)
}

fn parse_one(parser: &mut DFParser) -> Result<Statement> {
    for family in FAMILIES {
        if let Some(command) = (family.parse)(&mut parser.parser)? {
            return Ok(Statement::Command(command));
        }
    }
    if let Some(moved) = crate::sql::parser::move_statement(&mut parser.parser) {
        return Ok(Statement::Move(Box::new(moved?)));
    }
    if let Some(fetch) = crate::sql::parser::fetch_next(&mut parser.parser) {
        return Ok(Statement::DataFusion(Box::new(DFStatement::Statement(
            Box::new(fetch),
        ))));
    }
    if is_copy_to_stdout(&parser.parser) {
        let statement = parser.parser.parse_statement()?;
        return copy_to_stdout(statement).map(Statement::CopyToStdout);
    }
    if crate::sql::copy_to_file::is_copy_to_file_with_options(&parser.parser) {
        let copy = crate::sql::copy_to_file::copy_to_file(&mut parser.parser)?;
        return Ok(Statement::DataFusion(Box::new(copy)));
    }
    if is_copy_from(&parser.parser) {
        let statement = parser.parser.parse_statement()?;
        return copy_from(statement).map(Statement::CopyFrom);
    }
    Ok(Statement::DataFusion(Box::new(parser.parse_statement()?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parser::{CopyFormat, CopySourceKind};

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
    fn every_family_is_tried() {
        let statements = parse(
            "CREATE USER ann PASSWORD 'x'; SHOW MODELS; SHOW FEATURE VIEWS; \
             DROP INDEX IF EXISTS i; SELECT 1",
        )
        .unwrap();
        let commands = statements
            .iter()
            .filter(|s| matches!(s, Statement::Command(_)))
            .count();
        assert_eq!(commands, 4);
    }

    #[test]
    fn missing_separator_is_a_syntax_error() {
        let error = parse("SELECT 1 SELECT 2").unwrap_err();
        assert_eq!(error.sqlstate(), "42601");
    }
}
