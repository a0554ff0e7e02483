//! The impression log: every list served through a running experiment (or with `log =>
//! true`) becomes rows of the stored table `tastedb_impressions`, one per shown item: the
//! request, experiment, arm, model and the version that answered, user, item, rank, score,
//! the probability the item had of being shown ([`Shown`]), and the time.
//!
//! Answers do not wait for the log: their rows are gathered in memory and written together,
//! as one atomic insert, at most [`FLUSH_AFTER`] after the first of them (or at once past
//! [`FLUSH_ROWS`]). A crash loses at most that last interval of impressions, never a part of
//! one answer's rows. Reading the log through `experiment_results` or `EVALUATE … ON
//! IMPRESSIONS` writes what is pending first. The table is created on first use with a
//! retention of 30 days on `shown_at` (`ALTER TABLE tastedb_impressions SET (ttl = …)`
//! changes it). It is append-only (`TableLayout::AppendOnlyBlocks`): each flush is one storage
//! entry, not one per row. Superusers read it, and may grant it.

use crate::blocking::Stopped;
use crate::catalog::Catalog;
use crate::clock::now_micros;
use crate::error::{Error, Result};
use crate::schema::{ColumnDef, ColumnType, Retention, TableDef, TableLayout};
use crate::storage::bulk_insert;
use datafusion::arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The table's name.
pub const TABLE: &str = "tastedb_impressions";

/// How long the first pending impression waits for others before they are written.
pub const FLUSH_AFTER: Duration = Duration::from_millis(100);

/// Pending impressions that are written at once, without waiting.
pub const FLUSH_ROWS: usize = 50_000;

/// Bytes an insert of impressions holds in memory before it stages files.
const WRITE_BUFFER: usize = 64 << 20;

/// Retention of a new table.
const TTL_DAYS: i64 = 30;

/// One answer to log.
#[derive(Debug)]
pub struct Shown<'a> {
    /// The experiment it was served through.
    pub experiment: Option<&'a str>,
    /// The arm (the alias served: `active` for the active version).
    pub arm: &'a str,
    /// The model.
    pub model: &'a str,
    /// The version that answered.
    pub version: u32,
    /// The user.
    pub user: &'a str,
    /// (item, score, propensity) best first: the propensity is the probability that the
    /// logging policy shows the item to this user (the sum of the shares of the arms whose
    /// list holds it; 1 outside an experiment).
    pub items: Vec<(&'a str, f64, f64)>,
}

/// Impressions gathered since the last write.
#[derive(Default)]
struct Pending {
    request_id: StringBuilder,
    experiment: StringBuilder,
    arm: StringBuilder,
    model: StringBuilder,
    version: Int64Builder,
    user_id: StringBuilder,
    item_id: StringBuilder,
    rank: Int64Builder,
    score: Float64Builder,
    propensity: Float64Builder,
    shown_at: TimestampMicrosecondBuilder,
    rows: usize,
}

impl Pending {
    fn finish(&mut self, def: &TableDef) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.request_id.finish()),
            Arc::new(self.experiment.finish()),
            Arc::new(self.arm.finish()),
            Arc::new(self.model.finish()),
            Arc::new(self.version.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.item_id.finish()),
            Arc::new(self.rank.finish()),
            Arc::new(self.score.finish()),
            Arc::new(self.propensity.finish()),
            Arc::new(self.shown_at.finish()),
        ];
        self.rows = 0;
        Ok(RecordBatch::try_new(def.input_schema(), columns)?)
    }
}

/// The impression log of one engine.
pub struct ImpressionLog {
    catalog: Arc<Catalog>,
    pending: Mutex<Pending>,
    /// A write is scheduled for what is pending.
    scheduled: AtomicBool,
    /// One write at a time, so that [`ImpressionLog::flush`] returns after earlier ones.
    writing: tokio::sync::Mutex<()>,
    /// The next request id.
    next_request: AtomicU64,
}

impl std::fmt::Debug for ImpressionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImpressionLog").finish()
    }
}

impl ImpressionLog {
    /// The log of `catalog`'s `tastedb_impressions`.
    pub fn new(catalog: Arc<Catalog>) -> ImpressionLog {
        ImpressionLog {
            catalog,
            pending: Mutex::new(Pending::default()),
            scheduled: AtomicBool::new(false),
            writing: tokio::sync::Mutex::new(()),
            // Request ids count up from the start's time in microseconds: unique across
            // restarts while answers are fewer than one per microsecond on average, and
            // short (16 hex digits), since every row of an answer holds its id.
            next_request: AtomicU64::new(u64::try_from(now_micros()).unwrap_or_default()),
        }
    }

    /// Adds the rows of one answer, to be written soon (see the module's documentation).
    pub fn log(self: &Arc<Self>, shown: Shown<'_>) {
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("{request:016x}");
        let now = now_micros();
        let rows = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (rank, (item, score, propensity)) in shown.items.iter().enumerate() {
                p.request_id.append_value(&request_id);
                p.experiment.append_option(shown.experiment);
                p.arm.append_value(shown.arm);
                p.model.append_value(shown.model);
                p.version.append_value(i64::from(shown.version));
                p.user_id.append_value(shown.user);
                p.item_id.append_value(item);
                p.rank.append_value(rank as i64 + 1);
                p.score.append_value(*score);
                p.propensity.append_value(*propensity);
                p.shown_at.append_value(now);
            }
            p.rows += shown.items.len();
            p.rows
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // written by the next flush
        };
        if rows >= FLUSH_ROWS {
            let log = self.clone();
            runtime.spawn(async move { log.write_logged().await });
        } else if !self.scheduled.swap(true, Ordering::AcqRel) {
            let log = self.clone();
            runtime.spawn(async move {
                tokio::time::sleep(FLUSH_AFTER).await;
                log.scheduled.store(false, Ordering::Release);
                log.write_logged().await;
            });
        }
    }

    /// Writes every pending impression now; returns the number of rows written.
    pub async fn flush(&self) -> Result<u64> {
        let _turn = self.writing.lock().await;
        let def = self.table()?;
        let batch = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.rows == 0 {
                return Ok(0);
            }
            pending.finish(&def)?
        };
        let catalog = self.catalog.clone();
        crate::blocking::run("writing impressions", move |_| {
            let stored = (catalog.get(TABLE)).ok_or_else(|| Error::UndefinedTable(TABLE.into()))?;
            let never = Stopped::default();
            bulk_insert::insert_from(
                catalog.store(),
                &stored,
                None,
                WRITE_BUFFER,
                &never,
                |rows| rows(batch),
            )
        })
        .await
    }

    async fn write_logged(&self) {
        if let Err(e) = self.flush().await {
            tracing::warn!("impressions could not be written to {TABLE}: {e}");
        }
    }

    /// The table's definition, creating the table if it does not exist.
    pub fn table(&self) -> Result<TableDef> {
        if let Some(table) = self.catalog.get(TABLE) {
            return Ok(table.def.clone());
        }
        self.catalog.create(definition(), true)?;
        let table = (self.catalog.get(TABLE)).ok_or_else(|| Error::UndefinedTable(TABLE.into()))?;
        Ok(table.def.clone())
    }
}

/// The definition of a new `tastedb_impressions`.
fn definition() -> TableDef {
    let column = |name: &str, column_type: ColumnType, nullable: bool| ColumnDef {
        name: name.to_string(),
        column_type,
        nullable,
        default: None,
    };
    let columns = vec![
        column("request_id", ColumnType::Text, false),
        column("experiment", ColumnType::Text, true),
        column("arm", ColumnType::Text, false),
        column("model", ColumnType::Text, false),
        column("version", ColumnType::BigInt, false),
        column("user_id", ColumnType::Text, false),
        column("item_id", ColumnType::Text, false),
        column("rank", ColumnType::BigInt, false),
        column("score", ColumnType::Double, false),
        column("propensity", ColumnType::Double, false),
        column("shown_at", ColumnType::Timestamp, false),
    ];
    let shown_at = columns.len() - 1;
    TableDef {
        id: 0,
        name: TABLE.to_string(),
        columns,
        primary_key: Vec::new(),
        indexes: Vec::new(),
        retention: Some(Retention {
            column: shown_at,
            ttl_micros: TTL_DAYS * 86_400_000_000,
            ttl: format!("{TTL_DAYS} days"),
        }),
        layout: TableLayout::AppendOnlyBlocks,
    }
}
