//! Append-only blocks (`TableLayout::AppendOnlyBlocks`): one storage entry holds up to
//! [`BLOCK_ROWS`] rows that one statement appended, in row-id order, under the row id of its
//! first row. Writing a block costs RocksDB one entry instead of one per row — the cost that
//! dominates a log written at hundreds of thousands of rows a second.
//!
//! A block is a fixed header, then each row as a 4-byte little-endian length and the row in
//! the ordinary row encoding (`row_codec`), so readers decode a block's rows exactly as they
//! decode single rows. The header gives the row count and the range of the retention column's
//! times, so that compaction drops a block whose rows have all expired without reading them:
//!
//! | bytes | content |
//! |---|---|
//! | 0 | format, `0xB1` |
//! | 1..5 | rows, u32 LE |
//! | 5 | flags: 1 = some time present, 2 = some time NULL |
//! | 6..8 | the retention column the times are of, u16 LE (`u16::MAX`: none) |
//! | 8..16, 16..24 | the least and greatest time, i64 LE µs |
//!
//! Hand-written: the format is this small header over TasteDB's own row encoding; no crate
//! offers a container for it.

use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::storage::row_codec::{ColumnValues, encode_row};

/// Most rows in one block; a statement's batch with more becomes several blocks.
pub const BLOCK_ROWS: usize = 16_384;

const FORMAT: u8 = 0xB1;
const HEADER_LEN: usize = 24;
const SOME_TIME: u8 = 1;
const NULL_TIME: u8 = 2;
const NO_COLUMN: u16 = u16::MAX;

/// What a block's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// Rows in the block.
    pub rows: u32,
    /// The column the times are of: the table's retention column when the block was written.
    pub column: Option<usize>,
    /// The least and greatest non-NULL time in `column`, µs since the epoch.
    pub times: Option<(i64, i64)>,
    /// Whether some row's time is NULL.
    pub null_times: bool,
}

impl BlockHeader {
    /// Reads the header of the block `value`.
    pub fn read(value: &[u8]) -> Result<BlockHeader> {
        let header = value
            .get(..HEADER_LEN)
            .filter(|h| h[0] == FORMAT)
            .ok_or_else(|| Error::Corrupt("stored block without a valid header".into()))?;
        let u16_at = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
        let i64_at = |at: usize| {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(&header[at..at + 8]);
            i64::from_le_bytes(bytes)
        };
        let flags = header[5];
        let column = u16_at(6);
        Ok(BlockHeader {
            rows: u32::from_le_bytes([header[1], header[2], header[3], header[4]]),
            column: (column != NO_COLUMN).then_some(usize::from(column)),
            times: (flags & SOME_TIME != 0).then(|| (i64_at(8), i64_at(16))),
            null_times: flags & NULL_TIME != 0,
        })
    }

    /// Whether every row's time in `column` is before `cutoff`, as far as the header knows:
    /// false when the header's times are of another column or some time is NULL.
    pub fn all_before(&self, column: usize, cutoff: i64) -> bool {
        self.column == Some(column)
            && !self.null_times
            && self.times.is_some_and(|(_, greatest)| greatest < cutoff)
    }

    /// Whether no row's time in `column` is before `cutoff`, as far as the header knows.
    pub fn none_before(&self, column: usize, cutoff: i64) -> bool {
        self.column == Some(column) && self.times.is_none_or(|(least, _)| least >= cutoff)
    }
}

/// The rows of the block `value`, in order.
pub fn rows(value: &[u8]) -> Result<BlockRows<'_>> {
    let header = BlockHeader::read(value)?;
    Ok(BlockRows {
        rest: &value[HEADER_LEN..],
        left: header.rows,
    })
}

/// Iterates over the encoded rows of a block.
pub struct BlockRows<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for BlockRows<'a> {
    type Item = Result<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let row = self.rest.split_at_checked(4).and_then(|(length, rest)| {
            let length = u32::from_le_bytes(length.try_into().ok()?) as usize;
            rest.split_at_checked(length)
        });
        match row {
            Some((row, rest)) => {
                self.rest = rest;
                Some(Ok(row))
            }
            None => {
                self.left = 0;
                Some(Err(Error::Corrupt(
                    "stored block shorter than its rows".into(),
                )))
            }
        }
    }
}

/// Builds blocks of a table's encoded rows.
pub struct BlockBuilder {
    column: Option<usize>,
    bytes: Vec<u8>,
    rows: u32,
    times: Option<(i64, i64)>,
    null_times: bool,
}

impl BlockBuilder {
    /// An empty block of `def`'s rows, noting the times of its retention column.
    pub fn new(def: &TableDef) -> BlockBuilder {
        BlockBuilder {
            column: def.retention.as_ref().map(|r| r.column),
            bytes: vec![0; HEADER_LEN],
            rows: 0,
            times: None,
            null_times: false,
        }
    }

    /// Appends row `row` of `values` (every column of the table, in order).
    pub fn push(&mut self, values: &[ColumnValues], row: usize) -> Result<()> {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 4]);
        encode_row(values, row, &mut self.bytes);
        let length = u32::try_from(self.bytes.len() - at - 4)
            .map_err(|_| Error::ProgramLimitExceeded("a row of 4 GB or more".into()))?;
        self.bytes[at..at + 4].copy_from_slice(&length.to_le_bytes());
        if let Some(column) = self.column {
            match values.get(column).and_then(|v| v.time_micros(row)) {
                Some(t) => {
                    let (least, greatest) = self.times.unwrap_or((t, t));
                    self.times = Some((least.min(t), greatest.max(t)));
                }
                None => self.null_times = true,
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Rows appended since the last [`BlockBuilder::finish`].
    pub fn rows(&self) -> usize {
        self.rows as usize
    }

    /// The block of the rows appended; the builder starts a new one.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut block = std::mem::replace(&mut self.bytes, vec![0; HEADER_LEN]);
        let times = self.times.take();
        let mut flags = 0;
        if times.is_some() {
            flags |= SOME_TIME;
        }
        if std::mem::take(&mut self.null_times) {
            flags |= NULL_TIME;
        }
        let (least, greatest) = times.unwrap_or_default();
        let column = (self.column)
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(NO_COLUMN);
        block[0] = FORMAT;
        block[1..5].copy_from_slice(&std::mem::take(&mut self.rows).to_le_bytes());
        block[5] = flags;
        block[6..8].copy_from_slice(&column.to_le_bytes());
        block[8..16].copy_from_slice(&least.to_le_bytes());
        block[16..24].copy_from_slice(&greatest.to_le_bytes());
        block
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnType, Retention};
    use crate::storage::row_codec::time_micros;
    use datafusion::arrow::array::{ArrayRef, Date32Array, Int64Array};
    use std::sync::Arc;

    fn table(retention: Option<usize>) -> TableDef {
        let columns = [("day", ColumnType::Date), ("n", ColumnType::BigInt)];
        TableDef {
            retention: retention.map(|column| Retention {
                column,
                ttl_micros: 1,
                ttl: "1 microsecond".into(),
            }),
            layout: crate::schema::TableLayout::AppendOnlyBlocks,
            ..TableDef::with_columns(3, "log", &columns)
        }
    }

    /// A block of `def` with rows (day, n = 5) of `days`, and those rows encoded one by one.
    fn block(def: &TableDef, days: Vec<Option<i32>>) -> (Vec<u8>, Vec<Vec<u8>>) {
        let day: ArrayRef = Arc::new(Date32Array::from(days.clone()));
        let n: ArrayRef = Arc::new(Int64Array::from(vec![5; days.len()]));
        let values = [
            ColumnValues::new(ColumnType::Date, &day).unwrap(),
            ColumnValues::new(ColumnType::BigInt, &n).unwrap(),
        ];
        let mut builder = BlockBuilder::new(def);
        let mut rows = Vec::new();
        for row in 0..days.len() {
            builder.push(&values, row).unwrap();
            let mut bytes = Vec::new();
            encode_row(&values, row, &mut bytes);
            rows.push(bytes);
        }
        assert_eq!(builder.rows(), days.len());
        let block = builder.finish();
        assert_eq!(builder.rows(), 0, "the builder starts afresh");
        (block, rows)
    }

    #[test]
    fn rows_come_back_in_order_with_the_times_of_the_retention_column() {
        let def = table(Some(0));
        let (block, written) = block(&def, vec![Some(3), None, Some(1)]);
        let read: Vec<&[u8]> = rows(&block).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(read, written.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let day = 86_400_000_000;
        let types = [ColumnType::Date, ColumnType::BigInt];
        let times: Vec<Option<i64>> = (read.iter())
            .map(|row| time_micros(&types, row, 0).unwrap())
            .collect();
        assert_eq!(times, [Some(3 * day), None, Some(day)]);
        let header = BlockHeader::read(&block).unwrap();
        assert_eq!(
            header,
            BlockHeader {
                rows: 3,
                column: Some(0),
                times: Some((day, 3 * day)),
                null_times: true,
            }
        );
        assert!(!header.all_before(0, 4 * day), "a NULL time never expires");
        assert!(header.none_before(0, day) && !header.none_before(0, day + 1));
        assert!(
            !header.none_before(1, 0),
            "times of another column say nothing"
        );

        // a table without retention notes no times
        let header = BlockHeader::read(&self::block(&table(None), vec![Some(1)]).0).unwrap();
        assert_eq!((header.rows, header.column, header.times), (1, None, None));
    }

    #[test]
    fn damaged_blocks_are_errors_not_panics() {
        let (block, written) = block(&table(Some(0)), vec![Some(1)]);
        assert!(BlockHeader::read(&block[..10]).is_err());
        assert!(BlockHeader::read(&written[0]).is_err());
        let cut = &block[..block.len() - 1];
        let read: Vec<Result<&[u8]>> = rows(cut).unwrap().collect();
        assert!(matches!(read.as_slice(), [Err(Error::Corrupt(_))]));
    }
}
