//! A schema with a few tables added to another's: how `pg_catalog` gets `pg_user`, which
//! datafusion-pg-catalog does not have and whose schema takes no registrations, and TasteDB's
//! own `pg_roles` and the tables of [`IndexCatalog`] in place of its.

use crate::catalog::pg_indexes::{self, IndexCatalog};
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
    indexes: Arc<IndexCatalog>,
}

impl ExtraSchema {
    /// `inner` with the system tables of `extra` added, and those of `indexes` in place of
    /// `inner`'s.
    pub fn new(
        inner: Arc<dyn SchemaProvider>,
        extra: Vec<Arc<dyn SystemTables>>,
        indexes: Arc<IndexCatalog>,
    ) -> Self {
        ExtraSchema {
            inner,
            extra,
            indexes,
        }
    }
}

#[async_trait]
impl SchemaProvider for ExtraSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.extend(
            (pg_indexes::TABLES.iter())
                .filter(|name| !self.inner.table_exist(name))
                .map(|name| name.to_string()),
        );
        names.extend(
            (self.extra.iter())
                .flat_map(|e| e.names().iter())
                .filter(|name| !self.inner.table_exist(name))
                .map(|name| name.to_string()),
        );
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(table) =
            (self.indexes.table(name, &self.inner).await).map_err(Error::into_datafusion)?
        {
            return Ok(Some(table));
        }
        match system_tables::table(&self.extra, name) {
            Some(table) => table.map(Some).map_err(Error::into_datafusion),
            None => self.inner.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        system_tables::exists(&self.extra, name)
            || pg_indexes::TABLES.contains(&name)
            || self.inner.table_exist(name)
    }
}
