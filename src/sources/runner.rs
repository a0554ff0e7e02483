//! The consumer of one source, on a thread of its own (librdkafka's consumer blocks): it reads
//! the topic from the stored offsets, gathers messages into batches of bounded size and age,
//! and commits each batch — its rows, its dead letters and the offsets after it — as one
//! transaction, so a crash at any moment leaves every message in the table exactly once. Any
//! failure (broker gone, commit refused, privilege revoked) drops the consumer and starts
//! again from the stored offsets after a growing pause, recorded as the source's last error.

use crate::background::{Background, Stop};
use crate::blocking::Stopped;
use crate::engine::WeakEngine;
use crate::error::{Error, Result};
use crate::roles::{Actor, Object, Privilege};
use crate::sources::dead_letters::{self, DeadLetter};
use crate::sources::{Source, decode, offsets};
use crate::storage::{Store, bulk_insert};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Bytes a batch's insert holds in memory before it stages files.
const WRITE_BUFFER: usize = 64 << 20;

/// Longest wait between two attempts after failures.
const MOST_BACKOFF: Duration = Duration::from_secs(10);

/// How long metadata and watermark requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What `tastedb_sources` shows of a running source.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// `running`, `paused`, `retrying` or `stopped`.
    pub state: &'static str,
    /// Per partition: the next offset committed, and the high watermark last seen.
    pub partitions: BTreeMap<i32, (i64, Option<i64>)>,
    /// Rows committed since the consumer started.
    pub rows: u64,
    /// Messages set aside since the consumer started.
    pub dead_letters: u64,
    /// Rows per second over the last batches.
    pub rows_per_second: f64,
    /// The last failure, if any since the last successful batch.
    pub last_error: Option<String>,
}

/// A running consumer; dropping it stops the thread and waits for it.
pub struct Runner {
    paused: Arc<AtomicBool>,
    status: Arc<Mutex<Status>>,
    _thread: Background,
}

impl Runner {
    /// Starts consuming `source` into `engine`'s tables.
    pub fn start(engine: WeakEngine, store: Arc<Store>, source: Source) -> Runner {
        let paused = Arc::new(AtomicBool::new(source.paused));
        let status = Arc::new(Mutex::new(Status {
            state: "running",
            ..Status::default()
        }));
        let (worker_paused, worker_status) = (paused.clone(), status.clone());
        let thread = Background::spawn(format!("source {}", source.name), move |stop| {
            let consumer = Worker {
                engine,
                store,
                source,
                stop,
                paused: worker_paused,
                status: worker_status,
                runtime: OnceLock::new(),
            };
            consumer.run()
        });
        Runner {
            paused,
            status,
            _thread: thread,
        }
    }

    /// Pauses or resumes consuming.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
    }

    /// Where it stands.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The state of the consumer thread.
struct Worker {
    engine: WeakEngine,
    store: Arc<Store>,
    source: Source,
    stop: Stop,
    paused: Arc<AtomicBool>,
    status: Arc<Mutex<Status>>,
    /// Where the SQL of column defaults runs, made when first needed.
    runtime: OnceLock<tokio::runtime::Runtime>,
}

/// Messages read and not yet committed, with the offsets after them.
#[derive(Default)]
struct Batch {
    messages: Vec<(i32, i64, Vec<u8>)>,
    next: BTreeMap<i32, i64>,
}

impl Worker {
    fn run(self) {
        let failed = |error: Error| {
            tracing::warn!("source {}: {error}", self.source.name);
            self.update(|s| {
                s.state = "retrying";
                s.last_error = Some(error.to_string());
            });
        };
        let pauses = (Duration::from_millis(100), MOST_BACKOFF);
        self.stop.retry(pauses, || self.consume(), failed);
        self.update(|s| s.state = "stopped");
    }

    fn stopped(&self) -> bool {
        self.stop.stopped()
    }

    fn sleep(&self, pause: Duration) {
        self.stop.sleep(pause)
    }

    /// A runtime of this thread's own for the engine's async SQL (column defaults).
    fn runtime(&self) -> Result<&tokio::runtime::Runtime> {
        if let Some(runtime) = self.runtime.get() {
            return Ok(runtime);
        }
        let runtime = (tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build())
        .map_err(|e| Error::Internal(format!("a runtime for column defaults: {e}")))?;
        Ok(self.runtime.get_or_init(|| runtime))
    }

    fn update(&self, change: impl FnOnce(&mut Status)) {
        change(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Consumes until stopped (`Ok`) or until something fails.
    fn consume(&self) -> Result<()> {
        let consumer = self.connect()?;
        let mut next = offsets::load(&self.store, &self.source.name)?;
        let mut assignment = TopicPartitionList::new();
        for partition in partitions(&consumer, &self.source.topic)? {
            let offset = match next.get(&partition) {
                Some(&offset) => offset,
                // a partition added after CREATE SOURCE: all of it is new
                None => watermarks(&consumer, &self.source.topic, partition)?.0,
            };
            next.insert(partition, offset);
            (assignment.add_partition_offset(
                &self.source.topic,
                partition,
                Offset::Offset(offset),
            ))
            .map_err(kafka)?;
        }
        consumer.assign(&assignment).map_err(kafka)?;
        self.update(|s| {
            s.partitions = next.iter().map(|(&p, &o)| (p, (o, None))).collect();
        });
        let mut watermarks_at = Instant::now();
        while !self.stopped() {
            if self.paused.load(Ordering::Acquire) {
                self.update(|s| s.state = "paused");
                self.sleep(Duration::from_millis(50));
                continue;
            }
            self.update(|s| s.state = "running");
            let started = Instant::now();
            let batch = self.poll(&consumer, &next)?;
            if !batch.messages.is_empty() {
                let (rows, dead) = self.commit(&batch)?;
                self.acknowledge(&consumer, &batch.next);
                next.extend(batch.next.iter());
                let seconds = started.elapsed().as_secs_f64().max(1e-6);
                self.update(|s| {
                    s.rows += rows;
                    s.dead_letters += dead;
                    s.rows_per_second = rows as f64 / seconds;
                    s.last_error = None;
                    for (&p, &o) in &batch.next {
                        s.partitions.entry(p).or_default().0 = o;
                    }
                });
            }
            if watermarks_at.elapsed() > Duration::from_secs(1) {
                watermarks_at = Instant::now();
                self.note_watermarks(&consumer, &next);
            }
        }
        Ok(())
    }

    fn connect(&self) -> Result<BaseConsumer> {
        let mut config = ClientConfig::new();
        for (key, value) in &self.source.client {
            config.set(key, value);
        }
        config
            .set("group.id", format!("tastedb-source-{}", self.source.name))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "error");
        config.create().map_err(kafka)
    }

    /// Messages until the batch is full or old enough (or the source is stopped), each once:
    /// those before a partition's next offset are skipped.
    fn poll(&self, consumer: &BaseConsumer, next: &BTreeMap<i32, i64>) -> Result<Batch> {
        let mut batch = Batch::default();
        let deadline = Instant::now() + Duration::from_millis(self.source.batch_ms);
        while batch.messages.len() < self.source.batch_rows && !self.stopped() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match consumer.poll(left.min(Duration::from_millis(100))) {
                None => {}
                Some(Ok(message)) => {
                    let (partition, offset) = (message.partition(), message.offset());
                    let expected = batch.next.get(&partition).or(next.get(&partition));
                    if expected.is_some_and(|&e| offset < e) {
                        continue;
                    }
                    let payload = message.payload().unwrap_or_default().to_vec();
                    batch.messages.push((partition, offset, payload));
                    batch.next.insert(partition, offset + 1);
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(error)) => return Err(kafka(error)),
            }
        }
        Ok(batch)
    }

    /// Writes the batch's rows, its dead letters and the offsets after it as one transaction;
    /// the rows and the dead letters written.
    fn commit(&self, batch: &Batch) -> Result<(u64, u64)> {
        let engine = (self.engine.upgrade())
            .ok_or_else(|| Error::Internal("the engine of this source is closed".into()))?;
        let source = &self.source;
        let table = (engine.catalog().get(&source.table))
            .ok_or_else(|| Error::UndefinedTable(source.table.clone()))?;
        let actor = match &source.owner {
            Some(owner) => Actor::Role(owner.clone()),
            None => Actor::Embedder,
        };
        (engine.users()).check(
            &actor,
            &Object::table(source.table.clone()),
            Privilege::Insert,
        )?;
        let payloads: Vec<&[u8]> = (batch.messages.iter())
            .map(|(_, _, payload)| payload.as_slice())
            .collect();
        let decoded = decode::messages(&table.def, source, &payloads, &mut |listed, rows| {
            self.runtime()?
                .block_on(engine.copy_defaults(&table.def, listed, rows))
        })?;
        let rows = decoded.rows;
        let dead: Vec<DeadLetter> = (decoded.failed.into_iter())
            .map(|(index, error)| {
                let (partition, offset, payload) = &batch.messages[index];
                DeadLetter {
                    partition: *partition,
                    offset: *offset,
                    payload: payload.clone(),
                    error: format!("{} ({})", error, error.sqlstate()),
                }
            })
            .collect();
        let txn = engine.begin();
        let never = Stopped::default();
        let store = &self.store;
        let written =
            bulk_insert::insert_from(store, &table, Some(&txn), WRITE_BUFFER, &never, |emit| {
                rows.into_iter().try_for_each(emit)
            })?;
        if !dead.is_empty() {
            let errors = dead_letters::table(engine.catalog())?;
            let letters = dead_letters::rows(&source.name, &dead, &errors.def)?;
            bulk_insert::insert_from(store, &errors, Some(&txn), WRITE_BUFFER, &never, |emit| {
                emit(letters)
            })?;
        }
        for (&partition, &next) in &batch.next {
            let (key, value) = offsets::entry(&source.name, partition, next);
            txn.put(key, value, false);
        }
        txn.commit()?;
        engine.metrics().rows_written(written);
        Ok((written, dead.len() as u64))
    }

    /// Tells the cluster how far the source has committed, as its consumer group's offsets
    /// (`tastedb-source-<name>`), for Kafka's own tools that watch a group's lag. TasteDB
    /// never reads them back: the offsets stored with the rows are the truth.
    fn acknowledge(&self, consumer: &BaseConsumer, next: &BTreeMap<i32, i64>) {
        let mut list = TopicPartitionList::new();
        for (&partition, &offset) in next {
            let added =
                list.add_partition_offset(&self.source.topic, partition, Offset::Offset(offset));
            if added.is_err() {
                return;
            }
        }
        if let Err(error) = consumer.commit(&list, CommitMode::Async) {
            tracing::debug!("source {}: the group's offsets: {error}", self.source.name);
        }
    }

    /// Records each partition's high watermark, for the lag `tastedb_sources` shows.
    fn note_watermarks(&self, consumer: &BaseConsumer, next: &BTreeMap<i32, i64>) {
        for &partition in next.keys() {
            let watermarks = consumer.fetch_watermarks(
                &self.source.topic,
                partition,
                Duration::from_millis(500),
            );
            if let Ok((_, high)) = watermarks {
                self.update(|s| s.partitions.entry(partition).or_default().1 = Some(high));
            }
        }
    }
}

/// The partitions of `topic`; 42704 when the cluster does not know it.
pub fn partitions(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(kafka)?;
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    match found {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(t.partitions().iter().map(|p| p.id()).collect())
        }
        _ => Err(Error::UndefinedObject(format!(
            "Kafka topic \"{topic}\" does not exist"
        ))),
    }
}

/// The first offset still in `partition` of `topic`, and the offset after its last message.
pub fn watermarks(consumer: &BaseConsumer, topic: &str, partition: i32) -> Result<(i64, i64)> {
    (consumer.fetch_watermarks(topic, partition, REQUEST_TIMEOUT)).map_err(kafka)
}

/// A client error as a connection error (08006), naming Kafka.
pub fn kafka(error: KafkaError) -> Error {
    Error::ConnectionFailure(format!("Kafka: {error}"))
}
