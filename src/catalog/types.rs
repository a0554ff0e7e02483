//! Table definitions as stored in the catalog: column types, nullability, primary key.

use crate::error::{Error, Result};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::sql::sqlparser::ast::DataType as SqlType;
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
            other => {
                return Err(Error::FeatureNotSupported(format!(
                    "type {other} is not supported for stored tables; use TEXT, SMALLINT, INT, \
                     BIGINT, REAL, DOUBLE, BOOLEAN, TIMESTAMP or DATE"
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
        }
    }

    /// The SQL name of the type, as `information_schema` and error messages show it.
    pub fn sql_name(self) -> &'static str {
        match self {
            ColumnType::Text => "TEXT",
            ColumnType::SmallInt => "SMALLINT",
            ColumnType::Int => "INT",
            ColumnType::BigInt => "BIGINT",
            ColumnType::Real => "REAL",
            ColumnType::Double => "DOUBLE",
            ColumnType::Boolean => "BOOLEAN",
            ColumnType::Timestamp => "TIMESTAMP",
            ColumnType::Date => "DATE",
        }
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

    /// True when the table has a primary key.
    pub fn has_primary_key(&self) -> bool {
        !self.primary_key.is_empty()
    }
}
