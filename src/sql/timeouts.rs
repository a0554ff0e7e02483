//! The session timeouts (`statement_timeout`, `idle_in_transaction_session_timeout`) as
//! settings: their names and how their values read, shared by `SET`, role defaults and the
//! server's options.

use crate::error::{Error, Result};
use std::time::Duration;

/// How long a statement may run.
pub const STATEMENT_TIMEOUT: &str = "statement_timeout";

/// How long a session may sit idle inside a transaction block before it is closed.
pub const IDLE_IN_TRANSACTION_SESSION_TIMEOUT: &str = "idle_in_transaction_session_timeout";

/// The settings that are timeouts (and may be role defaults).
pub const TIMEOUTS: &[&str] = &[STATEMENT_TIMEOUT, IDLE_IN_TRANSACTION_SESSION_TIMEOUT];

/// The value of the timeout `setting` in PostgreSQL's forms: milliseconds as a number, or a
/// number with one of the units `ms`, `s`, `min`, `h`, `d`; 0 turns it off (`None`).
/// Anything else is 22023.
pub fn parse(setting: &str, value: &str) -> Result<Option<Duration>> {
    let text = value.trim().to_ascii_lowercase();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "" | "ms" => 1.0,
        "s" => 1e3,
        "min" => 60e3,
        "h" => 3_600e3,
        "d" => 86_400e3,
        _ => f64::NAN,
    };
    let millis = number.parse::<f64>().map(|n| n * scale);
    match millis {
        Ok(ms) if (0.0..2_147_483_648.0).contains(&ms) => {
            Ok((ms >= 1.0).then(|| Duration::from_millis(ms as u64)))
        }
        _ => Err(Error::InvalidParameter(format!(
            "invalid value for parameter \"{setting}\": \"{value}\""
        ))),
    }
}
