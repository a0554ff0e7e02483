//! Secondary (btree) indexes: `CREATE [UNIQUE] INDEX` builds the entries of the rows stored now
//! and records the index in the table's definition in one write; `DROP INDEX` removes both.
//! Writers of the table wait while the definition changes, and writes prepared for the old one
//! are refused with 40001 (`StoredTable::supersede`). The entries themselves are written with
//! each row (`storage::writer`, `storage::modify`, `storage::index_entries`).

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::schema::{ColumnType, SecondaryIndex, TableDef};
use crate::storage::{StoredTable, WriteSet, index_entries, keys};
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl Catalog {
    /// Creates index `name` on `columns` of table `table`; false, changing nothing, when a
    /// relation of that name exists and `if_not_exists` is set.
    pub fn create_index(
        &self,
        table: &str,
        name: &str,
        columns: &[String],
        unique: bool,
        if_not_exists: bool,
    ) -> Result<bool> {
        let _ddl = self.ddl();
        if self.index_table(name).is_some() || self.get(name).is_some() {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(Error::DuplicateTable(name.to_string()))
            };
        }
        let stored = self
            .get(table)
            .ok_or_else(|| Error::UndefinedTable(table.to_string()))?;
        let mut def = stored.def.clone();
        let columns = columns
            .iter()
            .map(|column| index_column(&def, column))
            .collect::<Result<Vec<_>>>()?;
        let index = SecondaryIndex {
            name: name.to_string(),
            id: def.indexes.iter().map(|i| i.id + 1).max().unwrap_or(0),
            columns,
            unique,
        };
        let _change = stored.change();
        let mut write = WriteSet::default();
        for (entry, row_key) in index_entries::build(self.store(), &def, &index)? {
            write.put(&entry.key, &row_key);
        }
        def.indexes.push(index);
        self.replace(&stored, def, write)?;
        Ok(true)
    }

    /// Drops secondary index `name`; false when there is no such index.
    pub fn drop_index(&self, name: &str) -> Result<bool> {
        let _ddl = self.ddl();
        let Some(stored) = self.index_table(name) else {
            return Ok(false);
        };
        let mut def = stored.def.clone();
        let Some(position) = def.indexes.iter().position(|i| i.name == name) else {
            return Ok(false);
        };
        let index = def.indexes.remove(position);
        let _change = stored.change();
        let mut write = WriteSet::default();
        let prefix = keys::index_prefix(def.id, index.id);
        write.delete_range(prefix.clone(), keys::prefix_end(&prefix));
        self.replace(&stored, def, write)?;
        Ok(true)
    }

    /// The table that has secondary index `name`.
    pub fn index_table(&self, name: &str) -> Option<Arc<StoredTable>> {
        self.read_tables()
            .values()
            .find(|t| t.def.indexes.iter().any(|i| i.name == name))
            .cloned()
    }

    /// Writes `def` as the new definition of `stored` (possibly under a new name) together
    /// with `write`, and makes it the table's (the caller holds `stored.change()` and the DDL
    /// turn).
    pub(super) fn replace(
        &self,
        stored: &StoredTable,
        def: TableDef,
        mut write: WriteSet,
    ) -> Result<()> {
        let json = serde_json::to_vec(&def).map_err(|e| Error::Internal(e.to_string()))?;
        if def.name != stored.def.name {
            write.delete(keys::catalog(&stored.def.name));
        }
        write.put(keys::catalog(&def.name), json);
        self.store().write(write)?;
        self.store().retentions().forget(stored.def.id);
        self.store().retentions().set(&def);
        let replacement = Arc::new(StoredTable::new(def.clone(), stored.next_row_id()));
        stored.supersede();
        let mut tables = self.write_tables();
        tables.remove(&stored.def.name);
        tables.insert(def.name.clone(), replacement);
        drop(tables);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }
}

fn index_column(def: &TableDef, column: &str) -> Result<usize> {
    let index = def
        .columns
        .iter()
        .position(|c| c.name == column)
        .ok_or_else(|| Error::UndefinedColumn(column.to_string()))?;
    if let ColumnType::Vector(_) = def.columns[index].column_type {
        return Err(Error::FeatureNotSupported(format!(
            "column \"{column}\" is a vector: index it with USING hnsw"
        )));
    }
    Ok(index)
}
