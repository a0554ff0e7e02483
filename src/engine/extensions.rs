//! Where the product features plug into the engine, each in one list: their statement
//! families, the table functions that take queries as arguments, and their table functions.

use crate::catalog::Catalog;
use crate::engine::command::Family;
use crate::features::FeatureViews;
use crate::models::{RANKING_SIGNATURES, Serving};
use crate::sql::query_arguments::QuerySignature;
use crate::vectors::VectorIndexes;
use datafusion::prelude::SessionContext;
use std::sync::Arc;

/// Every family of statements TasteDB adds to SQL, in the order their parsers are tried.
pub const FAMILIES: &[Family] = &[
    crate::roles::STATEMENTS,
    crate::models::STATEMENTS,
    crate::models::experiments::STATEMENTS,
    crate::features::STATEMENTS,
    crate::filters::STATEMENTS,
    crate::sources::STATEMENTS,
    crate::vectors::STATEMENTS,
    crate::backups::STATEMENTS,
    crate::engine::maintenance::STATEMENTS,
    crate::engine::retention::STATEMENTS,
];

/// The table functions that take a query as an argument, planned before their statement.
pub const QUERY_SIGNATURES: &[QuerySignature] = &[
    RANKING_SIGNATURES[0],
    RANKING_SIGNATURES[1],
    crate::features::HISTORICAL_SIGNATURE,
];

/// Registers every feature's table and scalar functions on `ctx`.
pub(super) fn register_functions(
    ctx: &SessionContext,
    catalog: &Arc<Catalog>,
    serving: Serving,
    features: &Arc<FeatureViews>,
    indexes: &Arc<VectorIndexes>,
) {
    crate::sql::register_functions(ctx);
    // an embedded engine is one session: its `currval` values are the engine's own
    let session = Arc::new(crate::catalog::sequences::SessionValues::default());
    for function in crate::catalog::sequences::functions(catalog.sequences(), &session) {
        ctx.register_udf(function);
    }
    ctx.register_udtf(
        crate::catalog::ROW_KEYS_FUNCTION,
        Arc::new(crate::catalog::RowKeys::new(catalog.clone())),
    );
    crate::models::register_functions(ctx, serving.clone());
    crate::models::experiments::register_functions(ctx, &serving);
    crate::features::register_functions(ctx, features, &serving.inputs);
    crate::vectors::register_functions(ctx, catalog, indexes);
}
