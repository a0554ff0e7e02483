//! An archive's Hive-style partitioning: `partition_by = 'day(ts)'` (or `year`, `month`,
//! `hour`, several separated by commas) puts each row's file under `day=2026-12-07/`, named by
//! the time of the row's `ts`. The column itself stays in the file, so nothing of a row is lost;
//! a NULL time goes to `day=__HIVE_DEFAULT_PARTITION__`, as Hive names it.

use crate::error::{Error, Result};
use crate::schema::{ColumnType, TableDef};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};

/// The directory name of rows whose partition time is NULL.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// How finely one level divides time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// `year=2026`
    Year,
    /// `month=2026-12`
    Month,
    /// `day=2026-12-07`
    Day,
    /// `hour=2026-12-07T13` (timestamp columns only)
    Hour,
}

impl Unit {
    fn named(name: &str) -> Option<Unit> {
        match name.to_ascii_lowercase().as_str() {
            "year" => Some(Unit::Year),
            "month" => Some(Unit::Month),
            "day" => Some(Unit::Day),
            "hour" => Some(Unit::Hour),
            _ => None,
        }
    }

    /// The level's name: its directory's key and its column in `archive('t')`.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Year => "year",
            Unit::Month => "month",
            Unit::Day => "day",
            Unit::Hour => "hour",
        }
    }

    /// How many characters of an ISO 8601 time (`2026-12-07T13:45:00`) name the level.
    fn width(self) -> usize {
        match self {
            Unit::Year => 4,
            Unit::Month => 7,
            Unit::Day => 10,
            Unit::Hour => 13,
        }
    }
}

/// One partition level: a time unit of a column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Level {
    /// The unit.
    pub unit: Unit,
    /// The TIMESTAMP or DATE column it is taken from.
    pub column: String,
}

/// The levels `text` (`'day(ts)'`, `'month(ts), hour(ts)'`) names for `table`; 22023 for what
/// is not `unit(column)`, 42703 for a column the table lacks, 42804 for one that is not a time.
pub fn parse(text: &str, table: &TableDef) -> Result<Vec<Level>> {
    let mut levels: Vec<Level> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || {
            Error::InvalidParameter(format!(
                "partition_by takes year(column), month(column), day(column) or hour(column), \
                 not \"{part}\""
            ))
        };
        let (unit, rest) = part.split_once('(').ok_or_else(bad)?;
        let column = rest.strip_suffix(')').ok_or_else(bad)?.trim();
        let column = column.trim_matches('"').to_string();
        let unit = Unit::named(unit.trim()).ok_or_else(bad)?;
        let def = (table.columns.iter().find(|c| c.name == column))
            .ok_or_else(|| Error::UndefinedColumn(column.clone()))?;
        match (def.column_type, unit) {
            (ColumnType::Timestamp, _) => {}
            (ColumnType::Date, Unit::Year | Unit::Month | Unit::Day) => {}
            (other, _) => {
                return Err(Error::DatatypeMismatch(format!(
                    "{}({column}): \"{column}\" is {}; partitions are taken from a timestamp \
                     column (or a date column, except by hour)",
                    unit.name(),
                    other.sql_name()
                )));
            }
        }
        if levels.iter().any(|l| l.unit == unit) {
            return Err(Error::InvalidParameter(format!(
                "partition_by names {} twice",
                unit.name()
            )));
        }
        if table.columns.iter().any(|c| c.name == unit.name()) {
            return Err(Error::DuplicateColumn(format!(
                "partition_by {}(…) would add a column \"{}\", which the table already has",
                unit.name(),
                unit.name()
            )));
        }
        levels.push(Level { unit, column });
    }
    Ok(levels)
}

/// The levels as `partition_by` is written.
pub fn describe(levels: &[Level]) -> String {
    (levels.iter())
        .map(|l| format!("{}({})", l.unit.name(), l.column))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The directory (relative to the archive's root, `""` for no levels) of each row of `batch`,
/// whose columns are those of `table` in order.
pub fn directories(levels: &[Level], table: &TableDef, batch: &RecordBatch) -> Result<Vec<String>> {
    let mut directories = vec![String::new(); batch.num_rows()];
    for level in levels {
        let position = (table.columns.iter().position(|c| c.name == level.column))
            .ok_or_else(|| Error::UndefinedColumn(level.column.clone()))?;
        let times = cast(batch.column(position), &DataType::Utf8)?;
        let times = times.as_string::<i32>();
        for (row, directory) in directories.iter_mut().enumerate() {
            if !directory.is_empty() {
                directory.push('/');
            }
            directory.push_str(level.unit.name());
            directory.push('=');
            if times.is_null(row) {
                directory.push_str(NULL_PARTITION);
                continue;
            }
            let time = times.value(row);
            let value = time.get(..level.unit.width()).unwrap_or(time);
            directory.push_str(&value.replace(' ', "T"));
        }
    }
    Ok(directories)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ColumnDef;
    use datafusion::arrow::array::{Date32Array, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    use std::sync::Arc;

    fn table() -> TableDef {
        let column = |name: &str, column_type| ColumnDef {
            name: name.into(),
            column_type,
            nullable: true,
            default: None,
        };
        TableDef {
            id: 1,
            name: "events".into(),
            columns: vec![
                column("ts", ColumnType::Timestamp),
                column("d", ColumnType::Date),
                column("n", ColumnType::BigInt),
            ],
            primary_key: vec![],
            indexes: vec![],
            retention: None,
            layout: Default::default(),
        }
    }

    #[test]
    fn levels_parse_and_refuse_what_is_not_a_time() {
        let table = table();
        let levels = parse("month(ts), hour(ts)", &table).unwrap();
        assert_eq!(describe(&levels), "month(ts), hour(ts)");
        assert_eq!(parse("", &table).unwrap(), vec![]);
        assert_eq!(parse("day(n)", &table).unwrap_err().sqlstate(), "42804");
        assert_eq!(parse("hour(d)", &table).unwrap_err().sqlstate(), "42804");
        assert_eq!(parse("day(nope)", &table).unwrap_err().sqlstate(), "42703");
        assert_eq!(parse("week(ts)", &table).unwrap_err().sqlstate(), "22023");
        assert_eq!(parse("ts", &table).unwrap_err().sqlstate(), "22023");
        assert_eq!(
            parse("day(ts), day(d)", &table).unwrap_err().sqlstate(),
            "22023"
        );
    }

    #[test]
    fn each_row_gets_the_directory_of_its_time() {
        let table = table();
        let micros = 1_796_650_000_000_000; // 2026-12-07T13:26:40
        let schema = Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("d", DataType::Date32, true),
            Field::new("n", DataType::Int64, true),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![Some(micros), None])),
                Arc::new(Date32Array::from(vec![Some(0), Some(365)])),
                Arc::new(datafusion::arrow::array::Int64Array::from(vec![1, 2])),
            ],
        )
        .unwrap();
        let levels = parse("day(ts), hour(ts)", &table).unwrap();
        let dirs = directories(&levels, &table, &batch).unwrap();
        assert_eq!(dirs[0], "day=2026-12-07/hour=2026-12-07T13");
        assert_eq!(
            dirs[1],
            "day=__HIVE_DEFAULT_PARTITION__/hour=__HIVE_DEFAULT_PARTITION__"
        );
        let levels = parse("year(d)", &table).unwrap();
        let dirs = directories(&levels, &table, &batch).unwrap();
        assert_eq!(dirs, ["year=1970", "year=1971"]);
    }
}
