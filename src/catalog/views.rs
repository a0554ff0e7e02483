//! Views outlive the process: `CREATE [OR REPLACE] VIEW` stores the statement, `DROP VIEW`
//! removes it, and an opening engine defines the stored views again. DataFusion keeps views
//! in memory only (a `ViewTable` over the planned query).

use crate::catalog::Catalog;
use crate::error::Result;
use crate::storage::{WriteSet, keys};
use serde::{Deserialize, Serialize};

/// A view as stored: its name and the `CREATE VIEW` statement that defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredView {
    /// View name (normalised).
    pub name: String,
    /// `CREATE OR REPLACE VIEW name AS query`, as TasteDB's parser prints it back.
    pub definition: String,
}

impl Catalog {
    /// Stores (or replaces) the definition of a view; synced like every write.
    pub fn save_view(&self, view: &StoredView) -> Result<()> {
        let json =
            serde_json::to_vec(view).map_err(|e| crate::error::Error::Internal(e.to_string()))?;
        let mut write = WriteSet::default();
        write.put(keys::view(&view.name), json);
        self.store().write(write)
    }

    /// Removes the stored definition of view `name` (nothing when there is none).
    pub fn forget_view(&self, name: &str) -> Result<()> {
        let mut write = WriteSet::default();
        write.delete(keys::view(name));
        self.store().write(write)
    }

    /// Every stored view.
    pub fn stored_views(&self) -> Result<Vec<StoredView>> {
        self.store().records(&keys::view_prefix(), "view")
    }
}
