//! The data directory: a marker file saying what the directory is, and one RocksDB database.

use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::storage::commit_log::CommitLog;
use crate::storage::keys;
use crate::storage::retention::Retentions;
use crate::storage::row_locks::RowLocks;
use crate::storage::write_set::WriteSet;
use datafusion::arrow::array::ArrayRef;
use rocksdb::{DB, DBCompressionType, Options, ReadOptions, WriteOptions};
use serde::de::DeserializeOwned;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

/// Name of the marker file at the top of every data directory.
pub const MARKER_FILE: &str = "TASTEDB";
/// Version of the on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest format this build opens; opening one upgrades its marker to [`FORMAT_VERSION`]
/// (format 2 added append-only blocks, which builds of format 1 would misread).
const OLDEST_FORMAT: u32 = 1;
const MARKER_PREFIX: &str = "TasteDB data directory, format ";
/// The database inside a data directory.
pub(super) const ROCKSDB_DIR: &str = "rocksdb";

/// Told about the rows of every durable change to a table (e.g. to drop cached answers or to
/// queue rows for a vector index).
pub type RowsChanged = Arc<dyn Fn(&TableDef, TableChange<'_>) + Send + Sync>;

/// Says whether an observer wants to be told about the rows written to a table now (see
/// [`Store::watched`]).
pub type Watches = Arc<dyn Fn(&TableDef) -> bool + Send + Sync>;

/// A durable change to the rows of a table.
#[derive(Clone, Copy)]
pub enum TableChange<'a> {
    /// Rows written: inserted, or the new versions of updated rows.
    Written(&'a [WrittenBatch]),
    /// Rows removed, by row key: deleted, or the old versions of updated rows.
    Removed(&'a [Vec<u8>]),
}

/// Rows of one durable write: the columns as stored (the table's types, every column) and the
/// row keys they were stored under.
pub struct WrittenBatch {
    /// One array per table column.
    pub columns: Vec<ArrayRef>,
    /// The key of each row within the table.
    pub keys: RowKeys,
}

/// The row keys of a [`WrittenBatch`].
pub enum RowKeys {
    /// Consecutive row ids from `first` (tables without primary key).
    RowIds {
        /// The row id of the first row.
        first: u64,
    },
    /// Encoded primary keys, one per row.
    Keys(Vec<Vec<u8>>),
}

impl RowKeys {
    /// The key of row `row`.
    pub fn key(&self, row: usize) -> Vec<u8> {
        match self {
            RowKeys::RowIds { first } => keys::row_id(first + row as u64).to_vec(),
            RowKeys::Keys(keys) => keys.get(row).cloned().unwrap_or_default(),
        }
    }
}

/// An open data directory. Every write through [`Store::write`] is durable when it returns.
pub struct Store {
    /// The database; replaced by a fresh handle when it recovers from a full disk.
    db: RwLock<Arc<DB>>,
    /// Set when a write failed for lack of space: RocksDB then refuses every write until the
    /// database is opened again (its C API has no `Resume`), which [`Store::write`] does once
    /// there is space again.
    disk_full: AtomicBool,
    dir: PathBuf,
    observers: RwLock<Vec<(RowsChanged, Watches)>>,
    commits: Mutex<CommitLog>,
    /// Told whenever a commit of checked keys is written (or failed to be).
    commit_finished: Condvar,
    row_locks: RowLocks,
    retentions: Retentions,
    /// Opened with [`Store::open_read_only`]: every write is refused with 25006.
    read_only: bool,
}

/// Free bytes the data directory's file system needs before writes are tried again after
/// it was full.
const FREE_BYTES_TO_RESUME: u64 = 4 << 20;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

impl Store {
    /// Opens the data directory `dir`, creating it when it does not exist or is empty.
    pub fn open(dir: &Path) -> Result<Store> {
        prepare_directory(dir)?;
        super::staging::remove_leftovers(dir)?;
        let retentions = Retentions::default();
        let db = open_db(dir, &retentions)?;
        Ok(Store::over(db, dir, retentions, false))
    }

    /// Opens the data directory `dir` (a replica's checkpoint) for reading only: nothing in it
    /// is changed, not even leftovers removed, and every write is refused with 25006. All its
    /// files are opened now, so the directory may be removed while it is open.
    pub fn open_read_only(dir: &Path) -> Result<Store> {
        let marker = dir.join(MARKER_FILE);
        let version = fs::read_to_string(&marker).map_err(|e| io_context(dir, "cannot read", e))?;
        let ours = version
            .trim()
            .strip_prefix(MARKER_PREFIX)
            .and_then(|v| v.parse::<u32>().ok());
        if ours != Some(FORMAT_VERSION) {
            return Err(Error::NotADataDirectory {
                path: dir.to_path_buf(),
                reason: format!("it is not a data directory of format {FORMAT_VERSION}"),
            });
        }
        let mut options = options();
        options.create_if_missing(false);
        options.set_max_open_files(-1);
        let db = DB::open_for_read_only(&options, dir.join(ROCKSDB_DIR), false)
            .map_err(|e| open_error(dir, e))?;
        Ok(Store::over(db, dir, Retentions::default(), true))
    }

    /// A store over the open database `db` of the data directory `dir`.
    fn over(db: DB, dir: &Path, retentions: Retentions, read_only: bool) -> Store {
        Store {
            db: RwLock::new(Arc::new(db)),
            disk_full: AtomicBool::new(false),
            dir: dir.to_path_buf(),
            observers: RwLock::new(Vec::new()),
            commits: Mutex::new(CommitLog::default()),
            commit_finished: Condvar::new(),
            row_locks: RowLocks::default(),
            retentions,
            read_only,
        }
    }

    /// Whether the store refuses writes ([`Store::open_read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The RocksDB database, for the readers of this module.
    pub(super) fn db(&self) -> Arc<DB> {
        self.db.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db().get(key)?)
    }

    /// The value written under `key` by [`super::Staging::put_large`] (or a plain one), its
    /// chunks put together again.
    pub fn get_large(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut chunks = Vec::new();
        let mut end = key.to_vec();
        end.extend_from_slice(&[0xff; 5]);
        let mut next_chunk = 1u32;
        self.scan(key, &end, Scan::Bulk, |found, value| {
            if chunks.is_empty() {
                if found != key {
                    return Ok(false);
                }
            } else if found != super::staging::large_value_chunk_key(key, next_chunk) {
                return Ok(false);
            } else {
                next_chunk += 1;
            }
            chunks.push(value.to_vec());
            Ok(true)
        })?;
        Ok(match chunks.len() {
            0 => None,
            1 => chunks.pop(),
            _ => {
                let mut value = Vec::with_capacity(chunks.iter().map(Vec::len).sum());
                // each chunk is freed once copied
                for chunk in chunks {
                    value.extend_from_slice(&chunk);
                }
                Some(value)
            }
        })
    }

    /// The values stored under `keys`, in the same order, read in one batch.
    pub fn multi_get<K: AsRef<[u8]>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        self.db()
            .multi_get(keys)
            .into_iter()
            .map(|value| value.map_err(Error::from))
            .collect()
    }

    /// Calls `visit` with every key and value from `from` (included) to `to` (excluded), in
    /// key order, from one consistent snapshot, until it returns false. `Scan::Bulk` keeps a
    /// one-off read of many entries out of the block cache.
    pub fn scan(
        &self,
        from: &[u8],
        to: &[u8],
        kind: Scan,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(to.to_vec());
        options.fill_cache(kind == Scan::Cached);
        let db = self.db();
        let mut iter = db.raw_iterator_opt(options);
        iter.seek(from);
        while let Some((key, value)) = iter.key().zip(iter.value()) {
            if !visit(key, value)? {
                return Ok(());
            }
            iter.next();
        }
        Ok(iter.status()?)
    }

    /// Like [`Store::scan`], from the last key before `to` back to `from`.
    pub fn scan_reverse(
        &self,
        from: &[u8],
        to: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(from.to_vec());
        options.set_iterate_upper_bound(to.to_vec());
        let db = self.db();
        let mut iter = db.raw_iterator_opt(options);
        iter.seek_to_last();
        while let Some((key, value)) = iter.key().zip(iter.value()) {
            if !visit(key, value)? {
                return Ok(());
            }
            iter.prev();
        }
        Ok(iter.status()?)
    }

    /// The JSON records stored under keys starting with `prefix`, in key order; one that does
    /// not decode is a corrupt `what` (XX001).
    pub fn records<T: DeserializeOwned>(&self, prefix: &[u8], what: &str) -> Result<Vec<T>> {
        self.records_between(prefix, &keys::prefix_end(prefix), what)
    }

    /// The JSON records stored from `from` (included) to `to` (excluded), in key order; one
    /// that does not decode is a corrupt `what` (XX001).
    pub fn records_between<T: DeserializeOwned>(
        &self,
        from: &[u8],
        to: &[u8],
        what: &str,
    ) -> Result<Vec<T>> {
        let mut records = Vec::new();
        self.scan(from, to, Scan::Cached, |key, value| {
            records.push(serde_json::from_slice(value).map_err(|e| {
                Error::Corrupt(format!("{what} {}: {e}", String::from_utf8_lossy(key)))
            })?);
            Ok(true)
        })?;
        Ok(records)
    }

    /// Bytes on disk (compressed, in SST files) of the keys from `from` to `to`; writes still
    /// in the memtable are not counted (RocksDB's C API estimates only flushed data here).
    pub fn approximate_size(&self, from: &[u8], to: &[u8]) -> u64 {
        let range = rocksdb::Range::new(from, to);
        self.db()
            .get_approximate_sizes(&[range])
            .first()
            .copied()
            .unwrap_or(0)
    }

    /// RocksDB's live SST bytes and the bytes it estimates compaction still has to rewrite
    /// (`rocksdb.live-sst-files-size`, `rocksdb.estimate-pending-compaction-bytes`).
    pub fn disk_sizes(&self) -> (u64, u64) {
        let db = self.db();
        let property = |name: &str| db.property_int_value(name).ok().flatten().unwrap_or(0);
        (
            property("rocksdb.live-sst-files-size"),
            property("rocksdb.estimate-pending-compaction-bytes"),
        )
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Applies `batch` atomically and returns once it is in the synced write-ahead log.
    /// RocksDB groups concurrent synced writers into one WAL write and one fsync.
    ///
    /// A write that fails for lack of space is `53100` and writes nothing; the writes after it
    /// fail the same way until there is space again, when the database is reopened (reads go
    /// on meanwhile).
    pub fn write(&self, writes: WriteSet) -> Result<()> {
        self.publish(Publish::Write(writes))
    }

    /// Applies `publish` in one atomic, durable step: a synced write, or the ingestion of
    /// sorted SST files (see [`super::staging::Staging`]). When the disk is full it fails,
    /// and later writes first check that space came back.
    pub(super) fn publish(&self, publish: Publish) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnlySqlTransaction(
                "cannot write in a read-only transaction: this server is a read-only replica"
                    .into(),
            ));
        }
        if self.disk_full.load(Ordering::Acquire) {
            self.resume_after_disk_full()?;
        }
        let published = match publish {
            Publish::Write(writes) => {
                let mut options = WriteOptions::default();
                options.set_sync(true);
                self.db().write_opt(writes.into_batch(), &options)
            }
            Publish::Ingest(files) => {
                let mut options = rocksdb::IngestExternalFileOptions::default();
                options.set_move_files(true);
                self.db().ingest_external_file_opts(&options, files)
            }
        };
        published.map_err(|e| {
            let error = Error::from(e);
            if matches!(error, Error::DiskFull(_)) {
                self.disk_full.store(true, Ordering::Release);
            }
            error
        })
    }

    /// After a write failed for lack of space: once the file system has room again and no
    /// read holds the old handle, reopens the database (RocksDB replays its log: every
    /// acknowledged write is kept, the failed one is not). 53100 until then.
    fn resume_after_disk_full(&self) -> Result<()> {
        let still_full = |why: &str| Error::DiskFull(format!("writes resume once {why}"));
        let free = rustix::fs::statvfs(&self.dir)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .unwrap_or(0);
        if free < FREE_BYTES_TO_RESUME {
            return Err(still_full(
                "space is freed on the data directory's file system",
            ));
        }
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        if !self.disk_full.load(Ordering::Acquire) {
            return Ok(()); // another writer reopened it meanwhile
        }
        if Arc::strong_count(&slot) > 1 {
            return Err(still_full("the reads running now have finished"));
        }
        // Close the old handle before opening the directory again (RocksDB locks it).
        let placeholder = Arc::new(open_read_only(&self.dir)?);
        drop(std::mem::replace(&mut *slot, placeholder));
        match open_db(&self.dir, &self.retentions) {
            Ok(db) => {
                *slot = Arc::new(db);
                self.disk_full.store(false, Ordering::Release);
                tracing::warn!(dir = %self.dir.display(), "writes resumed after the disk was full");
                Ok(())
            }
            Err(e) => Err(still_full(&format!("the data directory opens again ({e})"))),
        }
    }

    /// The retention rules the compaction filter drops expired rows by.
    pub fn retentions(&self) -> &Retentions {
        &self.retentions
    }

    /// Compacts the keys from `from` to `to` down to the last level now, so that the
    /// compaction filter sees every entry there (VACUUM).
    pub fn compact(&self, from: &[u8], to: &[u8]) {
        self.db().compact_range(Some(from), Some(to));
    }

    /// Calls `observer` after every durable change of table rows from now on; `watches`
    /// says whether it wants the rows written to a table at the moment.
    pub fn on_rows_changed(&self, observer: RowsChanged, watches: Watches) {
        self.observers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((observer, watches));
    }

    /// Whether some observer wants the rows written to `table`: a statement that no longer
    /// holds its rows (they were staged) reads them back only then.
    pub fn watched(&self, table: &TableDef) -> bool {
        (self.observers.read().unwrap_or_else(|p| p.into_inner()))
            .iter()
            .any(|(_, watches)| watches(table))
    }

    /// Tells the observers that `change` (to rows of `table`) is durable.
    pub fn rows_changed(&self, table: &TableDef, change: TableChange<'_>) {
        for (observer, _) in self
            .observers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            observer(table, change);
        }
    }

    /// Registers a write that checks keys at commit (see [`Store::commit_checked`]) and starts
    /// now: commits numbered after [`CommitStart::number`] clash with it until it is dropped.
    pub(super) fn commit_start(&self) -> CommitStart<'_> {
        CommitStart {
            store: self,
            number: self.commit_log().open(),
        }
    }

    /// Applies `writes` like [`Store::write`] unless a commit numbered after `start` wrote one
    /// of `checked` (then 40001 and nothing is written); records that this commit wrote them.
    /// The check and the numbering take turns; the synced write does not, so concurrent
    /// commits share one WAL sync (see [`CommitLog`]).
    pub fn commit_checked(&self, writes: WriteSet, checked: Vec<(Vec<u8>, u64)>) -> Result<()> {
        self.publish_checked(Publish::Write(writes), checked, &[])
    }

    /// [`Store::commit_checked`] for either way of publishing, and for writes too many to
    /// list their keys (`whole`).
    pub(super) fn publish_checked(
        &self,
        publish: Publish,
        checked: Vec<(Vec<u8>, u64)>,
        whole: &[WholeTable<'_>],
    ) -> Result<()> {
        let number = {
            let mut log = self.commit_log();
            let keys = checked.iter().map(|(key, start)| (key.as_slice(), *start));
            if log.conflict(keys).is_some() {
                return Err(self.clash(log));
            }
            for table in whole {
                if log.conflict_in_table(table.table, table.start, table.written)? {
                    return Err(self.clash(log));
                }
            }
            let tables: Vec<u64> = whole.iter().map(|table| table.table).collect();
            log.writing(checked.into_iter().map(|(key, _)| key).collect(), &tables)
        };
        self.published(number, publish)
    }

    /// Publishes the commit numbered `number` (outside the log's lock) and marks it done.
    fn published(&self, number: u64, publish: Publish) -> Result<()> {
        let written = self.publish(publish);
        self.commit_log().finished(number);
        self.commit_finished.notify_all();
        written
    }

    /// 40001 when a commit numbered after a key's number wrote (or is writing) it.
    pub(super) fn check_unwritten<'k>(
        &self,
        keys: impl IntoIterator<Item = (&'k [u8], u64)>,
    ) -> Result<()> {
        let mut keys = keys.into_iter().peekable();
        if keys.peek().is_none() {
            return Ok(());
        }
        let log = self.commit_log();
        match log.conflict(keys) {
            Some(_) => Err(self.clash(log)),
            None => Ok(()),
        }
    }

    /// The first of `keys` that a commit numbered after `since` wrote (or is writing).
    pub(super) fn written_since<'k>(&self, keys: &'k [Vec<u8>], since: u64) -> Option<&'k [u8]> {
        let keys = keys.iter().map(|key| (key.as_slice(), since));
        self.commit_log().conflict(keys)
    }

    /// The number a row write from a snapshot taken after `key` was locked is checked from:
    /// `read_at`, or the commit that last wrote the row when it is later and written (the
    /// snapshot holds it even if a commit before it is still being written).
    pub(super) fn checked_from(&self, key: &[u8], read_at: u64) -> u64 {
        let written = self.commit_log().written_at(key);
        written.map_or(read_at, |at| at.max(read_at))
    }

    /// The number up to which every commit is in a snapshot taken now, and the database to
    /// take it of (while the guard is held no commit becomes visible).
    pub(super) fn visible_now(&self) -> (u64, Arc<DB>, MutexGuard<'_, CommitLog>) {
        let log = self.commit_log();
        (log.visible(), self.db(), log)
    }

    /// The row locks of open transactions.
    pub(super) fn row_locks(&self) -> &RowLocks {
        &self.row_locks
    }

    /// The 40001 of a write that clashes with a later commit, once the commits under way are
    /// written: a transaction begun again at once would otherwise start before the commit
    /// it clashed with, and clash again (PostgreSQL's `REPEATABLE READ` likewise waits for
    /// the other writer before it fails).
    fn clash(&self, mut log: MutexGuard<'_, CommitLog>) -> Error {
        let numbered = log.numbered();
        while log.visible() < numbered {
            log = (self.commit_finished.wait(log)).unwrap_or_else(|p| p.into_inner());
        }
        Error::SerializationFailure(
            "a transaction that committed after this one began wrote one of its rows".into(),
        )
    }

    /// A transaction begins: its start number, and the database to take its snapshot of
    /// (taken while no commit can become visible, so it holds every commit up to the start).
    pub(super) fn open_transaction(&self) -> (u64, Arc<DB>, MutexGuard<'_, CommitLog>) {
        let mut log = self.commit_log();
        let start = log.open();
        (start, self.db(), log)
    }

    /// A transaction that started at `start` ended.
    pub(super) fn close_transaction(&self, start: u64) {
        self.commit_log().close(start);
    }

    fn commit_log(&self) -> MutexGuard<'_, CommitLog> {
        self.commits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads a big-endian u64 meta counter, 0 when absent.
    pub fn read_counter(&self, key: &[u8]) -> Result<u64> {
        match self.get(key)? {
            None => Ok(0),
            Some(bytes) => {
                let array: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                    Error::Corrupt(format!(
                        "counter {} is not 8 bytes",
                        String::from_utf8_lossy(key)
                    ))
                })?;
                Ok(u64::from_be_bytes(array))
            }
        }
    }
}

/// How a [`Store::scan`] uses the block cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Blocks read stay cached (small or repeated reads).
    Cached,
    /// Blocks read are not cached (one pass over many entries).
    Bulk,
}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Error {
        let text = e.to_string();
        if text.contains("No space left on device") || text.contains("Disk quota exceeded") {
            Error::DiskFull(text)
        } else {
            Error::Storage(text)
        }
    }
}

/// Writes of a commit to a table too many to list their keys: it clashes with a commit
/// numbered after `start` that wrote a key of `table` for which `written` is true, and counts
/// as writing every key of the table (for transactions that began before it).
pub(super) struct WholeTable<'a> {
    /// The table's id.
    pub table: u64,
    /// The commit number its keys are checked from.
    pub start: u64,
    /// Whether the commit writes a key.
    pub written: &'a dyn Fn(&[u8]) -> Result<bool>,
}

/// How a commit's writes become part of the database.
pub(super) enum Publish {
    /// One synced write batch.
    Write(WriteSet),
    /// Sorted SST files, moved into the database by one ingestion.
    Ingest(Vec<PathBuf>),
}

/// The options of the database, also those of the files statements stage for it.
pub(super) fn options() -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.set_compression_type(DBCompressionType::Lz4);
    options.set_max_background_jobs(2);
    options.set_keep_log_file_num(4);
    options
}

fn open_db(dir: &Path, retentions: &Retentions) -> Result<DB> {
    let mut options = options();
    options.set_compaction_filter_factory(retentions.compaction_filters());
    DB::open(&options, dir.join(ROCKSDB_DIR)).map_err(|e| open_error(dir, e))
}

/// A read-only handle, which serves reads while the writable one is reopened.
fn open_read_only(dir: &Path) -> Result<DB> {
    Ok(DB::open_for_read_only(
        &options(),
        dir.join(ROCKSDB_DIR),
        false,
    )?)
}

/// Checks that `dir` is a TasteDB data directory, or makes it one when it is new or empty.
fn prepare_directory(dir: &Path) -> Result<()> {
    let not_ours = |reason: &str| Error::NotADataDirectory {
        path: dir.to_path_buf(),
        reason: reason.to_string(),
    };
    let marker = dir.join(MARKER_FILE);
    if dir.exists() {
        if !dir.is_dir() {
            return Err(not_ours("it is not a directory"));
        }
        if marker.exists() {
            return check_marker(dir, &marker);
        }
        let mut entries = fs::read_dir(dir).map_err(|e| io_context(dir, "cannot read", e))?;
        if entries.next().is_some() {
            return Err(not_ours(&format!(
                "it is not empty and has no {MARKER_FILE} file"
            )));
        }
    }
    fs::create_dir_all(dir).map_err(|e| io_context(dir, "cannot create", e))?;
    write_marker(dir)
}

/// Writes the marker file that makes `dir` a data directory of this format, durably.
pub(super) fn write_marker(dir: &Path) -> Result<()> {
    let marker = dir.join(MARKER_FILE);
    let mut file = fs::File::create(&marker).map_err(|e| io_context(dir, "cannot write to", e))?;
    file.write_all(format!("{MARKER_PREFIX}{FORMAT_VERSION}\n").as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| io_context(dir, "cannot write to", e))?;
    Ok(())
}

fn check_marker(dir: &Path, marker: &Path) -> Result<()> {
    let text = fs::read_to_string(marker).map_err(|e| io_context(dir, "cannot read", e))?;
    let version = text
        .trim()
        .strip_prefix(MARKER_PREFIX)
        .and_then(|v| v.parse::<u32>().ok());
    match version {
        Some(FORMAT_VERSION) => Ok(()),
        Some(OLDEST_FORMAT..FORMAT_VERSION) => upgrade_marker(dir),
        Some(other) => Err(Error::NotADataDirectory {
            path: dir.to_path_buf(),
            reason: format!("its format {other} is not format {FORMAT_VERSION} of this build"),
        }),
        None => Err(Error::NotADataDirectory {
            path: dir.to_path_buf(),
            reason: format!("its {MARKER_FILE} file is not a TasteDB marker"),
        }),
    }
}

/// Replaces the marker of an older format by this build's, atomically (a new file renamed
/// over it), so that builds of the older format refuse the directory from now on.
fn upgrade_marker(dir: &Path) -> Result<()> {
    let next = dir.join(format!("{MARKER_FILE}.next"));
    let written = fs::File::create(&next).and_then(|mut file| {
        file.write_all(format!("{MARKER_PREFIX}{FORMAT_VERSION}\n").as_bytes())?;
        file.sync_all()
    });
    written
        .and_then(|_| fs::rename(&next, dir.join(MARKER_FILE)))
        .and_then(|_| fs::File::open(dir)?.sync_all())
        .map_err(|e| io_context(dir, "cannot write to", e))
}

fn io_context(dir: &Path, what: &str, e: std::io::Error) -> Error {
    Error::Io(std::io::Error::new(
        e.kind(),
        format!("{what} data directory {}: {e}", dir.display()),
    ))
}

fn open_error(dir: &Path, e: rocksdb::Error) -> Error {
    let text = e.to_string();
    let held = ["unavailable", "lock hold", "held", "No locks available"];
    if text.contains("lock") && held.iter().any(|h| text.contains(h)) {
        Error::DirectoryLocked {
            path: dir.to_path_buf(),
        }
    } else if text.contains("Permission denied") || text.contains("Read-only file system") {
        Error::Io(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("data directory {} is not writable: {text}", dir.display()),
        ))
    } else {
        Error::from(e)
    }
}

/// The start of a write that checks keys at commit, registered until dropped.
pub struct CommitStart<'s> {
    store: &'s Store,
    number: u64,
}

impl CommitStart<'_> {
    /// The commit number the write started after.
    pub fn number(&self) -> u64 {
        self.number
    }
}

impl Drop for CommitStart<'_> {
    fn drop(&mut self) {
        self.store.close_transaction(self.number);
    }
}
