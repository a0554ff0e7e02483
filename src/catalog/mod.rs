//! The catalog: which tables exist and how they are defined. Definitions are stored in RocksDB
//! next to the rows and cached in memory; DDL writes are synced like every other write.

pub mod alter;
mod extra_schema;
pub use extra_schema::ExtraSchema;
pub mod pg_indexes;
mod provider;
mod pushdown;
mod row_keys;
mod scan;
mod schema;
mod secondary;
pub mod sequences;
mod sink;
pub mod system_tables;
mod views;

pub use provider::{ROW_KEY_COLUMN, StoredTableProvider};
pub use pushdown::point_keys;
pub use row_keys::{ROW_KEYS_FUNCTION, RowKeys};
pub use schema::TasteSchema;
pub use views::StoredView;

use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::storage::{Store, StoredTable, WriteSet, keys, reader};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

const NEXT_TABLE_ID: &str = "next_table_id";

/// All stored tables of a data directory.
#[derive(Debug)]
pub struct Catalog {
    store: Arc<Store>,
    tables: RwLock<BTreeMap<String, Arc<StoredTable>>>,
    /// Serialises CREATE and DROP so that name checks and table ids stay consistent.
    ddl: Mutex<()>,
    /// Counts CREATE and DROP; plans made before a change are made again.
    generation: AtomicU64,
    sequences: Arc<sequences::Sequences>,
}

impl Catalog {
    /// Loads the table definitions of `store`.
    pub fn load(store: Arc<Store>) -> Result<Catalog> {
        let mut tables = BTreeMap::new();
        let defs: Vec<TableDef> = store.records(&keys::catalog_prefix(), "catalog entry")?;
        for def in defs {
            check_definition(&def)?;
            store.retentions().set(&def);
            let next_row_id = match reader::last_row_id(&store, &def)? {
                Some(last) if !def.has_primary_key() => last + 1,
                _ => 0,
            };
            tables.insert(
                def.name.clone(),
                Arc::new(StoredTable::new(def, next_row_id)),
            );
        }
        Ok(Catalog {
            sequences: Arc::new(sequences::Sequences::new(store.clone())),
            store,
            tables: RwLock::new(tables),
            ddl: Mutex::new(()),
            generation: AtomicU64::new(0),
        })
    }

    /// The table called `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<StoredTable>> {
        self.read_tables().get(name).cloned()
    }

    /// A number that changes whenever a table is created or dropped.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Names of all tables, sorted.
    pub fn names(&self) -> Vec<String> {
        self.read_tables().keys().cloned().collect()
    }

    /// Creates a table from `def` (its `id` is assigned here). Returns false, changing nothing,
    /// when the name exists and `if_not_exists` is set.
    pub fn create(&self, mut def: TableDef, if_not_exists: bool) -> Result<bool> {
        let _ddl = self.ddl.lock().unwrap_or_else(|p| p.into_inner());
        if self.read_tables().contains_key(&def.name) {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(Error::DuplicateTable(def.name))
            };
        }
        if keyed_blocks(&def) {
            return Err(Error::Internal(format!(
                "append-only table {} defined with a primary key or index",
                def.name
            )));
        }
        let id_key = keys::meta(NEXT_TABLE_ID);
        def.id = self.store.read_counter(&id_key)?;
        let json = serde_json::to_vec(&def).map_err(|e| Error::Internal(e.to_string()))?;
        let mut write = WriteSet::default();
        write.put(&id_key, (def.id + 1).to_be_bytes());
        write.put(keys::catalog(&def.name), json);
        let owned = owned_sequences(&def);
        for sequence in &owned {
            write.put(keys::sequence(sequence), 0i64.to_be_bytes());
        }
        self.store.write(write)?;
        for sequence in &owned {
            self.sequences.created(sequence);
        }
        self.store.retentions().set(&def);
        self.write_tables()
            .insert(def.name.clone(), Arc::new(StoredTable::new(def, 0)));
        self.generation.fetch_add(1, Ordering::Release);
        Ok(true)
    }

    /// Drops the table `name` and all its rows. Returns false, changing nothing, when it does
    /// not exist and `if_exists` is set.
    pub fn drop_table(&self, name: &str, if_exists: bool) -> Result<bool> {
        let _ddl = self.ddl.lock().unwrap_or_else(|p| p.into_inner());
        let Some(table) = self.get(name) else {
            return if if_exists {
                Ok(false)
            } else {
                Err(Error::UndefinedTable(name.to_string()))
            };
        };
        let mut write = WriteSet::default();
        write.delete(keys::catalog(name));
        write.delete_range(
            keys::table_prefix(table.def.id),
            keys::table_end(table.def.id),
        );
        let (from, to) = keys::table_indexes_range(table.def.id);
        write.delete_range(from, to);
        let owned = owned_sequences(&table.def);
        for sequence in &owned {
            write.delete(keys::sequence(sequence));
        }
        self.store.write(write)?;
        for sequence in &owned {
            self.sequences.forget(sequence);
        }
        self.store.retentions().forget(table.def.id);
        self.write_tables().remove(name);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(true)
    }

    /// Bytes on disk of the rows of table `name` (see [`Store::approximate_size`]).
    pub fn table_size(&self, name: &str) -> Option<i64> {
        let table = self.get(name)?;
        let (from, to) = (
            keys::table_prefix(table.def.id),
            keys::table_end(table.def.id),
        );
        i64::try_from(self.store.approximate_size(&from, &to)).ok()
    }

    /// Compacts the rows and index entries of table `name` now (VACUUM): the compaction filter
    /// drops the rows its retention has expired. False when there is no such table.
    pub fn compact(&self, name: &str) -> bool {
        let Some(table) = self.get(name) else {
            return false;
        };
        let id = table.def.id;
        self.store
            .compact(&keys::table_prefix(id), &keys::table_end(id));
        let (from, to) = keys::table_indexes_range(id);
        self.store.compact(&from, &to);
        true
    }

    /// The sequences (`nextval`, `setval`).
    pub fn sequences(&self) -> &Arc<sequences::Sequences> {
        &self.sequences
    }

    /// The store the tables live in.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The lock CREATE and DROP statements take turns on.
    fn ddl(&self) -> std::sync::MutexGuard<'_, ()> {
        self.ddl.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_tables(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<StoredTable>>> {
        self.tables.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_tables(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<StoredTable>>> {
        self.tables.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sequences `def`'s identity and SERIAL columns own: dropped with the table.
fn owned_sequences(def: &TableDef) -> Vec<String> {
    (def.columns.iter())
        .filter_map(|column| {
            let name = sequences::sequence_name(&def.name, &column.name);
            (column.default.as_deref() == Some(sequences::nextval_of(&name).as_str()))
                .then_some(name)
        })
        .collect()
}

/// Rejects a stored definition that the rest of the code could not rely on.
fn check_definition(def: &TableDef) -> Result<()> {
    let keys_valid = (def.primary_key.iter())
        .chain(def.indexes.iter().flat_map(|i| &i.columns))
        .chain(def.retention.iter().map(|r| &r.column))
        .all(|&i| i < def.columns.len());
    if def.columns.is_empty() || !keys_valid {
        return Err(Error::Corrupt(format!(
            "catalog entry of table {} has no columns or refers to a column it lacks",
            def.name
        )));
    }
    if keyed_blocks(def) {
        return Err(Error::Corrupt(format!(
            "catalog entry of append-only table {} has a primary key or index",
            def.name
        )));
    }
    Ok(())
}

/// Whether `def` stores append-only blocks yet has a primary key or index, which blocks cannot
/// serve.
fn keyed_blocks(def: &TableDef) -> bool {
    def.is_blocks() && (def.has_primary_key() || !def.indexes.is_empty())
}
