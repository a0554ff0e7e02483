//! A schema with a few tables added to another's: how `pg_catalog` gets `pg_user`, which
//! datafusion-pg-catalog does not have and whose schema takes no registrations.

use crate::catalog::system_tables::{self, SystemTables};
use crate::error::Error;
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::Result;
use std::sync::Arc;

/// `inner`'s tables, and the system tables of `extra`.
#[derive(Debug)]
pub struct ExtraSchema {
    inner: Arc<dyn SchemaProvider>,
    extra: Vec<Arc<dyn SystemTables>>,
}

impl ExtraSchema {
    /// `inner` with the system tables of `extra` added.
    pub fn new(inner: Arc<dyn SchemaProvider>, extra: Vec<Arc<dyn SystemTables>>) -> Self {
        ExtraSchema { inner, extra }
    }
}

#[async_trait]
impl SchemaProvider for ExtraSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.extend(
            self.extra
                .iter()
                .flat_map(|e| e.names().iter().map(|n| n.to_string())),
        );
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match system_tables::table(&self.extra, name) {
            Some(table) => table.map(Some).map_err(Error::into_datafusion),
            None => self.inner.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        system_tables::exists(&self.extra, name) || self.inner.table_exist(name)
    }
}
