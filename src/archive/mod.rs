//! Continuous Parquet archives of tables: `ALTER TABLE events SET (archive = 'file:///…' |
//! 's3://bucket/prefix', archive_every = '5 minutes', partition_by = 'day(ts)')` writes the rows
//! added to the table since the last run as Parquet files under Hive-style partitions
//! (`day=2026-12-07/part-….parquet`), exactly once: each run's files are staged, then the run's
//! manifest entry and the new row-id watermark are committed in one write, and only then are the
//! files moved to their place. A crash before the commit leaves staged files that the next start
//! removes; a crash after it leaves moves that the next start finishes. `tastedb_archives` shows
//! each archive's progress and `archive('events')` reads one back as a table.
//!
//! Object storage goes through the `object_store` crate that DataFusion already uses
//! ([`Stores`]: the local file system and S3-compatible stores).

mod manifest;
mod parameters;
mod partition;
mod runner;
mod stores;
mod system_table;
mod table_function;
mod write;

pub use parameters::{PARAMETERS, reset, set};
pub use stores::{Stores, storage_error};
pub use table_function::{FUNCTION_OBJECTS, register_functions};

use crate::engine::WeakEngine;
use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::storage::{Named, NamedRecords, Store, WriteSet, keys};
use partition::Level;
use runner::Runner;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A table's archive as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Archive {
    /// The archived table.
    pub table: String,
    /// The table's id (a table dropped and created again is another table).
    pub table_id: u64,
    /// Where the files go: `file:///…` or `s3://bucket/prefix`, without a trailing `/`.
    pub url: String,
    /// The interval between runs, as written.
    pub every: String,
    /// The interval between runs, in microseconds.
    pub every_micros: i64,
    /// The partition levels, outermost first (none: every file in the archive's root).
    pub partition_by: Vec<Level>,
    /// The role that set it up (`None`: the embedder).
    pub owner: Option<String>,
    /// When it was set up, microseconds since the Unix epoch.
    pub created_micros: i64,
}

impl Named for Archive {
    fn name(&self) -> &str {
        &self.table
    }
}

/// Every archive of a data directory, and the runners of those that run.
pub struct Archives {
    records: NamedRecords<Archive>,
    store: Arc<Store>,
    stores: Arc<Stores>,
    runners: Mutex<HashMap<String, Runner>>,
}

impl std::fmt::Debug for Archives {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archives").finish()
    }
}

impl Archives {
    /// The archives stored in `store`, writing through `stores` (none runs until
    /// [`Archives::start_all`]).
    pub fn load(store: Arc<Store>, stores: Arc<Stores>) -> Result<Archives> {
        Ok(Archives {
            records: NamedRecords::load(store.clone(), keys::ARCHIVE, "archive")?,
            store,
            stores,
            runners: Mutex::new(HashMap::new()),
        })
    }

    /// The object stores archives are written to and read from.
    pub fn stores(&self) -> &Arc<Stores> {
        &self.stores
    }

    /// Starts the runner of every stored archive (when an engine opens).
    pub fn start_all(&self, engine: &WeakEngine) {
        for archive in self.records.list() {
            self.start(engine, archive);
        }
    }

    /// The archive of `table`, if it has one.
    pub fn get(&self, table: &str) -> Option<Archive> {
        self.records.get(table)
    }

    /// Forgets the archive of `table` (DROP TABLE, `RESET (archive)`): its runner stops and its
    /// definition and manifest go; the files stay where they are.
    pub fn remove(&self, table: &str) -> Result<()> {
        self.stop(table);
        // the definition first: a manifest left by a crash in between is removed when the
        // table is archived again
        if self.records.drop_checked(table, true, |_| Ok(()))? {
            self.forget_manifest(table)?;
        }
        Ok(())
    }

    /// Deletes every manifest entry of `table`'s archive.
    fn forget_manifest(&self, table: &str) -> Result<()> {
        let mut writes = WriteSet::default();
        let prefix = keys::archive_batch(table, None);
        writes.delete_range(prefix.clone(), keys::prefix_end(&prefix));
        self.store.write(writes)
    }

    /// Stores `archive` (new, or a table's archive changed) and (re)starts its runner.
    pub fn put(&self, engine: &WeakEngine, archive: Archive) -> Result<()> {
        self.stop(&archive.table);
        let table = archive.table.clone();
        let stored = match self.records.get(&table) {
            Some(_) => self.records.update(&table, |record| {
                *record = Archive {
                    owner: record.owner.clone(),
                    created_micros: record.created_micros,
                    ..archive
                };
                Ok(())
            })?,
            None => {
                self.forget_manifest(&table)?;
                self.records.create(archive.clone(), false)?;
                archive
            }
        };
        self.start(engine, stored);
        Ok(())
    }

    /// 55000 unless nothing is stored under `url` yet: a new archive starts from the table's
    /// first row, and its files must not mix with another archive's.
    pub async fn check_empty(&self, url: &str) -> Result<()> {
        use futures::StreamExt;
        let (store, root) = self.stores.locate(url)?;
        let first = store.list(Some(&root)).next().await;
        match first {
            None => Ok(()),
            Some(Err(e)) => Err(storage_error(e)),
            Some(Ok(found)) => Err(Error::ObjectNotInPrerequisiteState(format!(
                "{url} is not empty (it holds {}): a new archive goes to an empty place",
                found.location
            ))),
        }
    }

    /// 55000 when `old`, archived, would become `new` that its archive cannot follow: renamed,
    /// given a primary key, or without a column it is partitioned by.
    pub fn check_alter(&self, old: &TableDef, new: &TableDef) -> Result<()> {
        let Some(archive) = self.records.get(&old.name) else {
            return Ok(());
        };
        let partitioned = |def: &TableDef| {
            (archive.partition_by.iter())
                .all(|level| def.columns.iter().any(|c| c.name == level.column))
        };
        if new.name != old.name || new.has_primary_key() || !partitioned(new) {
            return Err(Error::ObjectNotInPrerequisiteState(format!(
                "table \"{}\" is archived to {}: the archive cannot follow this change; \
                 ALTER TABLE {} RESET (archive) first",
                old.name, archive.url, old.name
            )));
        }
        Ok(())
    }

    /// Starts (or restarts) the runner of `archive`.
    fn start(&self, engine: &WeakEngine, archive: Archive) {
        let table = archive.table.clone();
        let runner = Runner::start(engine.clone(), self.store.clone(), &self.stores, archive);
        let old = self.lock().insert(table, runner);
        drop(old);
    }

    /// Stops the runner of `table`'s archive, waiting for its thread to end.
    fn stop(&self, table: &str) {
        let runner = self.lock().remove(table);
        drop(runner);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Runner>> {
        self.runners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The archive of `table`, or 42704.
    fn existing(&self, table: &str) -> Result<Archive> {
        self.records
            .get(table)
            .ok_or_else(|| Error::UndefinedObject(format!("table \"{table}\" has no archive")))
    }
}

impl Drop for Archives {
    fn drop(&mut self) {
        // every runner stops before the store goes
        let runners: Vec<Runner> = self.lock().drain().map(|(_, r)| r).collect();
        drop(runners);
    }
}
