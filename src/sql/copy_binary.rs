//! PostgreSQL's binary COPY format (`COPY … FROM STDIN (FORMAT binary)`, what asyncpg's
//! `copy_records_to_table` sends): the `PGCOPY` signature, flags and header extension, then
//! per row a field count and each field's length (-1 for NULL) and its binary send form,
//! then -1. Written here because the Rust crates that read it (tokio-postgres' binary_copy)
//! decode into their own row types over a live connection, not from a buffer into Arrow.

use crate::error::{Error, Result};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use datafusion::common::ScalarValue;
use std::io::{BufReader, Read};

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// Rows per batch handed to the table's writer.
const BATCH_ROWS: usize = 8192;
/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
const EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Reads binary COPY data from `reader` into batches of `schema` (the columns the COPY lists),
/// handing each to `emit` as it fills.
pub fn read_binary(
    reader: impl Read,
    schema: &SchemaRef,
    emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let mut input = Input::new(BufReader::new(reader));
    if input.take(SIGNATURE.len())? != SIGNATURE {
        return Err(bad("the PGCOPY signature is missing"));
    }
    let flags = input.i32()?;
    if flags & (1 << 16) != 0 {
        return Err(bad("rows with OIDs are not supported"));
    }
    let extension = usize::try_from(input.i32()?).map_err(|_| bad("negative header length"))?;
    input.take(extension)?;
    let width = schema.fields().len();
    let mut columns: Vec<Vec<ScalarValue>> = vec![Vec::new(); width];
    let mut row = 0usize;
    loop {
        let count = input.i16()?;
        if count == -1 {
            break;
        }
        row += 1;
        if usize::try_from(count).ok() != Some(width) {
            return Err(bad(&format!(
                "row {row} has {count} fields, the COPY lists {width} columns"
            )));
        }
        for (field, values) in schema.fields().iter().zip(columns.iter_mut()) {
            let length = input.i32()?;
            let value = match usize::try_from(length) {
                Ok(length) => decode(input.take(length)?, field)
                    .map_err(|e| bad(&format!("row {row}, column {}: {e}", field.name())))?,
                Err(_) => ScalarValue::try_from(field.data_type())?,
            };
            values.push(value);
        }
        if columns[0].len() == BATCH_ROWS {
            emit(batch(schema, &mut columns)?)?;
        }
    }
    if !columns[0].is_empty() {
        emit(batch(schema, &mut columns)?)?;
    }
    Ok(())
}

fn batch(schema: &SchemaRef, columns: &mut [Vec<ScalarValue>]) -> Result<RecordBatch> {
    let arrays = columns
        .iter_mut()
        .map(|values| Ok(ScalarValue::iter_to_array(std::mem::take(values))?))
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), arrays)?)
}

/// One field's binary send form as a value of `field`'s type.
fn decode(bytes: &[u8], field: &Field) -> std::result::Result<ScalarValue, String> {
    let fixed = |n: usize| -> std::result::Result<&[u8], String> {
        (bytes.len() == n)
            .then_some(bytes)
            .ok_or_else(|| format!("{} bytes where {n} were expected", bytes.len()))
    };
    Ok(match field.data_type() {
        DataType::Boolean => ScalarValue::Boolean(Some(fixed(1)?[0] != 0)),
        DataType::Int16 => ScalarValue::Int16(Some(i16::from_be_bytes(array(fixed(2)?)))),
        DataType::Int32 => ScalarValue::Int32(Some(i32::from_be_bytes(array(fixed(4)?)))),
        DataType::Int64 => ScalarValue::Int64(Some(i64::from_be_bytes(array(fixed(8)?)))),
        DataType::Float32 => ScalarValue::Float32(Some(f32::from_be_bytes(array(fixed(4)?)))),
        DataType::Float64 => ScalarValue::Float64(Some(f64::from_be_bytes(array(fixed(8)?)))),
        DataType::Utf8 => ScalarValue::Utf8(Some(
            String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())?,
        )),
        DataType::Binary => ScalarValue::Binary(Some(bytes.to_vec())),
        DataType::Date32 => {
            let days = i32::from_be_bytes(array(fixed(4)?));
            ScalarValue::Date32(Some(days.saturating_add(EPOCH_DAYS)))
        }
        DataType::Timestamp(TimeUnit::Microsecond, zone) => {
            let micros = i64::from_be_bytes(array(fixed(8)?));
            ScalarValue::TimestampMicrosecond(
                Some(micros.saturating_add(EPOCH_MICROS)),
                zone.clone(),
            )
        }
        DataType::FixedSizeList(item, _) | DataType::List(item)
            if item.data_type() == &DataType::Float32 =>
        {
            let values: Vec<ScalarValue> = float4_array(bytes)?
                .into_iter()
                .map(|v| ScalarValue::Float32(Some(v)))
                .collect();
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Float32))
                .cast_to(field.data_type())
                .map_err(|e| e.to_string())?
        }
        other => return Err(format!("binary COPY of {other} columns is not supported")),
    })
}

/// A one-dimensional `float4[]` in binary form (how vectors travel).
fn float4_array(bytes: &[u8]) -> std::result::Result<Vec<f32>, String> {
    let mut input = Input::new(bytes);
    let shape = |e: Error| e.to_string();
    let dimensions = input.i32().map_err(shape)?;
    input.i32().map_err(shape)?; // has-nulls flag
    input.i32().map_err(shape)?; // element type
    if dimensions == 0 {
        return Ok(Vec::new());
    }
    if dimensions != 1 {
        return Err("only one-dimensional arrays are supported".into());
    }
    let length = usize::try_from(input.i32().map_err(shape)?).map_err(|e| e.to_string())?;
    input.i32().map_err(shape)?; // lower bound
    let mut values = Vec::with_capacity(length.min(65_536));
    for _ in 0..length {
        if input.i32().map_err(shape)? != 4 {
            return Err("array elements must be non-NULL float4".into());
        }
        values.push(f32::from_be_bytes(array(input.take(4).map_err(shape)?)));
    }
    Ok(values)
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

fn bad(what: &str) -> Error {
    Error::BadCopyFile(format!("binary COPY data: {what}"))
}

/// The data still to read, and the bytes of the last field taken.
struct Input<R> {
    reader: R,
    field: Vec<u8>,
}

impl<R: Read> Input<R> {
    fn new(reader: R) -> Self {
        Input {
            reader,
            field: Vec::new(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        self.field.clear();
        let read = (&mut self.reader)
            .take(n as u64)
            .read_to_end(&mut self.field)?;
        if read < n {
            return Err(bad("the data ends in the middle of a row"));
        }
        Ok(&self.field)
    }

    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(array(self.take(2)?)))
    }

    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(array(self.take(4)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Date32Type, Int64Type, Schema};
    use std::sync::Arc;

    fn copy_data(rows: &[&[Option<&[u8]>]]) -> Vec<u8> {
        let mut data = SIGNATURE.to_vec();
        data.extend_from_slice(&0i32.to_be_bytes());
        data.extend_from_slice(&0i32.to_be_bytes());
        for row in rows {
            data.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for field in *row {
                match field {
                    Some(bytes) => {
                        data.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                        data.extend_from_slice(bytes);
                    }
                    None => data.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
        }
        data.extend_from_slice(&(-1i16).to_be_bytes());
        data
    }

    #[test]
    fn rows_of_postgresqls_binary_forms_are_read() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("day", DataType::Date32, true),
        ]));
        let id = 7i64.to_be_bytes();
        let day = 1i32.to_be_bytes(); // 2000-01-02
        let data = copy_data(&[
            &[Some(&id), Some(b"seven"), Some(&day)],
            &[Some(&id), None, None],
        ]);
        let mut batches = Vec::new();
        read_binary(&data[..], &schema, &mut |b| {
            batches.push(b);
            Ok(())
        })
        .unwrap();
        let batch = &batches[0];
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(1), 7);
        assert_eq!(batch.column(1).as_string::<i32>().value(0), "seven");
        assert!(batch.column(1).is_null(1));
        assert_eq!(
            batch.column(2).as_primitive::<Date32Type>().value(0),
            10_958
        );
    }

    #[test]
    fn malformed_data_is_22p04() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let short = 7i32.to_be_bytes();
        let wrong_width = copy_data(&[&[Some(&short)]]);
        for data in [b"PGCOPY".to_vec(), wrong_width, copy_data(&[&[None, None]])] {
            let error = read_binary(&data[..], &schema, &mut |_| Ok(())).unwrap_err();
            assert_eq!(error.sqlstate(), "22P04", "{error}");
        }
    }
}
