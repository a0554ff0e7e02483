//! SQL functions TasteDB adds or replaces.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use std::sync::Arc;

/// Registers the functions on `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(version());
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
