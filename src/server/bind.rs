//! Checks of a Bind message against its prepared statement. pgwire indexes the format codes
//! by column without checking their count (a short list panics the connection's task), so
//! the counts are checked here first and a bad message gets Postgres' 08P01.

use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::extendedquery::Bind;

/// Fails with 08P01 unless `bind` supplies `parameters` values and format-code lists of a
/// length Postgres accepts (none, one for all, or one per value/column).
pub fn check(bind: &Bind, statement: &str, parameters: usize, columns: usize) -> PgWireResult<()> {
    let supplied = bind.parameters.len();
    if supplied != parameters {
        return Err(protocol_violation(format!(
            "bind message supplies {supplied} parameters, but prepared statement \"{statement}\" requires {parameters}"
        )));
    }
    let parameter_formats = bind.parameter_format_codes.len();
    if parameter_formats > 1 && parameter_formats != supplied {
        return Err(protocol_violation(format!(
            "bind message has {parameter_formats} parameter formats but {supplied} parameters"
        )));
    }
    let result_formats = bind.result_column_format_codes.len();
    if result_formats > 1 && result_formats != columns {
        return Err(protocol_violation(format!(
            "bind message has {result_formats} result formats but query has {columns} columns"
        )));
    }
    let codes = bind
        .parameter_format_codes
        .iter()
        .chain(&bind.result_column_format_codes);
    if let Some(code) = codes.copied().find(|code| !matches!(code, 0 | 1)) {
        return Err(protocol_violation(format!(
            "unsupported format code: {code}"
        )));
    }
    Ok(())
}

fn protocol_violation(message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "08P01".into(),
        message,
    )))
}
