//! TasteDB errors as Postgres ErrorResponse fields: SQLSTATE, message, and the position of a
//! syntax error in the statement text.

use crate::error::Error;
use pgwire::error::{ErrorInfo, PgWireError};

/// The ErrorResponse fields of `error`, raised by `sql`.
pub fn error_info(error: &Error, sql: &str) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".into(), error.sqlstate().into(), error.to_string());
    info.severity_nonlocalized = Some("ERROR".into());
    info.position = syntax_position(sql, &error.to_string()).map(|p| p.to_string());
    info
}

/// `error` as a pgwire error that keeps its SQLSTATE.
pub fn to_pgwire(error: &Error, sql: &str) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(error, sql)))
}

/// Logs a failed statement as PostgreSQL's server log does (`ERROR: … STATEMENT: …`): at
/// WARN, with the SQLSTATE, the message, the statement's first 500 characters and the client's
/// address.
pub fn log_failure(client: std::net::SocketAddr, info: &ErrorInfo, sql: &str) {
    let statement: String = sql.chars().take(500).collect();
    let cut = if statement.len() < sql.len() {
        " …"
    } else {
        ""
    };
    tracing::warn!(
        client = %client,
        sqlstate = %info.code,
        "{}: {} (statement: {statement}{cut})",
        info.severity,
        info.message
    );
}

/// The 1-based character position that sqlparser's "… at Line: L, Column: C" points to.
fn syntax_position(sql: &str, message: &str) -> Option<usize> {
    let location = message.rsplit(" at Line: ").next()?;
    let (line, rest) = location.split_once(", Column: ")?;
    let line: usize = line.trim().parse().ok()?;
    let column: usize = rest
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    let before: usize = sql
        .split('\n')
        .take(line.checked_sub(1)?)
        .map(|l| l.chars().count() + 1)
        .sum();
    Some(before + column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters_across_lines() {
        let sql = "SELECT 1;\nSELEC é FROM t";
        let message =
            "syntax error: Expected: an SQL statement, found: SELEC at Line: 2, Column: 1";
        assert_eq!(syntax_position(sql, message), Some(11));
        assert_eq!(syntax_position(sql, "no location here"), None);
    }
}
