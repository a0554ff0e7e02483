//! The write side of a stored table: DataFusion's `DataSinkExec` hands INSERT rows to this sink
//! (written at once, or by the statement's transaction at its COMMIT).

use crate::blocking;
use crate::error::Error;
use crate::storage::{Store, writer};
use crate::storage::{StoredTable, Transaction};
use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use datafusion::datasource::sink::DataSink;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::TryStreamExt;
use std::fmt;
use std::sync::Arc;

/// Writes the rows of one INSERT statement into a stored table, atomically and durably.
#[derive(Debug)]
pub struct StoredInsertSink {
    store: Arc<Store>,
    table: Arc<StoredTable>,
    /// All-nullable: TasteDB checks NOT NULL itself, to name the offending row.
    input_schema: SchemaRef,
}

impl StoredInsertSink {
    /// A sink for `table`.
    pub fn new(store: Arc<Store>, table: Arc<StoredTable>) -> Self {
        let input_schema = table.def.input_schema();
        StoredInsertSink {
            store,
            table,
            input_schema,
        }
    }
}

impl DisplayAs for StoredInsertSink {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StoredInsertSink: table={}", self.table.def.name)
    }
}

#[async_trait]
impl DataSink for StoredInsertSink {
    fn schema(&self) -> &SchemaRef {
        &self.input_schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> Result<u64> {
        // The whole statement is one atomic write, so its rows are gathered first.
        let batches: Vec<RecordBatch> = data.try_collect().await?;
        let store = self.store.clone();
        let table = self.table.clone();
        let txn = context.session_config().get_extension::<Transaction>();
        // A statement stopped before its write begins writes nothing.
        blocking::run("the insert", move |stopped| {
            stopped.check()?;
            writer::insert(&store, &table, &batches, txn.as_deref())
        })
        .await
        .map_err(Error::into_datafusion)
    }
}
