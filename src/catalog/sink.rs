//! The write side of a stored table: DataFusion's `DataSinkExec` hands INSERT rows to this sink
//! as they are produced (written at once at the end, or by the statement's transaction at its
//! COMMIT).

use crate::blocking;
use crate::error::Error;
use crate::sql::config::TasteConfig;
use crate::storage::{Store, bulk_insert};
use crate::storage::{StoredTable, Transaction};
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use datafusion::datasource::sink::DataSink;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;
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
        mut data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let store = self.store.clone();
        let table = self.table.clone();
        let txn = context.session_config().get_extension::<Transaction>();
        let budget = (context.session_config().options().extensions)
            .get::<TasteConfig>()
            .map_or(TasteConfig::default().write_buffer_mb, |c| {
                c.write_buffer_mb
            })
            .saturating_mul(1 << 20);
        let runtime = tokio::runtime::Handle::current();
        // The whole statement is one atomic write; its rows are read on the writer's thread
        // as the query produces them.
        blocking::run("the insert", move |stopped| {
            bulk_insert::insert_from(&store, &table, txn.as_deref(), budget, stopped, |rows| {
                while let Some(batch) = runtime.block_on(data.next()) {
                    rows(batch.map_err(Error::from)?)?;
                }
                Ok(())
            })
        })
        .await
        .map_err(Error::into_datafusion)
    }
}
