//! SQL functions TasteDB adds or replaces.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use std::sync::Arc;

/// Registers the functions on `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(version());
    // `cosine_distance` and `inner_product` are DataFusion's; `l2_distance` names its
    // `array_distance` as pgvector users know it.
    let l2 = datafusion::functions_nested::distance::array_distance_udf();
    ctx.register_udf(l2.as_ref().clone().with_aliases(["l2_distance"]));
    for udf in function_catalog()
        .into_iter()
        .chain(crate::sql::catalog_functions::functions())
    {
        ctx.register_udf(udf);
    }
}

/// `version()` in the shape Postgres clients parse ("PostgreSQL 16.6 …"), naming TasteDB.
fn version() -> ScalarUDF {
    let text = format!(
        "PostgreSQL 16.6 (TasteDB {}, Apache DataFusion {}) on {}",
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION,
        std::env::consts::ARCH
    );
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.clone()))))),
    )
}

/// The `pg_proc` helpers psql's `\df` calls and `pg_type_is_visible` (SQLAlchemy's column
/// reflection), missing from datafusion-pg-catalog. Every function and type is visible (there is one schema); TasteDB keeps no SQL text of signatures, so
/// those are NULL.
fn function_catalog() -> [ScalarUDF; 4] {
    let constant = |name: &str, value: ScalarValue| {
        let data_type = value.data_type();
        create_udf(
            name,
            vec![DataType::Int32],
            data_type,
            Volatility::Stable,
            Arc::new(move |_| Ok(ColumnarValue::Scalar(value.clone()))),
        )
    };
    [
        constant("pg_function_is_visible", ScalarValue::Boolean(Some(true))),
        constant("pg_type_is_visible", ScalarValue::Boolean(Some(true))),
        constant("pg_get_function_result", ScalarValue::Utf8(None)),
        constant("pg_get_function_arguments", ScalarValue::Utf8(None)),
    ]
}
