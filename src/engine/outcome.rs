//! [`Outcome`]: what a statement returns, typed, for embedded callers and the wire session
//! alike: rows with their schema, or a command tag with the count it reports.

use crate::error::Result;
use datafusion::arrow::array::{RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::EmptyRecordBatchStream;
use datafusion::physical_plan::memory::MemoryStream;
use std::sync::Arc;

/// The result of one statement.
pub enum Outcome {
    /// Rows (SELECT, SHOW, EXPLAIN, TRAIN MODEL, …), streamed; their schema is the stream's.
    Rows(SendableRecordBatchStream),
    /// Rows answered whole (by a fast path).
    Batch {
        /// The rows.
        rows: RecordBatch,
        /// Whether their arrays are those of an earlier answer (a cached one): what they
        /// were encoded to for the wire then may be sent again.
        reused: bool,
    },
    /// A statement that returns no rows, by its command tag (`CREATE TABLE`, `INSERT 0 3`).
    Done(CommandTag),
    /// A write that returns rows (`UPDATE … RETURNING`): its command, and the rows, whose
    /// number is its count.
    Returned {
        /// The command, e.g. `UPDATE`.
        command: String,
        /// The rows RETURNING gives, one per row written.
        rows: RecordBatch,
    },
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Rows(stream) => f.debug_tuple("Rows").field(&stream.schema()).finish(),
            Outcome::Batch { rows, reused } => (f.debug_struct("Batch"))
                .field("rows", &rows.num_rows())
                .field("reused", reused)
                .finish(),
            Outcome::Done(tag) => f.debug_tuple("Done").field(tag).finish(),
            Outcome::Returned { command, rows } => f
                .debug_struct("Returned")
                .field("command", command)
                .field("rows", &rows.num_rows())
                .finish(),
        }
    }
}

/// A command tag as Postgres reports it: the command, and for the commands that count rows,
/// how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTag {
    /// The command, e.g. `CREATE TABLE` or `INSERT`.
    pub command: String,
    /// The rows inserted, copied or selected (`INSERT 0 n`, `COPY n`, `SELECT n` of CREATE
    /// TABLE AS); `None` for commands that report no count.
    pub rows: Option<u64>,
}

impl CommandTag {
    /// The tag of `command`, without a count.
    pub fn new(command: impl Into<String>) -> CommandTag {
        CommandTag {
            command: command.into(),
            rows: None,
        }
    }

    /// The rows the statement wrote: the count of INSERT, COPY, UPDATE, DELETE and MERGE.
    pub fn rows_written(&self) -> Option<u64> {
        let writes = matches!(
            self.command.as_str(),
            "INSERT" | "COPY" | "UPDATE" | "DELETE" | "MERGE"
        );
        self.rows.filter(|_| writes)
    }

    /// The tag of `command` reporting `rows` rows.
    pub fn counted(command: impl Into<String>, rows: u64) -> CommandTag {
        CommandTag {
            command: command.into(),
            rows: Some(rows),
        }
    }
}

impl std::fmt::Display for CommandTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.command.as_str(), self.rows) {
            ("INSERT", Some(rows)) => write!(f, "INSERT 0 {rows}"),
            (command, Some(rows)) => write!(f, "{command} {rows}"),
            (command, None) => f.write_str(command),
        }
    }
}

impl Outcome {
    /// The outcome of a statement answered with one batch of rows.
    pub fn batch(batch: RecordBatch) -> Result<Outcome> {
        Ok(Outcome::Batch {
            rows: batch,
            reused: false,
        })
    }

    /// The outcome of `command`, which returns no rows.
    pub fn done(command: impl Into<String>) -> Outcome {
        Outcome::Done(CommandTag::new(command))
    }

    /// The rows as a stream, as [`crate::Engine::sql_stream`] returns them: a command's count
    /// becomes one row with one `count` column (the shape DataFusion gives DML), a command
    /// without a count no rows and no columns.
    pub fn into_stream(self) -> Result<SendableRecordBatchStream> {
        match self {
            Outcome::Rows(stream) => Ok(stream),
            Outcome::Batch { rows, .. } | Outcome::Returned { rows, .. } => {
                let schema = rows.schema();
                Ok(Box::pin(MemoryStream::try_new(vec![rows], schema, None)?))
            }
            Outcome::Done(CommandTag {
                rows: Some(rows), ..
            }) => {
                let schema = Arc::new(Schema::new(vec![Field::new(
                    "count",
                    DataType::UInt64,
                    false,
                )]));
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(UInt64Array::from(vec![rows]))],
                )?;
                Ok(Box::pin(MemoryStream::try_new(vec![batch], schema, None)?))
            }
            Outcome::Done(CommandTag { rows: None, .. }) => Ok(Box::pin(
                EmptyRecordBatchStream::new(Arc::new(Schema::empty())),
            )),
        }
    }
}
