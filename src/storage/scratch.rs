//! [`Scratch`]: a RocksDB instance of one statement's (or one transaction block's) own, in a
//! folder of the data directory's staging folder, for what it holds past its memory budget
//! and must read back (the keys a statement wrote, a block's rows). Written without a log:
//! it dies with its owner, and what a crash leaves is removed when the data directory opens.

use crate::error::Result;
use crate::storage::Store;
use crate::storage::staging::statement_folder;
use rocksdb::{BlockBasedOptions, DB, DBCompressionType, Options, WriteBatch, WriteOptions};
use std::path::{Path, PathBuf};

/// A scratch RocksDB instance, removed with its folder when dropped.
pub(super) struct Scratch {
    /// Declared first: closed before the folder is removed.
    db: DB,
    folder: RemovedOnDrop,
}

/// A folder removed when dropped.
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Scratch {
    /// A new, empty instance in a folder of its own.
    pub(super) fn open(store: &Store) -> Result<Scratch> {
        let folder = RemovedOnDrop(statement_folder(store)?);
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_block_based_table_factory(&table);
        options.set_compression_type(DBCompressionType::None);
        let db = DB::open(&options, folder.0.join("db"))?;
        Ok(Scratch { db, folder })
    }

    /// Its folder (files put there are removed with it).
    pub(super) fn folder(&self) -> &Path {
        &self.folder.0
    }

    /// The instance, to read.
    pub(super) fn db(&self) -> &DB {
        &self.db
    }

    /// Applies `batch` (without a log: nothing of it needs to outlive the process).
    pub(super) fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut options = WriteOptions::default();
        options.disable_wal(true);
        Ok(self.db.write_opt(batch, &options)?)
    }
}
