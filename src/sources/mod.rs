//! Stream sources: `CREATE SOURCE clicks FROM KAFKA (brokers = '…', topic = 'clicks', format =
//! 'json') INTO events` consumes a Kafka topic into a table, exactly once: each batch of rows
//! and the partition offsets it consumed are one atomic write, and a source resumes from its
//! stored offsets when the engine opens again. A message that does not parse or fit the table
//! goes to `tastedb_source_errors` and the stream goes on. `ALTER SOURCE … PAUSE | RESUME`,
//! `DROP SOURCE`; `tastedb_sources` shows each partition's progress.
//!
//! Kafka is spoken by librdkafka through the `rdkafka` crate (its bundled build); nothing here
//! is a Kafka client of our own.

mod dead_letters;
mod decode;
mod offsets;
mod parser;
mod runner;
mod statements;
mod system_table;

pub use dead_letters::ERRORS_TABLE;
pub use parser::{SourceStatement, source_statement};

use crate::engine::{Command, Family, WeakEngine};
use crate::error::{Error, Result};
use crate::storage::{Named, NamedRecords, Store, keys};
use runner::Runner;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// CREATE, ALTER and DROP SOURCE.
pub const STATEMENTS: Family = Family {
    name: "sources",
    parse: |parser| Ok(source_statement(parser)?.map(|s| Arc::new(s) as Arc<dyn Command>)),
};

/// How a message's payload is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per message, keys naming columns.
    Json,
    /// One CSV line per message, values in the order of the target columns.
    Csv,
}

/// A source as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Its name.
    pub name: String,
    /// The table its rows go to.
    pub table: String,
    /// The columns a message gives values for, in order (empty: every column).
    pub columns: Vec<String>,
    /// The topic.
    pub topic: String,
    /// The payload format.
    pub format: Format,
    /// Client configuration for librdkafka (`bootstrap.servers`, TLS, SASL, …).
    pub client: BTreeMap<String, String>,
    /// Most rows in one committed batch.
    pub batch_rows: usize,
    /// Longest a batch waits for more messages, in milliseconds.
    pub batch_ms: u64,
    /// Messages larger than this many bytes go to the dead letters.
    pub max_message_bytes: usize,
    /// Whether consuming is paused (`ALTER SOURCE … PAUSE`).
    pub paused: bool,
    /// The role that created it, whose privileges its inserts need (`None`: the embedder).
    pub owner: Option<String>,
    /// Creation time, microseconds since the Unix epoch.
    pub created_micros: i64,
}

impl Named for Source {
    fn name(&self) -> &str {
        &self.name
    }
}

/// Client options whose values are secrets: stored, never shown.
const SECRET_OPTIONS: &[&str] = &["sasl.password", "ssl.key.password", "ssl.key.pem"];

/// Every source of a data directory, and the consumers of those that run.
pub struct Sources {
    records: NamedRecords<Source>,
    store: Arc<Store>,
    runners: Mutex<HashMap<String, Runner>>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").finish()
    }
}

impl Sources {
    /// The sources stored in `store` (none runs until [`Sources::start_all`]).
    pub fn load(store: Arc<Store>) -> Result<Sources> {
        Ok(Sources {
            records: NamedRecords::load(store.clone(), keys::SOURCE, "source")?,
            store,
            runners: Mutex::new(HashMap::new()),
        })
    }

    /// Starts a consumer for every stored source (when an engine opens).
    pub fn start_all(&self, engine: &WeakEngine) {
        for source in self.records.list() {
            self.start(engine, source);
        }
    }

    /// Starts (or restarts) the consumer of `source`.
    fn start(&self, engine: &WeakEngine, source: Source) {
        let name = source.name.clone();
        let runner = Runner::start(engine.clone(), self.store.clone(), source);
        let old = self.lock().insert(name, runner);
        drop(old);
    }

    /// Stops the consumer of `name`, waiting for its thread to end.
    fn stop(&self, name: &str) {
        let runner = self.lock().remove(name);
        drop(runner);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Runner>> {
        self.runners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The source `name`.
    fn get(&self, name: &str) -> Result<Source> {
        (self.records.get(name))
            .ok_or_else(|| Error::UndefinedObject(format!("source \"{name}\" does not exist")))
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        // every consumer stops before the store goes
        let runners: Vec<Runner> = self.lock().drain().map(|(_, r)| r).collect();
        drop(runners);
    }
}
