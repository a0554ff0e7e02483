//! Table definitions as stored in the catalog: column types, nullability, primary key.

use crate::error::{Error, Result};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::sql::sqlparser::ast::{ArrayElemTypeDef, DataType as SqlType};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The column types a stored table can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnType {
    /// UTF-8 text (`TEXT`, `VARCHAR`, `CHAR`, `STRING`).
    Text,
    /// 16-bit integer (`SMALLINT`, `INT2`).
    SmallInt,
    /// 32-bit integer (`INT`, `INTEGER`, `INT4`).
    Int,
    /// 64-bit integer (`BIGINT`, `INT8`).
    BigInt,
    /// 32-bit float (`REAL`, `FLOAT4`).
    Real,
    /// 64-bit float (`DOUBLE`, `DOUBLE PRECISION`, `FLOAT`, `FLOAT8`).
    Double,
    /// `BOOLEAN`.
    Boolean,
    /// `TIMESTAMP` without time zone, microsecond precision.
    Timestamp,
    /// `DATE`.
    Date,
    /// A vector of 32-bit floats (`REAL[]`, `FLOAT4[]`; `REAL[n]` or `VECTOR(n)` fix the
    /// dimension). Arrow `List<Float32>`; no NULL elements, NaN, infinities or empty vectors.
    Vector(Option<u32>),
}

impl ColumnType {
    /// Maps a SQL type name to a column type, or says which types are supported.
    pub fn from_sql(sql: &SqlType) -> Result<Self> {
        use datafusion::sql::sqlparser::ast::TimezoneInfo;
        Ok(match sql {
            SqlType::Text
            | SqlType::Varchar(_)
            | SqlType::CharacterVarying(_)
            | SqlType::Char(_)
            | SqlType::String(_) => ColumnType::Text,
            SqlType::SmallInt(_) | SqlType::Int2(_) => ColumnType::SmallInt,
            SqlType::Int(_) | SqlType::Integer(_) | SqlType::Int4(_) | SqlType::Int32 => {
                ColumnType::Int
            }
            SqlType::BigInt(_) | SqlType::Int8(_) | SqlType::Int64 => ColumnType::BigInt,
            SqlType::Real | SqlType::Float4 => ColumnType::Real,
            SqlType::Double(_)
            | SqlType::DoublePrecision
            | SqlType::Float8
            | SqlType::Float64
            | SqlType::Float(_) => ColumnType::Double,
            SqlType::Boolean | SqlType::Bool => ColumnType::Boolean,
            SqlType::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
                ColumnType::Timestamp
            }
            SqlType::Date => ColumnType::Date,
            SqlType::Array(element) => vector_from_array_type(element)?,
            SqlType::Custom(name, modifiers) if name.to_string().eq_ignore_ascii_case("vector") => {
                ColumnType::Vector(vector_dimension(modifiers.first().map(String::as_str))?)
            }
            other => {
                return Err(Error::FeatureNotSupported(format!(
                    "type {other} is not supported for stored tables; use TEXT, SMALLINT, INT, \
                     BIGINT, REAL, DOUBLE, BOOLEAN, TIMESTAMP, DATE or REAL[] (vectors)"
                )));
            }
        })
    }

    /// Maps an Arrow type (e.g. of a query result) to the closest column type.
    pub fn from_arrow(data_type: &DataType) -> Result<Self> {
        Ok(match data_type {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnType::Text,
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => ColumnType::SmallInt,
            DataType::Int32 | DataType::UInt16 => ColumnType::Int,
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => ColumnType::BigInt,
            DataType::Float16 | DataType::Float32 => ColumnType::Real,
            DataType::Float64 | DataType::Decimal128(..) | DataType::Decimal256(..) => {
                ColumnType::Double
            }
            DataType::Boolean => ColumnType::Boolean,
            DataType::Timestamp(_, None) => ColumnType::Timestamp,
            DataType::Date32 | DataType::Date64 => ColumnType::Date,
            DataType::Null => ColumnType::Text,
            DataType::List(item) | DataType::LargeList(item) if is_float(item.data_type()) => {
                ColumnType::Vector(None)
            }
            DataType::FixedSizeList(item, size) if is_float(item.data_type()) => {
                ColumnType::Vector(u32::try_from(*size).ok())
            }
            other => {
                return Err(Error::FeatureNotSupported(format!(
                    "a column of type {other} cannot be stored in a table"
                )));
            }
        })
    }

    /// The Arrow type columns of this type have in query results.
    pub fn arrow_type(self) -> DataType {
        match self {
            ColumnType::Text => DataType::Utf8,
            ColumnType::SmallInt => DataType::Int16,
            ColumnType::Int => DataType::Int32,
            ColumnType::BigInt => DataType::Int64,
            ColumnType::Real => DataType::Float32,
            ColumnType::Double => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::Date => DataType::Date32,
            ColumnType::Vector(_) => vector_arrow_type(),
        }
    }

    /// The SQL name of the type, as `information_schema` and error messages show it.
    pub fn sql_name(self) -> String {
        match self {
            ColumnType::Text => "TEXT".into(),
            ColumnType::SmallInt => "SMALLINT".into(),
            ColumnType::Int => "INT".into(),
            ColumnType::BigInt => "BIGINT".into(),
            ColumnType::Real => "REAL".into(),
            ColumnType::Double => "DOUBLE".into(),
            ColumnType::Boolean => "BOOLEAN".into(),
            ColumnType::Timestamp => "TIMESTAMP".into(),
            ColumnType::Date => "DATE".into(),
            ColumnType::Vector(None) => "REAL[]".into(),
            ColumnType::Vector(Some(dimension)) => format!("REAL[{dimension}]"),
        }
    }
}

/// The Arrow type of vector columns: a list of non-null 32-bit floats (DataFusion's array
/// literals and its `cosine_distance`, `array_distance` and `inner_product` work on lists).
pub fn vector_arrow_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true)))
}

fn is_float(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Float16 | DataType::Float32 | DataType::Float64
    )
}

fn vector_from_array_type(element: &ArrayElemTypeDef) -> Result<ColumnType> {
    let (inner, size) = match element {
        ArrayElemTypeDef::SquareBracket(inner, size) => (inner.as_ref(), *size),
        ArrayElemTypeDef::AngleBracket(inner) | ArrayElemTypeDef::Parenthesis(inner) => {
            (inner.as_ref(), None)
        }
        ArrayElemTypeDef::None => {
            return Err(Error::FeatureNotSupported(
                "ARRAY needs an element type; vectors are REAL[]".into(),
            ));
        }
    };
    if !matches!(inner, SqlType::Real | SqlType::Float4) {
        return Err(Error::FeatureNotSupported(format!(
            "arrays of {inner} are not supported; vectors are REAL[] (FLOAT4[])"
        )));
    }
    vector_dimension(size.map(|s| s.to_string()).as_deref()).map(ColumnType::Vector)
}

/// Reads a declared vector dimension: absent, or a whole number from 1 to 65,535.
fn vector_dimension(text: Option<&str>) -> Result<Option<u32>> {
    let Some(text) = text else { return Ok(None) };
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=65_535).contains(&n) => Ok(Some(n)),
        _ => Err(Error::InvalidParameter(format!(
            "vector dimension must be from 1 to 65535, not {text}"
        ))),
    }
}

/// One column of a stored table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// Column name (already normalised: unquoted names are lower case).
    pub name: String,
    /// Column type.
    pub column_type: ColumnType,
    /// False for `NOT NULL` and primary-key columns.
    pub nullable: bool,
    /// The `DEFAULT` expression (SQL text) that INSERT uses when the column gets no value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// A stored table as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    /// Internal id; the prefix of the table's rows in storage. Never reused.
    pub id: u64,
    /// Table name (normalised).
    pub name: String,
    /// Columns in order.
    pub columns: Vec<ColumnDef>,
    /// Indexes into `columns` of the primary key, in key order; empty when the table has none.
    pub primary_key: Vec<usize>,
    /// Secondary (btree) indexes, maintained with every write of a row.
    #[serde(default)]
    pub indexes: Vec<SecondaryIndex>,
    /// How long rows are kept (`ALTER TABLE … SET (ttl = …, ttl_column = …)`); forever when
    /// `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// How the rows are stored (absent in definitions written before layouts existed: rows).
    #[serde(default, skip_serializing_if = "TableLayout::is_rows")]
    pub layout: TableLayout,
}

/// How a table's rows are stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableLayout {
    /// One storage entry per row, under its primary key or row id.
    #[default]
    Rows,
    /// One entry per block of rows that one statement appended, under the row id of the
    /// block's first row (`storage::row_blocks`): far cheaper to write many rows, but rows
    /// cannot be updated or deleted one by one, and there is no primary key or index. The
    /// impression log uses it.
    AppendOnlyBlocks,
}

impl TableLayout {
    /// Whether this is the one-entry-per-row layout.
    pub fn is_rows(&self) -> bool {
        *self == TableLayout::Rows
    }
}

/// A table's retention: a row whose `column` holds a time more than `ttl_micros` before now has
/// expired — no read returns it, and compaction drops it from disk (`storage::retention`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Index of the TIMESTAMP or DATE column rows expire by (NULL there: never expires).
    pub column: usize,
    /// How long a row lives past its time, in microseconds (> 0).
    pub ttl_micros: i64,
    /// The interval as it was given (`180 days`), for display.
    pub ttl: String,
}

/// A secondary index of a stored table (`CREATE [UNIQUE] INDEX name ON t (columns)`): an entry
/// per row under the row's values of `columns` (storage key prefix `x`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondaryIndex {
    /// Index name (normalised), unique among relations.
    pub name: String,
    /// Number within the table, part of the entries' keys; never reused in the table.
    pub id: u32,
    /// Indexes into the table's columns, in index order.
    pub columns: Vec<usize>,
    /// Whether two rows may not share values (rows with a NULL among them never clash).
    pub unique: bool,
}

impl TableDef {
    /// The Arrow schema of the table (NOT NULL columns are non-nullable fields).
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.column_type.arrow_type(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    /// The same schema with every field nullable: the shape rows arrive in before the NOT NULL
    /// check, which TasteDB does itself to name the offending row.
    pub fn input_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.column_type.arrow_type(), true))
                .collect::<Vec<_>>(),
        ))
    }

    /// The columns (index, DEFAULT expression) that rows giving only the columns `listed`
    /// leave to their defaults; none when `listed` is empty (every column given).
    pub fn defaults_for(&self, listed: &[String]) -> Vec<(usize, &str)> {
        (self.columns.iter().enumerate())
            .filter(|(_, column)| !listed.is_empty() && !listed.contains(&column.name))
            .filter_map(|(i, column)| Some((i, column.default.as_deref()?)))
            .collect()
    }

    /// True when the table has a primary key.
    pub fn has_primary_key(&self) -> bool {
        !self.primary_key.is_empty()
    }

    /// Whether the rows are stored in append-only blocks ([`TableLayout::AppendOnlyBlocks`]).
    pub fn is_blocks(&self) -> bool {
        self.layout == TableLayout::AppendOnlyBlocks
    }

    /// 0A000 for `what` (an operation on single rows or a rewrite) on an append-only table.
    pub fn refuse_on_blocks(&self, what: &str) -> Result<()> {
        if !self.is_blocks() {
            return Ok(());
        }
        Err(Error::FeatureNotSupported(format!(
            "{what} is not supported on table \"{}\": it is append-only (rows stored in blocks; \
             TRUNCATE or its ttl removes rows)",
            self.name
        )))
    }
}

#[cfg(test)]
impl TableDef {
    /// A table of nullable `columns` (name, type) without keys, indexes or retention, stored
    /// as rows: the fixture of unit tests.
    pub(crate) fn with_columns(id: u64, name: &str, columns: &[(&str, ColumnType)]) -> TableDef {
        TableDef {
            id,
            name: name.into(),
            columns: (columns.iter())
                .map(|&(name, column_type)| ColumnDef {
                    name: name.into(),
                    column_type,
                    nullable: true,
                    default: None,
                })
                .collect(),
            primary_key: vec![],
            indexes: vec![],
            retention: None,
            layout: TableLayout::Rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_written_before_layouts_load_as_rows() {
        let def = TableDef {
            layout: TableLayout::AppendOnlyBlocks,
            ..TableDef::with_columns(1, "t", &[("a", ColumnType::BigInt)])
        };
        let mut json = serde_json::to_value(&def).unwrap();
        assert_eq!(json["layout"], "append_only_blocks");
        assert_eq!(
            serde_json::from_value::<TableDef>(json.clone()).unwrap(),
            def
        );
        json.as_object_mut().unwrap().remove("layout");
        let old: TableDef = serde_json::from_value(json).unwrap();
        assert_eq!(old.layout, TableLayout::Rows);
        // a rows table is written as before layouts existed
        assert!(serde_json::to_value(&old).unwrap().get("layout").is_none());
    }
}
