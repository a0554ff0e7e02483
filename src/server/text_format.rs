//! Values in PostgreSQL's text format where arrow-pg's differs: floats as PostgreSQL 15 prints
//! them (shortest round-trip digits, scientific notation outside 1e-4 ≤ |x| < 1e15 for
//! `float8` and 1e6 for `float4`, `Infinity`, `-Infinity`, `NaN`, `-0`) and timestamps
//! without a zero fraction (`2026-01-03 12:00:00`, `…12:00:00.5`, `+00` for `timestamptz`,
//! shown in UTC). Text-format columns of these types are turned into their text before
//! arrow-pg encodes the rows; the row description keeps the column's own type.

use crate::catalog::pg_indexes::PG_TYPE_METADATA;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{
    DataType, Field, Float32Type, Float64Type, Schema, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::temporal_conversions::timestamp_us_to_datetime;
use datafusion::arrow::util::display::array_value_to_string;
use pgwire::api::Type;
use pgwire::api::results::{FieldFormat, FieldInfo};
use std::sync::Arc;

/// `batch` with its text-format float and timestamp columns (by `fields`) as PostgreSQL's
/// text.
pub fn postgres_text(batch: RecordBatch, fields: &[FieldInfo]) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    let mut changed = false;
    let mut columns = Vec::with_capacity(batch.num_columns());
    let mut new_fields = Vec::with_capacity(batch.num_columns());
    for (i, column) in batch.columns().iter().enumerate() {
        let text = fields
            .get(i)
            .is_some_and(|f| f.format() == FieldFormat::Text);
        let field = schema.field(i);
        let described = fields.get(i).map(|f| f.datatype().clone());
        let vector = matches!(described, Some(Type::INT2_VECTOR | Type::OID_VECTOR))
            && matches!(column.data_type(), DataType::List(_));
        let converted = match vector {
            true => Some(Arc::new(map(column, space_separated)) as ArrayRef),
            false => as_text(column),
        };
        match text.then_some(converted).flatten() {
            Some(strings) => {
                changed = true;
                new_fields.push(Field::new(field.name(), DataType::Utf8, true));
                columns.push(strings);
            }
            None => {
                new_fields.push(field.clone());
                columns.push(column.clone());
            }
        }
    }
    if !changed {
        return Ok(batch);
    }
    RecordBatch::try_new(Arc::new(Schema::new(new_fields)), columns)
}

/// The PostgreSQL type (`int2vector`, `oidvector`) a list column is sent as, by its metadata.
fn pg_vector_type(field: &Field) -> Option<Type> {
    match field.metadata().get(PG_TYPE_METADATA)?.as_str() {
        "int2vector" => Some(Type::INT2_VECTOR),
        "oidvector" => Some(Type::OID_VECTOR),
        _ => None,
    }
}

/// `fields` (arrow-pg's description of `schema`) with the text-format columns that are
/// PostgreSQL vectors (see [`pg_vector_type`]) described as such; their rows are sent as
/// that type's text by [`postgres_text`].
pub fn describe_vectors(schema: &Schema, fields: Vec<FieldInfo>) -> Vec<FieldInfo> {
    (fields.into_iter().zip(schema.fields()))
        .map(|(info, field)| match pg_vector_type(field) {
            Some(pg_type) if info.format() == FieldFormat::Text => FieldInfo::new(
                info.name().to_string(),
                None,
                None,
                pg_type,
                FieldFormat::Text,
            ),
            _ => info,
        })
        .collect()
}

/// A list of integers as `int2vector`/`oidvector` text: `1 2 3`.
fn space_separated(column: &ArrayRef, row: usize) -> String {
    let list = column.as_list::<i32>().value(row);
    (0..list.len())
        .map(|i| array_value_to_string(&list, i).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The column as text, for the types whose text differs from arrow-pg's.
fn as_text(column: &ArrayRef) -> Option<ArrayRef> {
    let strings: StringArray = match column.data_type() {
        DataType::Float64 => map(column, |a, i| {
            float_text(a.as_primitive::<Float64Type>().value(i))
        }),
        DataType::Float32 => map(column, |a, i| {
            let v = a.as_primitive::<Float32Type>().value(i);
            float32_text(v)
        }),
        DataType::Timestamp(unit, zone) => {
            let with_zone = zone.is_some();
            let unit = *unit;
            map(column, move |a, i| {
                let nanos = match unit {
                    TimeUnit::Second => {
                        i128::from(a.as_primitive::<TimestampSecondType>().value(i)) * 1_000_000_000
                    }
                    TimeUnit::Millisecond => {
                        i128::from(a.as_primitive::<TimestampMillisecondType>().value(i))
                            * 1_000_000
                    }
                    TimeUnit::Microsecond => {
                        i128::from(a.as_primitive::<TimestampMicrosecondType>().value(i)) * 1_000
                    }
                    TimeUnit::Nanosecond => {
                        i128::from(a.as_primitive::<TimestampNanosecondType>().value(i))
                    }
                };
                timestamp_text(nanos, with_zone)
            })
        }
        _ => return None,
    };
    Some(Arc::new(strings))
}

fn map(column: &ArrayRef, text: impl Fn(&ArrayRef, usize) -> String) -> StringArray {
    (0..column.len())
        .map(|i| column.is_valid(i).then(|| text(column, i)))
        .collect()
}

/// A `float8` as PostgreSQL prints it (15 decimal digits).
fn float_text(value: f64) -> String {
    special(value).map_or_else(
        || shortest(value.to_string(), &format!("{value:e}"), 15),
        str::to_string,
    )
}

/// A `float4` as PostgreSQL prints it (its own shortest digits, 6 decimal digits).
fn float32_text(value: f32) -> String {
    special(f64::from(value)).map_or_else(
        || shortest(value.to_string(), &format!("{value:e}"), 6),
        str::to_string,
    )
}

/// PostgreSQL's words for the values that are not numbers.
fn special(value: f64) -> Option<&'static str> {
    match value {
        v if v.is_nan() => Some("NaN"),
        f64::INFINITY => Some("Infinity"),
        f64::NEG_INFINITY => Some("-Infinity"),
        _ => None,
    }
}

/// The fixed form when the decimal exponent is in [-4, precision), else the scientific one
/// with a signed exponent of at least two digits (`1e+20`, `1.5e-07`).
fn shortest(fixed: String, scientific: &str, precision: i32) -> String {
    let Some((mantissa, exponent)) = scientific.split_once('e') else {
        return fixed;
    };
    let Ok(exponent) = exponent.parse::<i32>() else {
        return fixed;
    };
    if (-4..precision).contains(&exponent) {
        return fixed;
    }
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.abs())
}

/// A timestamp (nanoseconds since the epoch) as PostgreSQL prints it in UTC.
fn timestamp_text(nanos: i128, with_zone: bool) -> String {
    let micros = nanos.div_euclid(1_000);
    let Some(time) = i64::try_from(micros)
        .ok()
        .and_then(timestamp_us_to_datetime)
    else {
        return nanos.to_string();
    };
    let mut text = time.format("%Y-%m-%d %H:%M:%S").to_string();
    // PostgreSQL keeps microseconds, without trailing zeros
    let fraction = micros.rem_euclid(1_000_000);
    if fraction > 0 {
        let digits = format!("{fraction:06}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    if with_zone {
        text.push_str("+00");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Figures printed by PostgreSQL 15 (`SELECT 1e20::float8, …`).
    #[test]
    fn floats_read_as_postgresql_prints_them() {
        for (value, text) in [
            (1e20, "1e+20"),
            (1.5e-7, "1.5e-07"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e15, "1e+15"),
            (1e14, "100000000000000"),
            (2.0, "2"),
            (-0.0, "-0"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
            (1.25e100, "1.25e+100"),
        ] {
            assert_eq!(float_text(value), text, "{value}");
        }
        for (value, text) in [
            (1.5f32, "1.5"),
            (0.1, "0.1"),
            (1e20, "1e+20"),
            (3.4e38, "3.4e+38"),
            (123456.7, "123456.7"),
            (1234567.0, "1.234567e+06"),
            (1e-5, "1e-05"),
        ] {
            assert_eq!(float32_text(value), text, "{value}");
        }
    }

    #[test]
    fn timestamps_drop_a_zero_fraction() {
        let noon = 1_767_441_600i128 * 1_000_000_000; // 2026-01-03 12:00:00 UTC
        assert_eq!(timestamp_text(noon, false), "2026-01-03 12:00:00");
        assert_eq!(
            timestamp_text(noon + 500_000_000, false),
            "2026-01-03 12:00:00.5"
        );
        assert_eq!(timestamp_text(noon, true), "2026-01-03 12:00:00+00");
        assert_eq!(
            timestamp_text(noon + 123_000_000, true),
            "2026-01-03 12:00:00.123+00"
        );
        assert_eq!(timestamp_text(-1_000_000, false), "1969-12-31 23:59:59.999");
    }
}
