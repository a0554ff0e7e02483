//! A read-only engine (`tastedb serve --read-only`, a replica serving a checkpoint): a statement
//! that would write is refused before it starts with 25006, worded as PostgreSQL's standbys word
//! it ("cannot execute INSERT in a read-only transaction"). The store refuses any write that
//! gets past this (a prepared statement's, a background task's) with the same code.

use crate::engine::Statement;
use crate::error::{Error, Result};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

/// 25006 unless `statement` only reads.
pub(super) fn check(statement: &Statement) -> Result<()> {
    let reads = match statement {
        Statement::CopyFrom(_) => return Err(refused("COPY FROM")),
        Statement::CopyToStdout(_) | Statement::Move(_) => true,
        Statement::Command(command) => command.read_only(),
        Statement::Shaped(shaped) => {
            let first = first_word(&shaped.query);
            matches!(first.as_str(), "SELECT" | "WITH" | "VALUES" | "TABLE")
        }
        Statement::DataFusion(statement) => datafusion_reads(statement),
    };
    match reads {
        true => Ok(()),
        false => Err(refused(&what(statement))),
    }
}

fn datafusion_reads(statement: &DFStatement) -> bool {
    match statement {
        DFStatement::Statement(sql) => sql_reads(sql),
        DFStatement::Explain(explain) => datafusion_reads(&explain.statement),
        // a file written by the server, not the database
        DFStatement::CopyTo(_) => true,
        _ => false,
    }
}

fn sql_reads(sql: &SqlStatement) -> bool {
    match sql {
        SqlStatement::Query(_)
        | SqlStatement::ShowVariable { .. }
        | SqlStatement::ShowVariables { .. }
        | SqlStatement::ShowTables { .. }
        | SqlStatement::ShowColumns { .. }
        | SqlStatement::ShowFunctions { .. }
        | SqlStatement::Set(_)
        | SqlStatement::StartTransaction { .. }
        | SqlStatement::Commit { .. }
        | SqlStatement::Rollback { .. }
        | SqlStatement::Declare { .. }
        | SqlStatement::Fetch { .. }
        | SqlStatement::Close { .. }
        | SqlStatement::Deallocate { .. }
        | SqlStatement::Discard { .. } => true,
        SqlStatement::Explain { statement, .. } => sql_reads(statement),
        _ => false,
    }
}

/// What PostgreSQL would name the statement in its message: its first words.
fn what(statement: &Statement) -> String {
    let text = match statement {
        Statement::Shaped(shaped) => shaped.query.clone(),
        Statement::DataFusion(statement) => statement.to_string(),
        Statement::Command(command) => format!("{command:?}"),
        Statement::CopyFrom(_) => "COPY FROM".into(),
        Statement::CopyToStdout(_) | Statement::Move(_) => String::new(),
    };
    let words: Vec<String> = text
        .split_whitespace()
        .take(2)
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_uppercase()
        })
        .collect();
    match words.first().map(String::as_str) {
        Some("CREATE" | "DROP" | "ALTER" | "GRANT" | "REVOKE") => words.join(" "),
        Some(first) => first.to_string(),
        None => "this statement".into(),
    }
}

fn first_word(text: &str) -> String {
    let word = text.split_whitespace().next().unwrap_or_default();
    word.trim_start_matches('(').to_uppercase()
}

fn refused(what: &str) -> Error {
    Error::ReadOnlySqlTransaction(format!(
        "cannot execute {what} in a read-only transaction (this server is a read-only replica)"
    ))
}
