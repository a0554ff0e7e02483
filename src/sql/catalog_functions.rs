//! PostgreSQL's catalog helper functions that drivers call while they connect or reflect,
//! missing from DataFusion and datafusion-pg-catalog: `to_regtype` (psycopg's type lookup,
//! which SQLAlchemy runs at connect), `pg_get_serial_sequence` (SQLAlchemy's column
//! reflection), `pg_size_pretty` and `obj_description` (psql's `\dt+`), and
//! `current_setting` / `set_config` (asyncpg's type introspection).

use crate::error::Error;
use datafusion::arrow::array::{Array, AsArray, Int32Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};
use std::sync::Arc;

/// The functions of this module.
pub fn functions() -> Vec<ScalarUDF> {
    let mut functions = vec![
        to_regtype(),
        pg_get_serial_sequence(),
        pg_size_pretty(),
        current_setting(),
        set_config(),
    ];
    functions.push(crate::sql::expand_array::expand_array());
    functions.extend(
        ["obj_description", "col_description", "shobj_description"]
            .map(|name| ScalarUDF::new_from_impl(NoComment::new(name))),
    );
    functions
}

/// `obj_description`, `col_description`, `shobj_description`: NULL, the answer for an object
/// without a comment (TasteDB has no `COMMENT ON`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct NoComment {
    name: &'static str,
    signature: Signature,
}

impl NoComment {
    fn new(name: &'static str) -> Self {
        NoComment {
            name,
            signature: Signature::variadic_any(Volatility::Stable),
        }
    }
}

impl ScalarUDFImpl for NoComment {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))
    }
}

/// `current_setting(name)`: the parameter's server default (a connection's own `SET` values
/// are answered by `SHOW`, which the session handles); 42704 for a name TasteDB does not know.
fn current_setting() -> ScalarUDF {
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let names = ColumnarValue::values_to_arrays(args)?;
            let names = names[0].as_string::<i32>();
            let values = (0..names.len())
                .map(|i| {
                    if names.is_null(i) {
                        return Ok(None);
                    }
                    let name = names.value(i).to_ascii_lowercase();
                    default_setting(&name).map(Some).ok_or_else(|| {
                        Error::UndefinedObject(format!(
                            "unrecognized configuration parameter \"{name}\""
                        ))
                        .into_datafusion()
                    })
                })
                .collect::<datafusion::common::Result<StringArray>>()?;
            Ok(ColumnarValue::Array(Arc::new(values)))
        }),
    )
}

/// `set_config(name, value, is_local)`: returns `value`, as PostgreSQL does, without changing
/// the connection's setting (use `SET`); drivers call it to turn off features TasteDB does not
/// have (asyncpg's `jit`).
fn set_config() -> ScalarUDF {
    create_udf(
        "set_config",
        vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
        DataType::Utf8,
        Volatility::Volatile,
        Arc::new(|args: &[ColumnarValue]| Ok(args[1].clone())),
    )
}

/// The OIDs of PostgreSQL's built-in types by the names `to_regtype` accepts for them.
const TYPES: &[(&[&str], i32)] = &[
    (&["bool", "boolean"], 16),
    (&["bytea"], 17),
    (&["char", "\"char\""], 18),
    (&["name"], 19),
    (&["int8", "bigint"], 20),
    (&["int2", "smallint"], 21),
    (&["int4", "int", "integer"], 23),
    (&["text"], 25),
    (&["oid"], 26),
    (&["json"], 114),
    (&["float4", "real"], 700),
    (&["float8", "double precision"], 701),
    (&["bpchar", "character"], 1042),
    (&["varchar", "character varying"], 1043),
    (&["date"], 1082),
    (&["time", "time without time zone"], 1083),
    (&["timestamp", "timestamp without time zone"], 1114),
    (&["timestamptz", "timestamp with time zone"], 1184),
    (&["interval"], 1186),
    (&["numeric", "decimal"], 1700),
    (&["uuid"], 2950),
    (&["jsonb"], 3802),
    (&["_bool", "boolean[]", "bool[]"], 1000),
    (&["_int2", "smallint[]", "int2[]"], 1005),
    (&["_int4", "integer[]", "int4[]", "int[]"], 1007),
    (&["_text", "text[]"], 1009),
    (&["_varchar", "character varying[]", "varchar[]"], 1015),
    (&["_int8", "bigint[]", "int8[]"], 1016),
    (&["_float4", "real[]", "float4[]"], 1021),
    (&["_float8", "double precision[]", "float8[]"], 1022),
];

/// The OID of type `name` (case and `pg_catalog.` ignored), if it is one TasteDB knows.
fn type_oid(name: &str) -> Option<i32> {
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    TYPES
        .iter()
        .find(|(names, _)| names.contains(&name))
        .map(|(_, oid)| *oid)
}

/// `to_regtype(text)`: the type's OID, NULL for a type that does not exist (such as
/// `hstore`, which has no extension here).
fn to_regtype() -> ScalarUDF {
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let names = ColumnarValue::values_to_arrays(args)?;
            let names = names[0].as_string::<i32>();
            let oids: Int32Array = names.iter().map(|n| n.and_then(type_oid)).collect();
            Ok(ColumnarValue::Array(Arc::new(oids)))
        }),
    )
}

/// `pg_get_serial_sequence(table, column)`: NULL, as for every column without a sequence
/// (TasteDB has no sequences).
fn pg_get_serial_sequence() -> ScalarUDF {
    create_udf(
        "pg_get_serial_sequence",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))),
    )
}

/// `pg_size_pretty(bigint)`: bytes in PostgreSQL's words ("12 kB"): bytes below 10 kB, then
/// the largest unit that keeps the number below 20,480, rounded half away from zero.
fn pg_size_pretty() -> ScalarUDF {
    create_udf(
        "pg_size_pretty",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let sizes = ColumnarValue::values_to_arrays(args)?;
            let sizes: &Int64Array = sizes[0].as_primitive::<Int64Type>();
            let texts: StringArray = (0..sizes.len())
                .map(|i| sizes.is_valid(i).then(|| size_pretty(sizes.value(i))))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(texts)))
        }),
    )
}

/// PostgreSQL 15's `pg_size_pretty` (src/backend/utils/adt/dbsize.c), for one size.
fn size_pretty(bytes: i64) -> String {
    const LIMIT: i64 = 10 * 1024;
    const LIMIT2: i64 = LIMIT * 2 - 1;
    if bytes.abs() < LIMIT {
        return format!("{bytes} bytes");
    }
    let half_rounded = |x: i64| (x + if x < 0 { -1 } else { 1 }) / 2;
    // one extra bit is kept for rounding
    let mut size = bytes >> 9;
    for unit in ["kB", "MB", "GB", "TB"] {
        if half_rounded(size).abs() < LIMIT2 {
            return format!("{} {unit}", half_rounded(size));
        }
        size >>= 10;
    }
    format!("{} PB", half_rounded(size))
}

/// The value a connection shows for PostgreSQL parameter `name` until it sets its own.
pub fn default_setting(name: &str) -> Option<&'static str> {
    Some(match name {
        "server_version" => "16.6",
        "server_version_num" => "160006",
        "server_encoding" | "client_encoding" => "UTF8",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "timezone" => "UTC",
        "standard_conforming_strings" | "integer_datetimes" => "on",
        "transaction_isolation" | "default_transaction_isolation" => "repeatable read",
        "transaction_read_only" | "default_transaction_read_only" => "off",
        "max_identifier_length" => "63",
        "search_path" => "\"$user\", public",
        "application_name" => "",
        "extra_float_digits" => "1",
        "lc_collate" | "lc_ctype" => "en_US.UTF-8",
        "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => "0",
        // no JIT compiler: asyncpg asks for it and turns it off while it introspects types
        "jit" => "off",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Figures printed by PostgreSQL 15's `SELECT pg_size_pretty(n::bigint)`.
    #[test]
    fn sizes_read_as_postgresql_prints_them() {
        for (bytes, text) in [
            (0, "0 bytes"),
            (10_239, "10239 bytes"),
            (10_240, "10 kB"),
            (1_000_000, "977 kB"),
            (20_970_496, "20 MB"),
            (1_073_741_824, "1024 MB"),
            (-10_240, "-10 kB"),
            (i64::MAX, "8192 PB"),
        ] {
            assert_eq!(size_pretty(bytes), text, "{bytes}");
        }
        assert_eq!(type_oid("Double Precision"), Some(701));
        assert_eq!(type_oid("pg_catalog.int4"), Some(23));
        assert_eq!(type_oid("hstore"), None);
    }
}
