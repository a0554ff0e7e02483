//! Checkpoints of the data directory for read replicas: RocksDB's checkpoint (hard links to the
//! immutable SST files on the same file system, copies elsewhere, and a fresh manifest), made
//! online while writes go on and consistent at one point. Each is a data directory of its own,
//! named by the sequence number it holds (`00000000000000012345`) under a checkpoint directory,
//! so that a replica opens the newest one; an unfinished one is `….partial` and never opened.

use super::store::{ROCKSDB_DIR, write_marker};
use crate::error::{Error, Result};
use crate::storage::Store;
use rocksdb::checkpoint::Checkpoint;
use std::fs;
use std::path::{Path, PathBuf};

/// How many checkpoints a checkpoint directory keeps, the newest: a replica may still be
/// serving an older one while it moves to the newest.
pub const KEPT: usize = 3;

impl Store {
    /// Makes a checkpoint in the checkpoint directory `dir` (created when missing), keeps the
    /// newest [`KEPT`], and returns the new one's directory (an existing one when nothing was
    /// written since it was made).
    pub fn checkpoint(&self, dir: &Path) -> Result<PathBuf> {
        let io = |what: &str, path: &Path, e: std::io::Error| {
            Error::Storage(format!("{what} {}: {e}", path.display()))
        };
        fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
        let db = self.db();
        let name = format!("{:020}", db.latest_sequence_number());
        let target = dir.join(&name);
        if target.exists() {
            return Ok(target);
        }
        let partial = dir.join(format!("{name}.partial"));
        if partial.exists() {
            fs::remove_dir_all(&partial).map_err(|e| io("cannot remove", &partial, e))?;
        }
        fs::create_dir(&partial).map_err(|e| io("cannot create", &partial, e))?;
        Checkpoint::new(&db)?.create_checkpoint(partial.join(ROCKSDB_DIR))?;
        write_marker(&partial)?;
        fs::rename(&partial, &target).map_err(|e| io("cannot rename", &partial, e))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("cannot sync", dir, e))?;
        let all = checkpoints(dir)?;
        for old in all.iter().take(all.len().saturating_sub(KEPT)) {
            fs::remove_dir_all(old).map_err(|e| io("cannot remove", old, e))?;
        }
        Ok(target)
    }

    /// RocksDB's identity of the data directory: the same for its whole life, and made anew
    /// for a directory made anew.
    pub fn identity(&self) -> Result<String> {
        let identity = self.db().get_db_identity()?;
        Ok(String::from_utf8_lossy(&identity).trim().to_string())
    }
}

/// The complete checkpoints in the checkpoint directory `dir`, oldest first.
pub fn checkpoints(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir)
        .map_err(|e| Error::Storage(format!("cannot read {}: {e}", dir.display())))?;
    let mut found: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_string();
            let numbered = name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit());
            numbered.then(|| (name, entry.path()))
        })
        .collect();
    found.sort();
    Ok(found.into_iter().map(|(_, path)| path).collect())
}
