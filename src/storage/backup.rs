//! Backups of a data directory with RocksDB's backup engine: online (taken from the open
//! database while it serves), consistent (one point in time: every table, model version,
//! index, feature view and role as of that moment) and incremental (a backup directory keeps
//! every backup, and files that earlier backups already hold are not copied again).

use crate::error::{Error, Result};
use crate::storage::store::{self, ROCKSDB_DIR, Store};
use rocksdb::Env;
use rocksdb::backup::{BackupEngine, BackupEngineOptions, RestoreOptions};
use std::fs;
use std::path::Path;

/// One backup in a backup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// Its number in the directory, increasing.
    pub id: u32,
    /// When it was taken, in seconds since the Unix epoch.
    pub timestamp: i64,
    /// Bytes of the files it consists of (files shared with other backups included).
    pub bytes: u64,
    /// Number of those files.
    pub files: u32,
}

fn engine(dir: &Path) -> Result<BackupEngine> {
    fs::create_dir_all(dir).map_err(|e| backup_io(dir, e))?;
    let options = BackupEngineOptions::new(dir)?;
    Ok(BackupEngine::open(&options, &Env::new()?)?)
}

fn backup_io(dir: &Path, e: std::io::Error) -> Error {
    Error::Io(std::io::Error::new(
        e.kind(),
        format!("backup directory {}: {e}", dir.display()),
    ))
}

fn infos(engine: &BackupEngine) -> Vec<BackupInfo> {
    engine
        .get_backup_info()
        .into_iter()
        .map(|b| BackupInfo {
            id: b.backup_id,
            timestamp: b.timestamp,
            bytes: b.size,
            files: b.num_files,
        })
        .collect()
}

impl Store {
    /// Adds a backup of everything written so far to the backup directory `to` (created if
    /// missing), copying only files its earlier backups lack, and verifies it.
    pub fn backup(&self, to: &Path) -> Result<BackupInfo> {
        let mut engine = engine(to)?;
        engine.create_new_backup_flush(self.db().as_ref(), true)?;
        let latest = infos(&engine)
            .into_iter()
            .max_by_key(|b| b.id)
            .ok_or_else(|| Error::Internal("the backup was not recorded".into()))?;
        engine.verify_backup(latest.id)?;
        Ok(latest)
    }
}

/// The backups in the backup directory `from`, oldest first.
pub fn list(from: &Path) -> Result<Vec<BackupInfo>> {
    if !from.join("meta").is_dir() {
        return Err(not_a_backup(from));
    }
    Ok(infos(&engine(from)?))
}

fn not_a_backup(from: &Path) -> Error {
    Error::InvalidParameter(format!(
        "{} holds no TasteDB backup (made by `tastedb backup` or BACKUP TO)",
        from.display()
    ))
}

/// Restores the latest backup in `from` (or backup `id`) as a new data directory `to`, which
/// must not exist or be empty.
pub fn restore(from: &Path, to: &Path, id: Option<u32>) -> Result<BackupInfo> {
    let backups = list(from)?;
    let chosen = match id {
        Some(id) => backups
            .iter()
            .find(|b| b.id == id)
            .cloned()
            .ok_or_else(|| {
                Error::InvalidParameter(format!("{} has no backup {id}", from.display()))
            })?,
        None => backups.last().cloned().ok_or_else(|| not_a_backup(from))?,
    };
    if to.exists()
        && fs::read_dir(to)
            .map_err(|e| backup_io(to, e))?
            .next()
            .is_some()
    {
        return Err(Error::InvalidParameter(format!(
            "cannot restore into {}: it is not empty",
            to.display()
        )));
    }
    fs::create_dir_all(to).map_err(|e| backup_io(to, e))?;
    let mut engine = engine(from)?;
    let db = to.join(ROCKSDB_DIR);
    engine.restore_from_backup(&db, &db, &RestoreOptions::default(), chosen.id)?;
    store::write_marker(to)?;
    Ok(chosen)
}
