//! The runner of one archive, on a thread of its own: every `archive_every` it archives the
//! rows written since the last batch (row ids from the last manifest entry's `to` up to the
//! point below which every row is written), at most [`MOST_ROWS_PER_BATCH`] row ids at a time.
//! Each batch is staged, committed to the manifest, then published. At start it finishes what a
//! crash interrupted: the last committed batch is published again (idempotently) and whatever
//! is staged beyond it is removed. Failures are retried after a growing pause, shown as the
//! archive's last error.

use crate::archive::manifest::{self, Batch};
use crate::archive::write::{self, Encoded};
use crate::archive::{Archive, Stores};
use crate::background::{Background, Stop};
use crate::clock::now_micros;
use crate::engine::WeakEngine;
use crate::error::{Error, Result};
use crate::storage::Store;
use object_store::ObjectStore;
use object_store::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most row ids one batch covers: what bounds the memory of a run.
const MOST_ROWS_PER_BATCH: u64 = 1 << 20;

/// Longest wait between two attempts after failures.
const MOST_BACKOFF: Duration = Duration::from_secs(30);

/// What `tastedb_archives` shows of a running archive.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// `running`, `retrying` or `stopped`.
    pub state: &'static str,
    /// The last failure, if any since the last successful batch.
    pub last_error: Option<String>,
    /// Rows per second of the last batch.
    pub rows_per_second: f64,
    /// The last batch whose files are all in their places: what readers of the archive see.
    pub published: Option<Batch>,
}

/// A running archive; dropping it stops the thread and waits for it.
pub struct Runner {
    status: Arc<Mutex<Status>>,
    _thread: Background,
}

impl Runner {
    /// Starts archiving `archive` of `engine`'s table.
    pub fn start(
        engine: WeakEngine,
        store: Arc<Store>,
        stores: &Stores,
        archive: Archive,
    ) -> Runner {
        // until recovery says otherwise, the last committed batch (published, unless a crash
        // interrupted its moves)
        let published = manifest::last(&store, &archive.table).ok().flatten();
        let status = Arc::new(Mutex::new(Status {
            state: "running",
            published,
            ..Status::default()
        }));
        let target = stores.locate(&archive.url);
        let worker_status = status.clone();
        let thread = Background::spawn(format!("archive {}", archive.table), move |stop| {
            let worker = Worker {
                engine,
                store,
                archive,
                stop,
                status: worker_status,
            };
            worker.run(target)
        });
        Runner {
            status,
            _thread: thread,
        }
    }

    /// Where it stands.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The state of the runner's thread.
struct Worker {
    engine: WeakEngine,
    store: Arc<Store>,
    archive: Archive,
    stop: Stop,
    status: Arc<Mutex<Status>>,
}

impl Worker {
    fn run(self, target: Result<(Arc<dyn ObjectStore>, Path)>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("a runtime for the archive: {e}")));
        let attempt = || match (&runtime, &target) {
            (Ok(runtime), Ok((store, root))) => {
                runtime.block_on(self.archive_until_stopped(store.as_ref(), root))
            }
            (Err(e), _) | (_, Err(e)) => Err(Error::Internal(e.to_string())),
        };
        let failed = |error: Error| {
            tracing::warn!("archive of {}: {error}", self.archive.table);
            self.update(|s| {
                s.state = "retrying";
                s.last_error = Some(error.to_string());
            });
        };
        (self.stop).retry((Duration::from_millis(200), MOST_BACKOFF), attempt, failed);
        self.update(|s| s.state = "stopped");
    }

    fn stopped(&self) -> bool {
        self.stop.stopped()
    }

    fn sleep(&self, pause: Duration) {
        self.stop.sleep(pause)
    }

    fn update(&self, change: impl FnOnce(&mut Status)) {
        change(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Recovers, then archives a batch every interval until stopped (`Ok`) or until something
    /// fails.
    async fn archive_until_stopped(&self, store: &dyn ObjectStore, root: &Path) -> Result<()> {
        let mut last = manifest::last(&self.store, &self.archive.table)?;
        if let Some(last) = &last {
            write::publish(store, root, &last.files).await?;
        }
        write::clear_staging(store, root).await?;
        let every = Duration::from_micros(self.archive.every_micros.max(1) as u64);
        while !self.stopped() {
            let started = Instant::now();
            let (batch, more) = match self.next_batch(last.as_ref())? {
                Some((files, batch, more)) => {
                    write::stage(store, root, files).await?;
                    if self.stopped() {
                        return Ok(());
                    }
                    manifest::commit(&self.store, &self.archive.table, &batch)?;
                    write::publish(store, root, &batch.files).await?;
                    self.update(|s| s.published = Some(batch.clone()));
                    (Some(batch), more)
                }
                None => (None, false),
            };
            let seconds = started.elapsed().as_secs_f64().max(1e-6);
            self.update(|s| {
                s.state = "running";
                s.last_error = None;
                if let Some(batch) = &batch {
                    let rows = batch.files.iter().map(|f| f.rows).sum::<u64>();
                    s.rows_per_second = rows as f64 / seconds;
                }
            });
            if batch.is_some() {
                last = batch;
            }
            if !more {
                self.sleep(every.saturating_sub(started.elapsed()));
            }
        }
        Ok(())
    }

    /// The files and manifest entry of the batch after `last`, and whether more rows wait
    /// beyond it; `None` when no row was written since.
    fn next_batch(&self, last: Option<&Batch>) -> Result<Option<(Vec<Encoded>, Batch, bool)>> {
        let engine = (self.engine.upgrade())
            .ok_or_else(|| Error::Internal("the engine is closing".into()))?;
        let table = (engine.catalog().get(&self.archive.table))
            .filter(|t| t.def.id == self.archive.table_id)
            .ok_or_else(|| Error::UndefinedTable(self.archive.table.clone()))?;
        drop(engine);
        let from = last.map_or(0, |b| b.to);
        let written = table.written_row_ids();
        if written <= from {
            return Ok(None);
        }
        let to = written.min(from.saturating_add(MOST_ROWS_PER_BATCH));
        let number = last.map_or(0, |b| b.batch + 1);
        let files = write::encode(
            &self.store,
            &table.def,
            &self.archive.partition_by,
            from..to,
            number,
        )?;
        let entries: Vec<_> = files.iter().map(|f| f.file.clone()).collect();
        let rows: u64 = entries.iter().map(|f| f.rows).sum();
        let bytes: u64 = entries.iter().map(|f| f.bytes).sum();
        let batch = Batch {
            batch: number,
            from,
            to,
            at_micros: now_micros(),
            total_rows: last.map_or(0, |b| b.total_rows) + rows,
            total_files: last.map_or(0, |b| b.total_files) + entries.len() as u64,
            total_bytes: last.map_or(0, |b| b.total_bytes) + bytes,
            files: entries,
        };
        Ok(Some((files, batch, to < written)))
    }
}
