//! `tastedb_row_keys('t')`: table `t` with one more column, `ctid`, the key each row is stored
//! under. UPDATE and DELETE find their rows through it (`engine::modify`); reading it needs
//! SELECT on `t`, as reading `t` does.

use crate::catalog::Catalog;
use crate::catalog::provider::StoredTableProvider;
use crate::error::Error;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Expr;
use std::sync::Arc;

/// The name `tastedb_row_keys` is registered under.
pub const ROW_KEYS_FUNCTION: &str = "tastedb_row_keys";

/// The table function `tastedb_row_keys`.
#[derive(Debug)]
pub struct RowKeys {
    catalog: Arc<Catalog>,
}

impl RowKeys {
    /// The function over `catalog`'s tables.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        RowKeys { catalog }
    }
}

impl TableFunctionImpl for RowKeys {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        let name = match args.exprs() {
            [Expr::Literal(ScalarValue::Utf8(Some(name)), _)] => name,
            _ => {
                return Err(Error::InvalidParameter(format!(
                    "{ROW_KEYS_FUNCTION} takes the name of a stored table"
                ))
                .into_datafusion());
            }
        };
        let table = self
            .catalog
            .get(name)
            .ok_or_else(|| Error::UndefinedTable(name.clone()).into_datafusion())?;
        let store = self.catalog.store().clone();
        Ok(Arc::new(StoredTableProvider::with_row_keys(store, table)))
    }
}
