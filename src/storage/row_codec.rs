//! The byte layout of one stored row.
//!
//! Written by hand because no crate fits: Arrow's row format (`arrow-row`) is documented as
//! unstable between versions, so it cannot be persisted, and serde encoders need a per-cell value
//! enum, which costs an allocation per text cell on the ingest path.
//!
//! Layout: a null bitmap of `ceil(columns / 8)` bytes (bit `i` set = column `i` is NULL), then the
//! value of every non-null column in column order: integers, floats, timestamps (µs) and dates
//! (days) little-endian in their width, booleans as one byte, text as a LEB128 length and UTF-8
//! bytes, vectors as a LEB128 count and that many little-endian f32. Each value can be skipped without decoding, so a scan decodes only projected columns.

use crate::error::{Error, Result};
use crate::schema::{ColumnType, TableDef};
use datafusion::arrow::array::PrimitiveArray;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Date32Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, ListArray, ListBuilder, RecordBatch,
    RecordBatchOptions, StringArray, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{
    Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, SchemaRef,
    TimestampMicrosecondType,
};
use std::sync::Arc;

/// A typed view of one input column whose Arrow type is exactly its table column's type.
pub enum ColumnValues<'a> {
    /// TEXT
    Text(&'a StringArray),
    /// SMALLINT
    SmallInt(&'a PrimitiveArray<Int16Type>),
    /// INT
    Int(&'a PrimitiveArray<Int32Type>),
    /// BIGINT
    BigInt(&'a PrimitiveArray<Int64Type>),
    /// REAL
    Real(&'a PrimitiveArray<Float32Type>),
    /// DOUBLE
    Double(&'a PrimitiveArray<Float64Type>),
    /// BOOLEAN
    Boolean(&'a BooleanArray),
    /// TIMESTAMP
    Timestamp(&'a PrimitiveArray<TimestampMicrosecondType>),
    /// DATE
    Date(&'a PrimitiveArray<Date32Type>),
    /// REAL[] (elements already checked: no NULLs)
    Vector(&'a ListArray, &'a [f32]),
}

impl<'a> ColumnValues<'a> {
    /// Views `array` as a column of `column_type`; the array must already have its Arrow type.
    pub fn new(column_type: ColumnType, array: &'a ArrayRef) -> Result<Self> {
        let mismatch = || {
            Error::Internal(format!(
                "column of type {} cannot be encoded as {}",
                array.data_type(),
                column_type.sql_name()
            ))
        };
        Ok(match column_type {
            ColumnType::Text => ColumnValues::Text(array.as_string_opt().ok_or_else(mismatch)?),
            ColumnType::SmallInt => {
                ColumnValues::SmallInt(array.as_primitive_opt().ok_or_else(mismatch)?)
            }
            ColumnType::Int => ColumnValues::Int(array.as_primitive_opt().ok_or_else(mismatch)?),
            ColumnType::BigInt => {
                ColumnValues::BigInt(array.as_primitive_opt().ok_or_else(mismatch)?)
            }
            ColumnType::Real => ColumnValues::Real(array.as_primitive_opt().ok_or_else(mismatch)?),
            ColumnType::Double => {
                ColumnValues::Double(array.as_primitive_opt().ok_or_else(mismatch)?)
            }
            ColumnType::Boolean => {
                ColumnValues::Boolean(array.as_boolean_opt().ok_or_else(mismatch)?)
            }
            ColumnType::Timestamp => {
                ColumnValues::Timestamp(array.as_primitive_opt().ok_or_else(mismatch)?)
            }
            ColumnType::Date => ColumnValues::Date(array.as_primitive_opt().ok_or_else(mismatch)?),
            ColumnType::Vector(_) => {
                let list = array.as_list_opt::<i32>().ok_or_else(mismatch)?;
                let values = list
                    .values()
                    .as_primitive_opt::<Float32Type>()
                    .ok_or_else(mismatch)?;
                ColumnValues::Vector(list, values.values())
            }
        })
    }

    fn array(&self) -> &dyn Array {
        match self {
            ColumnValues::Text(a) => *a,
            ColumnValues::SmallInt(a) => *a,
            ColumnValues::Int(a) => *a,
            ColumnValues::BigInt(a) => *a,
            ColumnValues::Real(a) => *a,
            ColumnValues::Double(a) => *a,
            ColumnValues::Boolean(a) => *a,
            ColumnValues::Timestamp(a) => *a,
            ColumnValues::Date(a) => *a,
            ColumnValues::Vector(a, _) => *a,
        }
    }

    /// True when the value in `row` is NULL.
    pub fn is_null(&self, row: usize) -> bool {
        self.array().is_null(row)
    }

    /// The time in `row` in microseconds since the epoch (a DATE is its midnight), as
    /// [`time_micros`] reads it from an encoded row; `None` when NULL or not a time.
    pub fn time_micros(&self, row: usize) -> Option<i64> {
        match self {
            _ if self.is_null(row) => None,
            ColumnValues::Timestamp(a) => Some(a.value(row)),
            ColumnValues::Date(a) => Some(i64::from(a.value(row)) * MICROS_PER_DAY),
            _ => None,
        }
    }

    fn encode(&self, row: usize, out: &mut Vec<u8>) {
        match self {
            ColumnValues::Text(a) => {
                let text = a.value(row).as_bytes();
                write_varint(text.len() as u64, out);
                out.extend_from_slice(text);
            }
            ColumnValues::SmallInt(a) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            ColumnValues::Int(a) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            ColumnValues::BigInt(a) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            ColumnValues::Real(a) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            ColumnValues::Double(a) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            ColumnValues::Boolean(a) => out.push(u8::from(a.value(row))),
            ColumnValues::Timestamp(a) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            ColumnValues::Date(a) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            ColumnValues::Vector(a, values) => {
                let offsets = a.value_offsets();
                let vector = &values[offsets[row] as usize..offsets[row + 1] as usize];
                write_varint(vector.len() as u64, out);
                for v in vector {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
}

/// Appends the encoding of `row` of `columns` (all columns of the table, in order) to `out`.
pub fn encode_row(columns: &[ColumnValues], row: usize, out: &mut Vec<u8>) {
    let bitmap_start = out.len();
    out.resize(bitmap_start + columns.len().div_ceil(8), 0);
    for (i, column) in columns.iter().enumerate() {
        if column.is_null(row) {
            out[bitmap_start + i / 8] |= 1 << (i % 8);
        } else {
            column.encode(row, out);
        }
    }
}

fn write_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads encoded rows into Arrow arrays, decoding only the columns a query needs.
pub struct RowDecoder {
    types: Vec<ColumnType>,
    /// One builder per table column; `None` for columns the query does not read.
    builders: Vec<Option<ColumnBuilder>>,
    projection: Vec<usize>,
    schema: SchemaRef,
    rows: usize,
}

impl RowDecoder {
    /// A decoder producing batches of `schema`, whose columns are `projection` of `table`.
    pub fn new(table: &TableDef, projection: &[usize], schema: SchemaRef, capacity: usize) -> Self {
        let mut builders: Vec<Option<ColumnBuilder>> = table.columns.iter().map(|_| None).collect();
        for &index in projection {
            if let (Some(slot), Some(column)) = (builders.get_mut(index), table.columns.get(index))
            {
                *slot = Some(ColumnBuilder::new(column.column_type, capacity));
            }
        }
        RowDecoder {
            types: table.columns.iter().map(|c| c.column_type).collect(),
            builders,
            projection: projection.to_vec(),
            schema,
            rows: 0,
        }
    }

    /// Decodes one row into the builders.
    pub fn push(&mut self, bytes: &[u8]) -> Result<()> {
        let bitmap_len = self.types.len().div_ceil(8);
        let mut cursor = Cursor {
            bytes,
            pos: bitmap_len,
        };
        let bitmap = bytes
            .get(..bitmap_len)
            .ok_or_else(|| Error::Corrupt("row shorter than its null bitmap".into()))?;
        for (i, (column_type, builder)) in self.types.iter().zip(&mut self.builders).enumerate() {
            let null = bitmap[i / 8] & (1 << (i % 8)) != 0;
            match (builder, null) {
                (Some(builder), true) => builder.append_null(),
                (Some(builder), false) => builder.append(&mut cursor)?,
                (None, true) => {}
                (None, false) => cursor.skip(*column_type)?,
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Number of rows decoded since the last [`RowDecoder::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no row is waiting in the builders.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Returns the decoded rows as a batch and starts a new one.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let finished: Vec<Option<ArrayRef>> = self
            .builders
            .iter_mut()
            .map(|b| b.as_mut().map(ColumnBuilder::finish))
            .collect();
        let columns = self
            .projection
            .iter()
            .map(|&i| {
                finished
                    .get(i)
                    .cloned()
                    .flatten()
                    .ok_or_else(|| Error::Internal(format!("projected column {i} not decoded")))
            })
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        self.rows = 0;
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?)
    }
}

/// The time in column `column` of the encoded row `bytes` of a table whose columns have `types`,
/// in microseconds since the epoch (a DATE is its midnight); `None` when it is NULL or not a
/// time. Reads no further than that column.
pub fn time_micros(types: &[ColumnType], bytes: &[u8], column: usize) -> Result<Option<i64>> {
    let bitmap_len = types.len().div_ceil(8);
    let null = bytes
        .get(column / 8)
        .ok_or_else(|| Error::Corrupt("row shorter than its null bitmap".into()))?
        & (1 << (column % 8))
        != 0;
    if null || column >= types.len() {
        return Ok(None);
    }
    let mut cursor = Cursor {
        bytes,
        pos: bitmap_len,
    };
    for (i, column_type) in types.iter().enumerate().take(column) {
        if bytes[i / 8] & (1 << (i % 8)) == 0 {
            cursor.skip(*column_type)?;
        }
    }
    Ok(match types[column] {
        ColumnType::Timestamp => Some(i64::from_le_bytes(cursor.array()?)),
        ColumnType::Date => Some(i64::from(i32::from_le_bytes(cursor.array()?)) * MICROS_PER_DAY),
        _ => None,
    })
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        match end {
            Some(end) => {
                let slice = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(slice)
            }
            None => Err(Error::Corrupt("row ends inside a value".into())),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let slice = self.take(N)?;
        slice
            .try_into()
            .map_err(|_| Error::Corrupt("value of the wrong width".into()))
    }

    fn varint(&mut self) -> Result<usize> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let [byte] = self.array::<1>()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return usize::try_from(value).map_err(|_| Error::Corrupt("text too long".into()));
            }
        }
        Err(Error::Corrupt("unterminated length".into()))
    }

    fn text(&mut self) -> Result<&'a str> {
        let len = self.varint()?;
        std::str::from_utf8(self.take(len)?).map_err(|_| Error::Corrupt("text is not UTF-8".into()))
    }

    /// A vector's values: a LEB128 count, then that many little-endian f32.
    fn vector(&mut self, out: &mut Float32Builder) -> Result<()> {
        let len = self.varint()?;
        let width = len
            .checked_mul(4)
            .ok_or_else(|| Error::Corrupt("vector too long".into()))?;
        for bytes in self.take(width)?.chunks_exact(4) {
            let value: [u8; 4] = bytes
                .try_into()
                .map_err(|_| Error::Corrupt("vector value of the wrong width".into()))?;
            out.append_value(f32::from_le_bytes(value));
        }
        Ok(())
    }

    fn skip(&mut self, column_type: ColumnType) -> Result<()> {
        let width = match column_type {
            ColumnType::Text => self.varint()?,
            ColumnType::Boolean => 1,
            ColumnType::SmallInt => 2,
            ColumnType::Int | ColumnType::Real | ColumnType::Date => 4,
            ColumnType::BigInt | ColumnType::Double | ColumnType::Timestamp => 8,
            ColumnType::Vector(_) => self
                .varint()?
                .checked_mul(4)
                .ok_or_else(|| Error::Corrupt("vector too long".into()))?,
        };
        self.take(width)?;
        Ok(())
    }
}

enum ColumnBuilder {
    Text(StringBuilder),
    SmallInt(Int16Builder),
    Int(Int32Builder),
    BigInt(Int64Builder),
    Real(Float32Builder),
    Double(Float64Builder),
    Boolean(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Date(Date32Builder),
    Vector(ListBuilder<Float32Builder>),
}

impl ColumnBuilder {
    fn new(column_type: ColumnType, capacity: usize) -> Self {
        match column_type {
            ColumnType::Text => {
                ColumnBuilder::Text(StringBuilder::with_capacity(capacity, 16 * capacity))
            }
            ColumnType::SmallInt => ColumnBuilder::SmallInt(Int16Builder::with_capacity(capacity)),
            ColumnType::Int => ColumnBuilder::Int(Int32Builder::with_capacity(capacity)),
            ColumnType::BigInt => ColumnBuilder::BigInt(Int64Builder::with_capacity(capacity)),
            ColumnType::Real => ColumnBuilder::Real(Float32Builder::with_capacity(capacity)),
            ColumnType::Double => ColumnBuilder::Double(Float64Builder::with_capacity(capacity)),
            ColumnType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::with_capacity(capacity)),
            ColumnType::Timestamp => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity))
            }
            ColumnType::Date => ColumnBuilder::Date(Date32Builder::with_capacity(capacity)),
            ColumnType::Vector(_) => {
                ColumnBuilder::Vector(ListBuilder::with_capacity(Float32Builder::new(), capacity))
            }
        }
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Text(b) => b.append_null(),
            ColumnBuilder::SmallInt(b) => b.append_null(),
            ColumnBuilder::Int(b) => b.append_null(),
            ColumnBuilder::BigInt(b) => b.append_null(),
            ColumnBuilder::Real(b) => b.append_null(),
            ColumnBuilder::Double(b) => b.append_null(),
            ColumnBuilder::Boolean(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Vector(b) => b.append_null(),
        }
    }

    fn append(&mut self, cursor: &mut Cursor) -> Result<()> {
        match self {
            ColumnBuilder::Text(b) => b.append_value(cursor.text()?),
            ColumnBuilder::SmallInt(b) => b.append_value(i16::from_le_bytes(cursor.array()?)),
            ColumnBuilder::Int(b) => b.append_value(i32::from_le_bytes(cursor.array()?)),
            ColumnBuilder::BigInt(b) => b.append_value(i64::from_le_bytes(cursor.array()?)),
            ColumnBuilder::Real(b) => b.append_value(f32::from_le_bytes(cursor.array()?)),
            ColumnBuilder::Double(b) => b.append_value(f64::from_le_bytes(cursor.array()?)),
            ColumnBuilder::Boolean(b) => {
                let [byte] = cursor.array::<1>()?;
                b.append_value(byte != 0)
            }
            ColumnBuilder::Timestamp(b) => b.append_value(i64::from_le_bytes(cursor.array()?)),
            ColumnBuilder::Date(b) => b.append_value(i32::from_le_bytes(cursor.array()?)),
            ColumnBuilder::Vector(b) => {
                cursor.vector(b.values())?;
                b.append(true);
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::SmallInt(b) => Arc::new(b.finish()),
            ColumnBuilder::Int(b) => Arc::new(b.finish()),
            ColumnBuilder::BigInt(b) => Arc::new(b.finish()),
            ColumnBuilder::Real(b) => Arc::new(b.finish()),
            ColumnBuilder::Double(b) => Arc::new(b.finish()),
            ColumnBuilder::Boolean(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Vector(b) => Arc::new(b.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, TimestampMicrosecondArray};

    fn table() -> TableDef {
        let columns = [
            ("a", ColumnType::Text),
            ("b", ColumnType::BigInt),
            ("c", ColumnType::Timestamp),
        ];
        TableDef::with_columns(1, "t", &columns)
    }

    #[test]
    fn rows_round_trip_with_nulls_and_projection() {
        let def = table();
        let a: ArrayRef = Arc::new(StringArray::from(vec![Some("héllo"), None, Some("")]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![Some(-5), Some(i64::MAX), None]));
        let c: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![
            None,
            Some(7),
            Some(-1),
        ]));
        let values = [
            ColumnValues::new(ColumnType::Text, &a).unwrap(),
            ColumnValues::new(ColumnType::BigInt, &b).unwrap(),
            ColumnValues::new(ColumnType::Timestamp, &c).unwrap(),
        ];
        let full = def.schema();
        let projected = Arc::new(full.project(&[2, 0]).unwrap());
        let mut decoder = RowDecoder::new(&def, &[2, 0], projected, 4);
        for row in 0..3 {
            let mut bytes = Vec::new();
            encode_row(&values, row, &mut bytes);
            decoder.push(&bytes).unwrap();
        }
        let batch = decoder.finish().unwrap();
        assert_eq!(batch.column(0).as_ref(), c.as_ref());
        assert_eq!(batch.column(1).as_ref(), a.as_ref());
    }

    #[test]
    fn truncated_rows_are_corrupt_not_panics() {
        let def = table();
        let a: ArrayRef = Arc::new(StringArray::from(vec!["abcdef"]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        let c: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![2]));
        let values = [
            ColumnValues::new(ColumnType::Text, &a).unwrap(),
            ColumnValues::new(ColumnType::BigInt, &b).unwrap(),
            ColumnValues::new(ColumnType::Timestamp, &c).unwrap(),
        ];
        let mut bytes = Vec::new();
        encode_row(&values, 0, &mut bytes);
        for len in 0..bytes.len() {
            let mut decoder = RowDecoder::new(&def, &[0, 1, 2], def.schema(), 1);
            assert!(matches!(
                decoder.push(&bytes[..len]),
                Err(Error::Corrupt(_))
            ));
        }
    }

    /// xorshift64*: arbitrary but repeatable bytes.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    #[test]
    fn arbitrary_bytes_decode_or_are_corrupt_never_panic() {
        let types = [
            ColumnType::Text,
            ColumnType::SmallInt,
            ColumnType::Int,
            ColumnType::BigInt,
            ColumnType::Real,
            ColumnType::Double,
            ColumnType::Boolean,
            ColumnType::Timestamp,
            ColumnType::Date,
            ColumnType::Vector(Some(3)),
            ColumnType::Vector(None),
        ];
        let names: Vec<String> = (0..types.len()).map(|i| format!("c{i}")).collect();
        let columns: Vec<(&str, ColumnType)> =
            names.iter().map(String::as_str).zip(types).collect();
        let def = TableDef::with_columns(1, "t", &columns);
        let all: Vec<usize> = (0..types.len()).collect();
        let mut state = 0x9E37_79B9_7F4A_7C15;
        for round in 0..20_000 {
            // Short rows with many small lengths, and some long ones.
            let len = (next(&mut state) % if round % 10 == 0 { 512 } else { 48 }) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next(&mut state) as u8).collect();
            // Every column read, none read, and every other one: decoding and skipping.
            for projection in [&all[..], &[], &[0, 2, 4, 6, 8, 10]] {
                let schema = Arc::new(def.schema().project(projection).unwrap());
                let mut decoder = RowDecoder::new(&def, projection, schema, 1);
                if decoder.push(&bytes).is_ok() {
                    let batch = decoder.finish().expect("a decoded row makes a batch");
                    assert_eq!(batch.num_rows(), 1);
                }
            }
        }
    }
}
