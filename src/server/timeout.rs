//! `statement_timeout`: the session setting that bounds how long a statement runs (see
//! [`super::stop`] for how it is stopped).

use crate::error::Result;
use crate::sql::timeouts;
use pgwire::api::ClientInfo;
use std::time::Duration;
use tokio::time::Instant;

/// The setting's name.
pub const SETTING: &str = timeouts::STATEMENT_TIMEOUT;

/// A `statement_timeout` value: a duration, or `None` when 0 turns it off; 22023 otherwise.
pub fn parse(value: &str) -> Result<Option<Duration>> {
    timeouts::parse(SETTING, value)
}

/// The session setting that bounds how long a session may sit idle in a transaction block.
pub const IDLE_SETTING: &str = timeouts::IDLE_IN_TRANSACTION_SESSION_TIMEOUT;

/// `client`'s `idle_in_transaction_session_timeout`, if it has one.
pub fn idle_limit<C: ClientInfo>(client: &C) -> Option<Duration> {
    let value = client.metadata().get(IDLE_SETTING)?;
    timeouts::parse(IDLE_SETTING, value).ok().flatten()
}

/// When a statement of `client`'s session that starts now must have finished, if ever.
pub fn deadline<C: ClientInfo>(client: &C) -> Result<Option<Instant>> {
    let setting = client.metadata().get(SETTING).cloned();
    let timeout = match setting {
        Some(value) => parse(&value)?,
        None => None,
    };
    Ok(timeout.map(|t| Instant::now() + t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_as_postgres_reads_them() {
        assert_eq!(parse("0").unwrap(), None);
        assert_eq!(parse("1500").unwrap(), Some(Duration::from_millis(1500)));
        assert_eq!(parse("2s").unwrap(), Some(Duration::from_secs(2)));
        assert_eq!(parse(" 1 min").unwrap(), Some(Duration::from_secs(60)));
        assert_eq!(parse("250ms").unwrap(), Some(Duration::from_millis(250)));
        for bad in ["abc", "-1", "5 weeks", "", "1e99"] {
            assert_eq!(parse(bad).unwrap_err().sqlstate(), "22023", "{bad}");
        }
    }
}
