//! [`Segment`]: the rows (and index entries) that one statement of a transaction block wrote
//! past its memory budget, held in a [`Scratch`] instance instead of the block's writes in
//! memory. The block reads them like its other writes; COMMIT publishes them with the rest in
//! one ingestion; a statement that fails, a `ROLLBACK TO SAVEPOINT` before it or the block's
//! end drops them.

use crate::error::Result;
use crate::schema::TableDef;
use crate::storage::Store;
use crate::storage::scratch::Scratch;
use rocksdb::{DBRawIterator, SstFileWriter, WriteBatch};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Bytes of entries per file when a segment is published.
const FILE_BYTES: usize = 256 << 20;

/// One statement's writes to one table, out of memory.
pub struct Segment {
    scratch: Scratch,
    /// The table written.
    pub table: TableDef,
    /// Whether the table has a primary key or unique index: its keys clash with other
    /// commits, which COMMIT checks for the table as a whole (see [`Store`]'s commit log).
    pub keyed: bool,
}

impl Segment {
    /// An empty segment of writes to `table`.
    pub(super) fn open(store: &Store, table: &TableDef, keyed: bool) -> Result<Segment> {
        Ok(Segment {
            scratch: Scratch::open(store)?,
            table: table.clone(),
            keyed,
        })
    }

    /// Adds `entries` (full keys and their values).
    pub(super) fn put_all(
        &self,
        entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (key, value) in entries {
            batch.put(key, value);
        }
        self.scratch.write(batch)
    }

    /// The value it holds under `key`.
    pub(super) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.scratch.db().get(key)?)
    }

    /// An iterator over its entries in key order (unpositioned).
    pub(super) fn raw_iterator(&self) -> DBRawIterator<'_> {
        self.scratch.db().raw_iterator()
    }

    /// Calls `visit` with the key of every row it holds, without the table prefix, in order.
    pub(super) fn for_each_row_key(
        &self,
        mut visit: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let prefix = super::keys::table_prefix(self.table.id);
        let mut iter = self.raw_iterator();
        iter.seek(&prefix);
        while let Some(key) = iter.key() {
            if !key.starts_with(&prefix) {
                break;
            }
            visit(&key[prefix.len()..])?;
            iter.next();
        }
        Ok(iter.status()?)
    }

    /// Writes every entry to sorted SST files (of about [`FILE_BYTES`] each) in its own
    /// folder (removed with it), appending their paths to `files`, to be published by one
    /// ingestion.
    pub(super) fn write_files(&self, files: &mut Vec<PathBuf>) -> Result<()> {
        let options = super::store::options();
        let mut iter = self.raw_iterator();
        iter.seek_to_first();
        let mut current: Option<SstFileWriter> = None;
        let mut bytes = 0;
        while let Some((key, value)) = iter.key().zip(iter.value()) {
            let file = match current.as_mut() {
                Some(file) => file,
                None => {
                    let path = (self.scratch.folder()).join(format!("out-{}.sst", files.len()));
                    let file = SstFileWriter::create(&options);
                    file.open(&path)?;
                    files.push(path);
                    current.insert(file)
                }
            };
            file.put(key, value)?;
            bytes += key.len() + value.len();
            if bytes >= FILE_BYTES
                && let Some(mut full) = current.take()
            {
                full.finish()?;
                bytes = 0;
            }
            iter.next();
        }
        iter.status()?;
        if let Some(mut last) = current {
            last.finish()?;
        }
        Ok(())
    }

    /// Writes `entries` (values, or `None` for removals), sorted, to one more file in its
    /// folder, appending its path to `files`.
    pub(super) fn write_entries(
        &self,
        entries: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        files: &mut Vec<PathBuf>,
    ) -> Result<()> {
        let options = super::store::options();
        let path = (self.scratch.folder()).join(format!("out-{}.sst", files.len()));
        let mut file = SstFileWriter::create(&options);
        file.open(&path)?;
        for (key, value) in entries {
            match value {
                Some(value) => file.put(key, value)?,
                None => file.delete(key)?,
            }
        }
        file.finish()?;
        files.push(path);
        Ok(())
    }
}
