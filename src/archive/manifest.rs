//! An archive's manifest: one entry per committed run (a batch), listing its files and the
//! row ids it covered, with running totals. A file belongs to the archive once its batch's
//! entry is stored; the entry of the last batch is where the next run starts.

use crate::error::{Error, Result};
use crate::storage::{Store, WriteSet, keys};
use serde::{Deserialize, Serialize};

/// One file of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedFile {
    /// Its path in the archive, relative to the root (`day=2026-12-07/part-….parquet`).
    pub path: String,
    /// Where it was staged before the commit, relative to the root.
    pub staged: String,
    /// Rows in it.
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// A committed batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Its number, from 0.
    pub batch: u64,
    /// The first row id it covered.
    pub from: u64,
    /// Row ids below this are archived: where the next batch starts.
    pub to: u64,
    /// Its files.
    pub files: Vec<ArchivedFile>,
    /// When it was committed, microseconds since the Unix epoch.
    pub at_micros: i64,
    /// Rows archived by this batch and every one before.
    pub total_rows: u64,
    /// Files written by this batch and every one before.
    pub total_files: u64,
    /// Bytes written by this batch and every one before.
    pub total_bytes: u64,
}

/// The last committed batch of `table`'s archive.
pub fn last(store: &Store, table: &str) -> Result<Option<Batch>> {
    let prefix = keys::archive_batch(table, None);
    let mut found = None;
    store.scan_reverse(&prefix, &keys::prefix_end(&prefix), |key, value| {
        found = Some(serde_json::from_slice(value).map_err(|e| {
            Error::Corrupt(format!(
                "archive manifest entry {}: {e}",
                String::from_utf8_lossy(key)
            ))
        })?);
        Ok(false)
    })?;
    Ok(found)
}

/// Stores `batch` of `table`'s archive: from this write on, its files are the archive's.
pub fn commit(store: &Store, table: &str, batch: &Batch) -> Result<()> {
    let value = serde_json::to_vec(batch)
        .map_err(|e| Error::Internal(format!("archive manifest entry as JSON: {e}")))?;
    let mut writes = WriteSet::default();
    writes.put(keys::archive_batch(table, Some(batch.batch)), value);
    store.write(writes)
}
