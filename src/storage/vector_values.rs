//! Values of vector columns (`REAL[]`): reading them from text (`[0.1, 0.2]` as pgvector writes
//! them, or Postgres' array text `{0.1,0.2}`), converting other arrays, and the rules every
//! stored vector follows: at least one element, no NULL, NaN or infinite element, and the
//! declared dimension when the column has one.

use crate::error::{Error, Result};
use crate::schema::{ColumnDef, vector_arrow_type};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float32Builder, ListArray, ListBuilder, StringArray,
};
use datafusion::arrow::compute::{CastOptions, cast, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Float32Type};
use std::sync::Arc;

/// Parses one vector from text: `[1, 2.5, -3]` or `{1,2.5,-3}`.
pub fn parse_vector_text(text: &str) -> std::result::Result<Vec<f32>, String> {
    let trimmed = text.trim();
    let inner = trimmed
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .or_else(|| trimmed.strip_prefix('{').and_then(|t| t.strip_suffix('}')))
        .ok_or_else(|| format!("\"{text}\" is not a vector; write it as [0.1, 0.2]"))?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    inner
        .split(',')
        .map(|part| {
            part.trim()
                .parse::<f32>()
                .map_err(|_| format!("\"{}\" in \"{text}\" is not a number", part.trim()))
        })
        .collect()
}

/// Why `values` cannot be a vector (of `dimension` elements, when given), if it cannot.
pub fn vector_problem(values: &[f32], dimension: Option<u32>) -> Option<String> {
    if values.is_empty() {
        return Some("a vector must have at least one element".into());
    }
    if let Some(dimension) = dimension
        && values.len() != dimension as usize
    {
        return Some(format!(
            "expected {dimension} dimensions, not {}",
            values.len()
        ));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Some("a vector cannot contain NaN or infinity".into());
    }
    None
}

/// Converts `array` (text, or any list of numbers) to the Arrow type of the vector column
/// `column` and checks every value. Errors name the 1-based row, counting from `rows_before`.
pub fn conform_vectors(array: &ArrayRef, column: &ColumnDef, rows_before: u64) -> Result<ArrayRef> {
    let row_name = |row: usize| rows_before + row as u64 + 1;
    let list: ArrayRef = match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = cast(array, &DataType::Utf8)?;
            let text: &StringArray = text.as_string();
            let mut builder = ListBuilder::with_capacity(Float32Builder::new(), text.len());
            for row in 0..text.len() {
                if text.is_null(row) {
                    builder.append_null();
                    continue;
                }
                let values = parse_vector_text(text.value(row)).map_err(|message| {
                    Error::InvalidText(format!(
                        "invalid input for vector column \"{}\": {message} (row {})",
                        column.name,
                        row_name(row)
                    ))
                })?;
                builder.values().append_slice(&values);
                builder.append(true);
            }
            Arc::new(builder.finish())
        }
        _ => {
            let strict = CastOptions {
                safe: false,
                ..Default::default()
            };
            cast_with_options(array, &vector_arrow_type(), &strict).map_err(|_| {
                Error::DatatypeMismatch(format!(
                    "column \"{}\" is a vector ({}) but the value is {}",
                    column.name,
                    column.column_type.sql_name(),
                    array.data_type()
                ))
            })?
        }
    };
    check_vectors(list.as_list::<i32>(), column, rows_before)?;
    Ok(list)
}

fn check_vectors(list: &ListArray, column: &ColumnDef, rows_before: u64) -> Result<()> {
    let dimension = match column.column_type {
        crate::schema::ColumnType::Vector(dimension) => dimension,
        _ => None,
    };
    let values = list.values().as_primitive::<Float32Type>();
    let offsets = list.value_offsets();
    for row in 0..list.len() {
        if list.is_null(row) {
            continue;
        }
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        let problem = if values.slice(start, end - start).null_count() > 0 {
            Some("a vector cannot contain NULL".to_string())
        } else {
            vector_problem(&values.values()[start..end], dimension)
        };
        if let Some(problem) = problem {
            return Err(Error::DataException(format!(
                "{problem} in column \"{}\" (row {})",
                column.name,
                rows_before + row as u64 + 1
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_and_problems() {
        assert_eq!(
            parse_vector_text("[1, 2.5,-3]").unwrap(),
            vec![1.0, 2.5, -3.0]
        );
        assert_eq!(parse_vector_text(" {1,2} ").unwrap(), vec![1.0, 2.0]);
        assert_eq!(parse_vector_text("[]").unwrap(), Vec::<f32>::new());
        assert!(parse_vector_text("1,2").is_err());
        assert!(parse_vector_text("[1,x]").is_err());
        assert!(vector_problem(&[], None).is_some());
        assert!(vector_problem(&[1.0, f32::NAN], None).is_some());
        assert!(vector_problem(&[1.0], Some(2)).is_some());
        assert!(vector_problem(&[1.0, 2.0], Some(2)).is_none());
    }
}
