//! Vector search: vector columns' HNSW indexes (`CREATE INDEX … USING hnsw`, `DROP INDEX`),
//! kept up to date as rows are written, and the `nearest` table function. The graphs are
//! `crate::ann`'s.

pub mod column_index;
mod nearest;
mod statements;
mod system_tables;

pub use column_index::VectorIndexes;
pub use nearest::Nearest;

use crate::catalog::Catalog;
use crate::engine::{Command, Family, FunctionObject};
use crate::roles::ObjectKind;
use datafusion::prelude::SessionContext;
use std::sync::Arc;

/// The index statements.
pub const STATEMENTS: Family = Family {
    name: "vectors",
    parse: |parser| {
        Ok(statements::index_statement(parser)?.map(|s| Arc::new(s) as Arc<dyn Command>))
    },
};

/// Registers `nearest` over the tables of `catalog` and their `indexes`.
pub fn register_functions(
    ctx: &SessionContext,
    catalog: &Arc<Catalog>,
    indexes: &Arc<VectorIndexes>,
) {
    ctx.register_udtf(
        "nearest",
        Arc::new(Nearest::new(catalog.clone(), indexes.clone())),
    );
}

/// `nearest`, which reads the table its first argument names.
pub const FUNCTION_OBJECTS: &[FunctionObject] = &[FunctionObject {
    function: "nearest",
    kind: ObjectKind::Table,
}];

impl crate::catalog::pg_indexes::ListIndexes for VectorIndexes {
    fn indexes(&self) -> Vec<crate::catalog::pg_indexes::IndexInfo> {
        (self.list().into_iter())
            .map(|status| status.def)
            .map(|def| crate::catalog::pg_indexes::IndexInfo {
                columns: vec![def.column.clone()],
                primary: false,
                unique: false,
                method: "hnsw",
                options: vec![
                    ("metric".into(), def.metric.name().into()),
                    ("m".into(), def.m.to_string()),
                    ("ef_construction".into(), def.ef_construction.to_string()),
                ],
                name: def.name,
                table: def.table,
            })
            .collect()
    }
}
