//! Checks of a Bind message against its prepared statement. pgwire indexes the format codes
//! by column without checking their count (a short list panics the connection's task), so
//! the counts are checked here first and a bad message gets Postgres' 08P01.

use bytes::Bytes;
use datafusion::arrow::datatypes::DataType;
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
/// Days from 2000-01-01 (PostgreSQL's binary date epoch) to 9999-12-31 and to 0001-01-01.
const DAYS_TO_LAST_DATE: i32 = 2_921_939;
const DAYS_TO_FIRST_DATE: i32 = -730_119;

/// Reads the binary date infinities that asyncpg sends for `date.max` and `date.min` as
/// 9999-12-31 and 0001-01-01, the dates asyncpg reads those back as: TasteDB's dates (Arrow
/// Date32) have no infinity.
pub fn finite_dates(bind: &mut Bind, types: &[DataType]) {
    for (i, data_type) in types.iter().enumerate() {
        let binary = match bind.parameter_format_codes.as_slice() {
            [] => false,
            [all] => *all == 1,
            codes => codes.get(i) == Some(&1),
        };
        if *data_type != DataType::Date32 || !binary {
            continue;
        }
        if let Some(Some(bytes)) = bind.parameters.get_mut(i) {
            let days = match bytes.as_ref() {
                [0x7f, 0xff, 0xff, 0xff] => DAYS_TO_LAST_DATE,
                [0x80, 0, 0, 0] => DAYS_TO_FIRST_DATE,
                _ => continue,
            };
            *bytes = Bytes::copy_from_slice(&days.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_infinities_become_the_first_and_last_dates() {
        let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
        let days = |y, m, d| (chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap() - epoch).num_days();
        assert_eq!(days(9999, 12, 31), i64::from(DAYS_TO_LAST_DATE));
        assert_eq!(days(1, 1, 1), i64::from(DAYS_TO_FIRST_DATE));
        let infinity = Some(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff]));
        let mut bind = Bind::new(
            None,
            None,
            vec![1],
            vec![infinity.clone(), infinity.clone()],
            vec![],
        );
        finite_dates(&mut bind, &[DataType::Date32, DataType::Int32]);
        let last = DAYS_TO_LAST_DATE.to_be_bytes();
        assert_eq!(bind.parameters[0].as_deref(), Some(&last[..]));
        assert_eq!(bind.parameters[1], infinity);
    }
}
