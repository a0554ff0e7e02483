//! Feature view TTLs: Postgres interval text (`'30 days'`, `'12 hours'`, `'1 week 2 days'`),
//! parsed by Arrow's interval parser.

use crate::error::{Error, Result};
use datafusion::arrow::compute::kernels::cast_utils::parse_interval_month_day_nano;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The TTL `text` in microseconds, or 22007 when it is not a positive interval of days or
/// shorter units (months have no fixed length).
pub fn parse_ttl(text: &str) -> Result<i64> {
    let bad = |why: &str| Error::InvalidDatetimeFormat(format!("invalid TTL \"{text}\": {why}"));
    let interval = parse_interval_month_day_nano(text)
        .map_err(|_| bad("expected an interval such as '30 days' or '12 hours'"))?;
    if interval.months != 0 {
        return Err(bad("months and years have no fixed length; use days"));
    }
    let micros = i64::from(interval.days)
        .checked_mul(MICROS_PER_DAY)
        .and_then(|days| days.checked_add(interval.nanoseconds / 1000))
        .ok_or_else(|| bad("too long"))?;
    if micros <= 0 {
        return Err(bad("it must be positive"));
    }
    Ok(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse_or_say_why_not() {
        assert_eq!(parse_ttl("30 days").unwrap(), 30 * MICROS_PER_DAY);
        assert_eq!(parse_ttl("1 week").unwrap(), 7 * MICROS_PER_DAY);
        assert_eq!(parse_ttl("90 minutes").unwrap(), 5_400_000_000);
        assert_eq!(parse_ttl("1 day 12 hours").unwrap(), 36 * 3_600_000_000);
        for bad in ["soon", "", "1 month", "0 days", "-2 hours"] {
            assert_eq!(parse_ttl(bad).unwrap_err().sqlstate(), "22007", "{bad}");
        }
    }
}
