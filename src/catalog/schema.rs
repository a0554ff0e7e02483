//! The `public` schema as DataFusion sees it: every stored table, plus the tables a session
//! registers in memory (external tables over files, views), which are not persisted.

use crate::catalog::system_tables::{self, SystemTables};
use crate::catalog::{Catalog, StoredTableProvider};
use crate::error::Error;
use async_trait::async_trait;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::{DataFusionError, Result};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Schema provider over the catalog's stored tables and the in-memory registrations.
#[derive(Debug)]
pub struct TasteSchema {
    catalog: Arc<Catalog>,
    system: Vec<Arc<dyn SystemTables>>,
    registered: RwLock<BTreeMap<String, Arc<dyn TableProvider>>>,
}

impl TasteSchema {
    /// A schema over `catalog`, with the system tables of `system`.
    pub fn new(catalog: Arc<Catalog>, system: Vec<Arc<dyn SystemTables>>) -> Self {
        TasteSchema {
            catalog,
            system,
            registered: RwLock::new(BTreeMap::new()),
        }
    }

    fn registered(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<dyn TableProvider>>> {
        self.registered.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl SchemaProvider for TasteSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.catalog.names();
        names.extend(self.registered().keys().cloned());
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        if let Some(table) = self.catalog.get(name) {
            let store = self.catalog.store().clone();
            return Ok(Some(Arc::new(StoredTableProvider::new(store, table))));
        }
        if let Some(table) = system_tables::table(&self.system, name) {
            return table.map(Some).map_err(Error::into_datafusion);
        }
        Ok(self.registered().get(name).cloned())
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        if self.catalog.get(&name).is_some() {
            return Err(Error::DuplicateTable(name).into_datafusion());
        }
        let mut registered = self.registered.write().unwrap_or_else(|p| p.into_inner());
        Ok(registered.insert(name, table))
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let mut registered = self.registered.write().unwrap_or_else(|p| p.into_inner());
        Ok(registered.remove(name))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.catalog.get(name).is_some()
            || self.registered().contains_key(name)
            || system_tables::exists(&self.system, name)
    }
}

impl TasteSchema {
    /// Whether `name` is a table users made (stored, external or a view), which has an owner
    /// and privileges, rather than a system table.
    pub fn is_user_table(&self, name: &str) -> bool {
        self.catalog.get(name).is_some() || self.registered().contains_key(name)
    }
}

impl TasteSchema {
    /// What the user table `name` is, in psql's words: `table` (stored), `view`, or `foreign
    /// table` (an external table over files); `None` when there is no such table.
    pub fn relation_type(&self, name: &str) -> Option<&'static str> {
        if self.catalog.get(name).is_some() {
            return Some("table");
        }
        let registered = self.registered();
        let table = registered.get(name)?;
        Some(if table.downcast_ref::<ViewTable>().is_some() {
            "view"
        } else {
            "foreign table"
        })
    }

    /// The names of the user tables: stored, external and views.
    pub fn user_tables(&self) -> Vec<String> {
        self.table_names()
    }
}
