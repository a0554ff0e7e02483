//! Row expiry under a table's retention (`TableDef::retention`): readers skip expired rows
//! ([`Expiry`]), and RocksDB's compaction filter drops them from disk ([`Retentions`]), so no
//! scan ever deletes them. A row whose time is NULL never expires.

use crate::schema::{ColumnType, TableDef};
use crate::storage::keys;
use crate::storage::row_blocks::{self, BlockHeader};
use crate::storage::row_codec::time_micros;
use rocksdb::compaction_filter::{CompactionFilter, Decision};
use rocksdb::compaction_filter_factory::{CompactionFilterContext, CompactionFilterFactory};
use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Whether rows of one table have expired, judged at one moment.
#[derive(Debug, Clone)]
pub struct Expiry {
    types: Vec<ColumnType>,
    column: usize,
    /// Rows whose time is before this (µs since the epoch) have expired.
    cutoff: i64,
}

impl Expiry {
    /// The test for the rows of `def` now; `None` when the table keeps its rows forever.
    pub fn now(def: &TableDef) -> Option<Expiry> {
        let retention = def.retention.as_ref()?;
        Some(Expiry {
            types: def.columns.iter().map(|c| c.column_type).collect(),
            column: retention.column,
            cutoff: now_micros().saturating_sub(retention.ttl_micros),
        })
    }

    /// Whether the encoded row `row` has expired. A row whose time cannot be read counts as
    /// live: the decoder reports the damage when the row is read.
    pub fn expired(&self, row: &[u8]) -> bool {
        matches!(time_micros(&self.types, row, self.column), Ok(Some(t)) if t < self.cutoff)
    }

    /// What the header of a block says of its rows: all expired (`Some(true)`), none
    /// (`Some(false)`), or each row must be judged (`None`).
    pub(super) fn of_block(&self, header: &BlockHeader) -> Option<bool> {
        if header.all_before(self.column, self.cutoff) {
            Some(true)
        } else if header.none_before(self.column, self.cutoff) {
            Some(false)
        } else {
            None
        }
    }

    /// Whether `row`, if there is one, is there and live.
    pub fn live(expiry: Option<&Expiry>, row: Option<&[u8]>) -> bool {
        match (expiry, row) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(expiry), Some(row)) => !expiry.expired(row),
        }
    }
}

/// The retention of every table that has one, by table id: what the compaction filter, which
/// runs on RocksDB's background threads, judges rows by. The catalog keeps it in step with the
/// table definitions.
#[derive(Debug, Clone, Default)]
pub struct Retentions(Arc<RwLock<HashMap<u64, Arc<Rule>>>>);

#[derive(Debug, Clone)]
struct Rule {
    types: Vec<ColumnType>,
    column: usize,
    ttl_micros: i64,
    /// Whether the table's entries are blocks of rows (`row_blocks`).
    blocks: bool,
}

impl Retentions {
    /// Records `def`'s retention (or that it has none).
    pub fn set(&self, def: &TableDef) {
        let mut rules = self.0.write().unwrap_or_else(|p| p.into_inner());
        match &def.retention {
            Some(retention) => {
                let rule = Rule {
                    types: def.columns.iter().map(|c| c.column_type).collect(),
                    column: retention.column,
                    ttl_micros: retention.ttl_micros,
                    blocks: def.is_blocks(),
                };
                rules.insert(def.id, Arc::new(rule));
            }
            None => {
                rules.remove(&def.id);
            }
        }
    }

    /// Forgets the table with id `table_id` (dropped, or rewritten under a new id).
    pub fn forget(&self, table_id: u64) {
        (self.0.write().unwrap_or_else(|p| p.into_inner())).remove(&table_id);
    }

    /// The compaction filters RocksDB runs with these rules: one per compaction.
    pub(super) fn compaction_filters(&self) -> RetentionFilters {
        RetentionFilters(self.clone())
    }

    /// A filter judging rows by the rules now, at this moment.
    fn filter_now(&self) -> RetentionFilter {
        RetentionFilter {
            rules: self.0.read().unwrap_or_else(|p| p.into_inner()).clone(),
            now: now_micros(),
            last: None,
        }
    }
}

/// Makes the [`RetentionFilter`] of each compaction.
pub(super) struct RetentionFilters(Retentions);

impl CompactionFilterFactory for RetentionFilters {
    type Filter = RetentionFilter;

    fn create(&mut self, _context: CompactionFilterContext) -> RetentionFilter {
        self.0.filter_now()
    }

    fn name(&self) -> &CStr {
        c"tastedb_retention"
    }
}

/// The filter of one compaction: the rules as they were when it began, and that moment, so
/// that an entry costs no lock and no clock (a compaction lasts seconds; a retention changed
/// during one applies from the next, and readers skip expired rows meanwhile).
pub(super) struct RetentionFilter {
    rules: HashMap<u64, Arc<Rule>>,
    now: i64,
    /// The table of the last entry and its rule: a compaction reads keys in order, so one
    /// table's rows come together.
    last: Option<(u64, Option<Arc<Rule>>)>,
}

impl RetentionFilter {
    /// The verdict on one stored entry: rows of a table with retention whose time has passed
    /// are removed; everything else is kept.
    fn decide(&mut self, key: &[u8], value: &[u8]) -> Decision {
        let Some(table_id) = keys::parse_row_table(key) else {
            return Decision::Keep;
        };
        let rule = match &self.last {
            Some((id, rule)) if *id == table_id => rule,
            _ => {
                let rule = self.rules.get(&table_id).cloned();
                &self.last.insert((table_id, rule)).1
            }
        };
        let Some(rule) = rule else {
            return Decision::Keep;
        };
        let cutoff = self.now.saturating_sub(rule.ttl_micros);
        let expired = |row: &[u8]| matches!(time_micros(&rule.types, row, rule.column), Ok(Some(time)) if time < cutoff);
        if !rule.blocks {
            return decision(expired(value));
        }
        // a block goes when all its rows have expired; one that cannot be read stays
        match BlockHeader::read(value) {
            Ok(header) if header.column == Some(rule.column) => {
                decision(header.all_before(rule.column, cutoff))
            }
            Ok(header) if header.rows > 0 => match row_blocks::rows(value) {
                Ok(mut rows) => decision(rows.all(|row| row.is_ok_and(expired))),
                Err(_) => Decision::Keep,
            },
            _ => Decision::Keep,
        }
    }
}

fn decision(remove: bool) -> Decision {
    if remove {
        Decision::Remove
    } else {
        Decision::Keep
    }
}

impl CompactionFilter for RetentionFilter {
    fn filter(&mut self, _level: u32, key: &[u8], value: &[u8]) -> Decision {
        self.decide(key, value)
    }

    fn name(&self) -> &CStr {
        c"tastedb_retention"
    }
}

fn now_micros() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Retention, TableLayout};
    use crate::storage::{ColumnValues, encode_row};
    use datafusion::arrow::array::{ArrayRef, Int64Array, TimestampMicrosecondArray};

    fn table() -> TableDef {
        let columns = [("n", ColumnType::BigInt), ("ts", ColumnType::Timestamp)];
        TableDef {
            retention: Some(Retention {
                column: 1,
                ttl_micros: 3_600_000_000,
                ttl: "1 hour".into(),
            }),
            ..TableDef::with_columns(7, "events", &columns)
        }
    }

    fn rows(times: Vec<Option<i64>>) -> Vec<Vec<u8>> {
        let n: ArrayRef = Arc::new(Int64Array::from_iter_values(0..times.len() as i64));
        let ts: ArrayRef = Arc::new(TimestampMicrosecondArray::from(times.clone()));
        let values = [
            ColumnValues::new(ColumnType::BigInt, &n).unwrap(),
            ColumnValues::new(ColumnType::Timestamp, &ts).unwrap(),
        ];
        (0..times.len())
            .map(|row| {
                let mut out = Vec::new();
                encode_row(&values, row, &mut out);
                out
            })
            .collect()
    }

    #[test]
    fn rows_older_than_the_ttl_expire_and_null_times_never_do() {
        let now = now_micros();
        let rows = rows(vec![
            Some(now - 7_200_000_000),
            Some(now - 60_000_000),
            None,
        ]);
        let expiry = Expiry::now(&table()).unwrap();
        let verdicts: Vec<bool> = rows.iter().map(|r| expiry.expired(r)).collect();
        assert_eq!(verdicts, [true, false, false]);

        let retentions = Retentions::default();
        retentions.set(&table());
        let key = |row: u64| keys::row(7, &keys::row_id(row));
        let removed = |key: &[u8], row: &[u8]| {
            let mut filter = retentions.filter_now();
            matches!(filter.decide(key, row), Decision::Remove)
        };
        assert!(removed(&key(0), &rows[0]));
        assert!(!removed(&key(1), &rows[1]));
        assert!(!removed(&key(2), &rows[2]));
        // another table's rows, and anything that is not a row, are kept
        assert!(!removed(&keys::row(8, &keys::row_id(0)), &rows[0]));
        assert!(!removed(&keys::meta("x"), &rows[0]));
        // one filter judges each table's rows by its own rule, tables in any order
        let mut filter = retentions.filter_now();
        let other = keys::row(8, &keys::row_id(0));
        let verdicts = [
            (&key(0), &rows[0]),
            (&other, &rows[0]),
            (&key(1), &rows[1]),
            (&key(0), &rows[0]),
        ]
        .map(|(key, row)| matches!(filter.decide(key, row), Decision::Remove));
        assert_eq!(verdicts, [true, false, false, true]);
        retentions.forget(7);
        assert!(!removed(&key(0), &rows[0]));
        // a filter keeps the rules it began with
        assert!(matches!(filter.decide(&key(0), &rows[0]), Decision::Remove));
    }

    /// A block of `def` (with the columns of [`table`]) of rows with `times`.
    fn block(def: &TableDef, times: Vec<Option<i64>>) -> Vec<u8> {
        let n: ArrayRef = Arc::new(Int64Array::from_iter_values(0..times.len() as i64));
        let ts: ArrayRef = Arc::new(TimestampMicrosecondArray::from(times.clone()));
        let values = [
            ColumnValues::new(ColumnType::BigInt, &n).unwrap(),
            ColumnValues::new(ColumnType::Timestamp, &ts).unwrap(),
        ];
        let mut builder = crate::storage::row_blocks::BlockBuilder::new(def);
        for row in 0..times.len() {
            builder.push(&values, row).unwrap();
        }
        builder.finish()
    }

    #[test]
    fn a_block_goes_only_when_every_row_has_expired() {
        let now = now_micros();
        let old = Some(now - 7_200_000_000);
        let recent = Some(now - 60_000_000);
        let blocks_table = TableDef {
            layout: TableLayout::AppendOnlyBlocks,
            ..table()
        };
        let retentions = Retentions::default();
        retentions.set(&blocks_table);
        let key = keys::row(7, &keys::row_id(0));
        let removed = |value: &[u8]| {
            matches!(
                retentions.filter_now().decide(&key, value),
                Decision::Remove
            )
        };
        assert!(removed(&block(&blocks_table, vec![old, old])));
        assert!(!removed(&block(&blocks_table, vec![old, recent])));
        assert!(!removed(&block(&blocks_table, vec![old, None])));
        // blocks written before the ttl existed carry no times: their rows are read
        let untimed = TableDef {
            retention: None,
            ..blocks_table.clone()
        };
        assert!(removed(&block(&untimed, vec![old, old])));
        assert!(!removed(&block(&untimed, vec![old, recent])));
        // what is no block is kept, as is a row of the old layout read as one
        assert!(!removed(b"garbage"));
        assert!(!removed(&rows(vec![old])[0]));
        // readers skip a whole block by its header, or judge its rows one by one
        let expiry = Expiry::now(&blocks_table).unwrap();
        let header = |times| BlockHeader::read(&block(&blocks_table, times)).unwrap();
        assert_eq!(expiry.of_block(&header(vec![old, old])), Some(true));
        assert_eq!(expiry.of_block(&header(vec![recent, None])), Some(false));
        assert_eq!(expiry.of_block(&header(vec![old, recent])), None);
    }
}
