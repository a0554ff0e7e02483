//! [`Staging`]: the writes of a statement too large to hold in memory, staged in sorted SST
//! files inside the data directory and published all at once by RocksDB's file ingestion,
//! which makes every file visible in one atomic, durable step (or none, if it fails or the
//! process dies first: staged files are removed when the data directory opens again).

use crate::error::{Error, Result};
use crate::storage::Store;
use crate::storage::seen_keys::SeenKeys;
use crate::storage::store::{Publish, WholeTable};
use crate::storage::write_set::WriteSet;
use rocksdb::SstFileWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The folder of the data directory where statements stage their files.
pub(super) const STAGING_DIR: &str = "staging";

/// Bytes of bookkeeping counted for each buffered entry besides its key and value.
const ENTRY_OVERHEAD: usize = 64;

/// Bytes of each chunk of a value written by [`Staging::put_large`].
pub const LARGE_VALUE_CHUNK: usize = 4 << 20;

/// The key of chunk `number` (from 1) of the large value under `key`.
pub(super) fn large_value_chunk_key(key: &[u8], number: u32) -> Vec<u8> {
    let mut chunk_key = key.to_vec();
    chunk_key.extend_from_slice(&number.to_be_bytes());
    chunk_key
}

/// Tells the staging folders of concurrent statements apart within one process.
static NEXT_STAGING: AtomicU64 = AtomicU64::new(0);

/// Writes of one statement: buffered while they fit `budget` bytes, then staged in files.
pub struct Staging<'s> {
    store: &'s Store,
    budget: usize,
    buffered: Vec<(Vec<u8>, Vec<u8>)>,
    /// Keys to remove, buffered.
    deletes: Vec<Vec<u8>>,
    buffered_bytes: usize,
    /// The statement's own folder, created with its first file.
    folder: Option<PathBuf>,
    files: Vec<PathBuf>,
    /// Files of removed keys, published before `files` so that a key put again stays.
    delete_files: Vec<PathBuf>,
}

impl<'s> Staging<'s> {
    /// Writes for `store`, holding at most about `budget` bytes in memory.
    pub fn new(store: &'s Store, budget: usize) -> Self {
        Staging {
            store,
            budget,
            buffered: Vec::new(),
            deletes: Vec::new(),
            buffered_bytes: 0,
            folder: None,
            files: Vec::new(),
            delete_files: Vec::new(),
        }
    }

    /// Removes `key` (an entry the statement replaces) at the commit; a put of the same key
    /// by this statement wins over the removal.
    pub fn delete(&mut self, key: Vec<u8>) -> Result<()> {
        self.buffered_bytes += key.len() + ENTRY_OVERHEAD;
        self.deletes.push(key);
        if self.buffered_bytes >= self.budget {
            self.stage()?;
        }
        Ok(())
    }

    /// Adds `value` under `key`, a key no other entry of this statement has.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.buffered_bytes += key.len() + value.len() + ENTRY_OVERHEAD;
        self.buffered.push((key.to_vec(), value.to_vec()));
        if self.buffered_bytes >= self.budget {
            self.stage()?;
        }
        Ok(())
    }

    /// Adds `value` under `key` in chunks of [`LARGE_VALUE_CHUNK`] bytes (the first under
    /// `key`, the others under `key` and their 4-byte big-endian number), so that no file
    /// block or buffered entry holds all of it; [`Store::get_large`] reads it back.
    pub fn put_large(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.put_large_from(key, |out| out(value))
    }

    /// Like [`Staging::put_large`], for a value that `write` hands over in pieces, so that
    /// it is never all in memory at once.
    pub fn put_large_from(
        &mut self,
        key: &[u8],
        write: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
    ) -> Result<()> {
        let mut chunk = Vec::with_capacity(LARGE_VALUE_CHUNK);
        let mut number = 0u32;
        let put_chunk = |staging: &mut Self, chunk: &[u8], number: u32| match number {
            0 => staging.put(key, chunk),
            n => staging.put(&large_value_chunk_key(key, n), chunk),
        };
        write(&mut |mut piece: &[u8]| {
            while !piece.is_empty() {
                let take = piece.len().min(LARGE_VALUE_CHUNK - chunk.len());
                chunk.extend_from_slice(&piece[..take]);
                piece = &piece[take..];
                if chunk.len() == LARGE_VALUE_CHUNK {
                    put_chunk(self, &chunk, number)?;
                    chunk.clear();
                    number += 1;
                }
            }
            Ok(())
        })?;
        if !chunk.is_empty() || number == 0 {
            put_chunk(self, &chunk, number)?;
        }
        Ok(())
    }

    /// True once some of the writes went to files (the statement did not fit its budget).
    pub fn staged(&self) -> bool {
        !self.files.is_empty() || !self.delete_files.is_empty()
    }

    /// Makes every write durable and visible at once: one synced write when they all fitted
    /// the budget, otherwise one ingestion of every staged file.
    pub fn commit(mut self) -> Result<()> {
        let publish = self.publication()?;
        // `self` (and its folder) lives until the files are moved into the database
        self.store.publish(publish)
    }

    /// Like [`Staging::commit`] for a statement whose primary keys and unique-index entries
    /// (of table `table`) are in `seen`: fails with 40001 and writes nothing when a commit
    /// numbered after `start` wrote one of them (first committer wins, as
    /// [`Store::commit_checked`]).
    pub fn commit_checked(mut self, table: u64, start: u64, seen: &[&SeenKeys]) -> Result<()> {
        let publish = self.publication()?;
        if seen.iter().any(|keys| keys.spilled()) {
            let written = |key: &[u8]| -> Result<bool> {
                for keys in seen {
                    if keys.contains(key)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            };
            let whole = WholeTable {
                table,
                start,
                written: &written,
            };
            return self.store.publish_checked(publish, Vec::new(), &[whole]);
        }
        let checked = (seen.iter())
            .flat_map(|keys| keys.in_memory())
            .map(|key| (key.clone(), start))
            .collect();
        self.store.publish_checked(publish, checked, &[])
    }

    /// What publishes the writes: a write batch if nothing was staged (removals first, so
    /// that puts win), otherwise every file (files of removals first).
    fn publication(&mut self) -> Result<Publish> {
        if !self.staged() {
            let mut write = WriteSet::default();
            for key in self.deletes.drain(..) {
                write.delete(&key);
            }
            for (key, value) in self.buffered.drain(..) {
                write.put(key, value);
            }
            return Ok(Publish::Write(write));
        }
        self.stage()?;
        let mut files = std::mem::take(&mut self.delete_files);
        files.append(&mut self.files);
        Ok(Publish::Ingest(files))
    }

    /// Writes the buffered entries, sorted, to new files of the statement's folder.
    fn stage(&mut self) -> Result<()> {
        self.stage_deletes()?;
        self.buffered_bytes = 0;
        if self.buffered.is_empty() {
            return Ok(());
        }
        let folder = self.folder()?;
        self.buffered.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let path = folder.join(format!("{}.sst", self.files.len()));
        let options = super::store::options();
        let mut writer = SstFileWriter::create(&options);
        writer.open(&path)?;
        for (key, value) in self.buffered.drain(..) {
            writer.put(key, value)?;
        }
        writer.finish()?;
        self.files.push(path);
        Ok(())
    }

    /// Writes the buffered removals, sorted, to a new file of the statement's folder.
    fn stage_deletes(&mut self) -> Result<()> {
        if self.deletes.is_empty() {
            return Ok(());
        }
        let path = self
            .folder()?
            .join(format!("delete-{}.sst", self.delete_files.len()));
        self.deletes.sort_unstable();
        self.deletes.dedup();
        let options = super::store::options();
        let mut writer = SstFileWriter::create(&options);
        writer.open(&path)?;
        for key in self.deletes.drain(..) {
            writer.delete(key)?;
        }
        writer.finish()?;
        self.delete_files.push(path);
        Ok(())
    }

    /// The statement's own folder, created the first time.
    fn folder(&mut self) -> Result<PathBuf> {
        if let Some(folder) = &self.folder {
            return Ok(folder.clone());
        }
        let folder = statement_folder(self.store)?;
        self.folder = Some(folder.clone());
        Ok(folder)
    }
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        // Ingested files were moved into the database; what is left was never published.
        if let Some(folder) = &self.folder {
            let _ = std::fs::remove_dir_all(folder);
        }
    }
}

/// Creates a folder of its own for one statement's staged files, inside the data directory's
/// staging folder (which [`remove_leftovers`] empties when the directory opens).
pub(super) fn statement_folder(store: &Store) -> Result<PathBuf> {
    let folder = store.dir().join(STAGING_DIR).join(format!(
        "{}-{}",
        std::process::id(),
        NEXT_STAGING.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&folder).map_err(|e| staging_error(&folder, e))?;
    Ok(folder)
}

/// Removes what statements staged and never published (they stopped with the process).
pub(super) fn remove_leftovers(dir: &Path) -> Result<()> {
    let folder = dir.join(STAGING_DIR);
    match std::fs::remove_dir_all(&folder) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(staging_error(&folder, e)),
    }
}

pub(super) fn staging_error(folder: &Path, e: std::io::Error) -> Error {
    let message = format!("staging rows in {}: {e}", folder.display());
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            Error::DiskFull(message)
        }
        _ => Error::Storage(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_values_past_the_budget_are_staged_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let value: Vec<u8> = (0..LARGE_VALUE_CHUNK * 2 + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut staging = Staging::new(&store, 1 << 20);
        staging.put_large(b"big", &value).unwrap();
        staging.put(b"small", b"x").unwrap();
        assert!(staging.staged());
        assert!(
            store.get(b"small").unwrap().is_none(),
            "nothing visible before the commit"
        );
        staging.commit().unwrap();
        assert_eq!(store.get_large(b"big").unwrap(), Some(value));
        assert_eq!(store.get_large(b"small").unwrap(), Some(b"x".to_vec()));
        assert_eq!(store.get_large(b"absent").unwrap(), None);
        let folders = std::fs::read_dir(dir.path().join(STAGING_DIR)).unwrap();
        assert_eq!(folders.count(), 0, "the statement's folder is gone");

        // a statement that never commits leaves nothing, in the database or on disk
        let mut dropped = Staging::new(&store, 1 << 20);
        dropped.put_large(b"lost", &[7; 3 << 20]).unwrap();
        assert!(dropped.staged());
        drop(dropped);
        assert!(store.get(b"lost").unwrap().is_none());
        let folders = std::fs::read_dir(dir.path().join(STAGING_DIR)).unwrap();
        assert_eq!(folders.count(), 0);
    }

    #[test]
    fn removals_are_published_with_the_puts_and_a_put_of_the_same_key_wins() {
        for budget in [1 << 20, 100] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let mut old = WriteSet::default();
            old.put(b"stale", b"old");
            old.put(b"replaced", b"old");
            store.write(old).unwrap();
            let mut staging = Staging::new(&store, budget);
            staging.put(b"fresh", &[1; 64]).unwrap();
            staging.delete(b"replaced".to_vec()).unwrap();
            staging.delete(b"stale".to_vec()).unwrap();
            staging.put(b"replaced", &[2; 64]).unwrap();
            assert_eq!(staging.staged(), budget == 100);
            assert_eq!(store.get(b"stale").unwrap(), Some(b"old".to_vec()));
            staging.commit().unwrap();
            assert_eq!(store.get(b"stale").unwrap(), None, "budget {budget}");
            assert_eq!(store.get(b"replaced").unwrap(), Some(vec![2; 64]));
            assert_eq!(store.get(b"fresh").unwrap(), Some(vec![1; 64]));
        }
    }
}
