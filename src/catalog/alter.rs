//! ALTER TABLE's changes of a stored table's definition: renames change the definition only;
//! adding or dropping columns and adding a primary key rewrite every row
//! (`storage::rewrite`). Either way the new definition and the rows are one write, made while
//! the table's writers wait; writes prepared for the old definition get 40001.

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::storage::rewrite::rewrite;
use crate::storage::{StoredTable, TableChange, WriteSet};
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use std::sync::Arc;

/// Turns a batch of every column of the old definition into the columns of the new one.
pub type Convert<'a> = &'a dyn Fn(&RecordBatch) -> Result<Vec<ArrayRef>>;

impl Catalog {
    /// Makes `def` the definition of the table `stored` is (also a new name), rewriting its
    /// rows with `convert` when given; 40001 when another statement changed the table since
    /// `stored` was read, 42P07 when a new name is taken.
    pub fn alter(
        &self,
        stored: &Arc<StoredTable>,
        def: TableDef,
        convert: Option<Convert>,
    ) -> Result<()> {
        let _ddl = self.ddl();
        match self.get(&stored.def.name) {
            Some(current) if Arc::ptr_eq(&current, stored) => {}
            _ => {
                return Err(Error::SerializationFailure(format!(
                    "table \"{}\" changed while ALTER TABLE ran",
                    stored.def.name
                )));
            }
        }
        if def.name != stored.def.name
            && (self.get(&def.name).is_some() || self.index_table(&def.name).is_some())
        {
            return Err(Error::DuplicateTable(def.name));
        }
        let _change = stored.change();
        let write = match convert {
            Some(convert) => rewrite(self.store(), &stored.def, &def, convert)?,
            None => WriteSet::default(),
        };
        self.replace(stored, def.clone(), write)?;
        if convert.is_some() {
            // rows changed under every structure derived from them
            self.store().rows_changed(&def, TableChange::Removed(&[]));
        }
        Ok(())
    }
}
