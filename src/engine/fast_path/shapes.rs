//! The prepared statements of generalised shapes ([`super::generalise`]), kept per shape text,
//! and shown as the system table `tastedb_statement_shapes` (shapes, never values: as
//! PostgreSQL's `pg_stat_statements` shows normalised queries).

use crate::catalog::system_tables::SystemTables;
use crate::engine::Prepared;
use crate::error::Result;
use crate::roles::Actor;
use datafusion::arrow::array::{RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Shapes kept at most. A workload has few shapes (an application's statements); past this
/// many, they are all forgotten and prepared again as they come (a least-recently-used order
/// would cost a lock-held list update on every statement, for workloads that seldom exist).
const MAX_SHAPES: usize = 2_048;

/// The system table's name.
const TABLE: &str = "tastedb_statement_shapes";

/// Each shape's preparation: `None` when it has no fast path (the statement is then run as
/// written, and not prepared again until the catalog changes).
#[derive(Debug, Default)]
pub struct Shapes {
    entries: Mutex<HashMap<String, Arc<Entry>>>,
}

/// One shape's preparation, for one role and catalog generation.
#[derive(Debug)]
pub struct Entry {
    actor: Actor,
    generation: u64,
    prepared: Option<Arc<Prepared>>,
    executions: AtomicU64,
}

impl Entry {
    /// The preparation, when the shape has a fast path.
    pub fn prepared(&self) -> Option<&Arc<Prepared>> {
        self.prepared.as_ref()
    }

    /// Counts one statement of the shape run by its fast path.
    pub fn executed(&self) {
        self.executions.fetch_add(1, Ordering::Relaxed);
    }
}

impl Shapes {
    /// The preparation of `shape` for `actor` in catalog `generation`, when known.
    pub fn get(&self, shape: &str, actor: &Actor, generation: u64) -> Option<Arc<Entry>> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(shape)?;
        (entry.actor == *actor && entry.generation == generation).then(|| entry.clone())
    }

    /// Remembers the preparation of `shape`.
    pub fn put(
        &self,
        shape: String,
        actor: &Actor,
        generation: u64,
        prepared: Option<Arc<Prepared>>,
    ) -> Arc<Entry> {
        let entry = Arc::new(Entry {
            actor: actor.clone(),
            generation,
            prepared,
            executions: AtomicU64::new(0),
        });
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_SHAPES && !entries.contains_key(&shape) {
                entries.clear();
            }
            entries.insert(shape, entry.clone());
        }
        entry
    }

    fn rows(&self) -> Result<RecordBatch> {
        let mut shapes: Vec<(String, Option<&'static str>, u64)> = match self.entries.lock() {
            Ok(entries) => (entries.iter())
                .map(|(shape, entry)| {
                    let fast = entry.prepared.as_ref().and_then(|p| p.fast_path());
                    (
                        shape.clone(),
                        fast,
                        entry.executions.load(Ordering::Relaxed),
                    )
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        shapes.sort();
        let schema = Schema::new(vec![
            Field::new("shape", DataType::Utf8, false),
            Field::new("fast_path", DataType::Utf8, true),
            Field::new("executions", DataType::UInt64, false),
        ]);
        Ok(RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from_iter_values(shapes.iter().map(|s| &s.0))),
                Arc::new(StringArray::from_iter(shapes.iter().map(|s| s.1))),
                Arc::new(UInt64Array::from_iter_values(shapes.iter().map(|s| s.2))),
            ],
        )?)
    }
}

impl SystemTables for Shapes {
    fn names(&self) -> &'static [&'static str] {
        &[TABLE]
    }

    fn rows(&self, name: &str) -> Option<Result<RecordBatch>> {
        (name == TABLE).then(|| Shapes::rows(self))
    }
}
