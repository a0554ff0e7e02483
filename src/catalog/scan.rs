//! The physical scan of a stored table: a full scan streamed in batches, or point reads by key.

use crate::catalog::pushdown::IndexScan;
use crate::error::Error;
use crate::storage::Store;
use crate::storage::reader::{self, ReadShape};
use crate::storage::{StoredTable, Transaction, index_entries};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
};
use std::fmt;
use std::sync::Arc;

/// Which rows a scan reads.
#[derive(Debug)]
pub enum Reach {
    /// Every row, in key order.
    Full,
    /// The rows under these row keys (point reads).
    Keys(Vec<Vec<u8>>),
    /// The rows a secondary index's entries in these ranges name.
    Index(IndexScan),
}

/// Reads rows of one stored table. Decoding runs on a blocking thread and hands batches to the
/// query through a small channel, so a scan never holds more than a few batches in memory.
#[derive(Debug)]
pub struct StoredScanExec {
    store: Arc<Store>,
    table: Arc<StoredTable>,
    projection: Vec<usize>,
    reach: Arc<Reach>,
    /// Where each row's key goes in the output (`ctid` of `tastedb_row_keys`), if asked.
    row_keys_at: Option<usize>,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl StoredScanExec {
    /// A scan of `projection` of the rows `reach` names; `row_keys_at` adds each row's key at
    /// that output position.
    pub fn new(
        store: Arc<Store>,
        table: Arc<StoredTable>,
        projection: Vec<usize>,
        schema: SchemaRef,
        reach: Reach,
        limit: Option<usize>,
        row_keys_at: Option<usize>,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        StoredScanExec {
            store,
            table,
            projection,
            reach: Arc::new(reach),
            row_keys_at,
            limit,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for StoredScanExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let def = &self.table.def;
        let columns: Vec<&str> = self
            .projection
            .iter()
            .filter_map(|&i| def.columns.get(i).map(|c| c.name.as_str()))
            .collect();
        write!(
            f,
            "StoredScanExec: table={}, projection=[{}]",
            def.name,
            columns.join(", ")
        )?;
        match self.reach.as_ref() {
            Reach::Keys(keys) => write!(f, ", point_lookup={} keys", keys.len()),
            Reach::Index(scan) => write!(
                f,
                ", index_scan={}, ranges={}",
                scan.name,
                scan.ranges.len()
            ),
            Reach::Full => write!(f, ", full_scan"),
        }?;
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for StoredScanExec {
    fn name(&self) -> &str {
        "StoredScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        _partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = self.schema();
        let mut builder = RecordBatchReceiverStreamBuilder::new(schema.clone(), 2);
        let tx = builder.tx();
        let store = self.store.clone();
        let table = self.table.clone();
        let projection = self.projection.clone();
        let reach = self.reach.clone();
        let limit = self.limit;
        let batch_size = context.session_config().batch_size();
        let row_keys_at = self.row_keys_at;
        // inside a transaction block, the scan sees its snapshot and its writes
        let txn = context.session_config().get_extension::<Transaction>();
        builder.spawn_blocking(move || {
            let shape = ReadShape {
                table: &table.def,
                projection: &projection,
                schema,
                batch_size,
                row_keys_at,
                txn: txn.as_deref(),
            };
            let read = match reach.as_ref() {
                Reach::Keys(keys) => reader::lookup(&store, &shape, keys).map(|batch| {
                    // A closed channel means the query stopped reading: nothing to do.
                    let _ = tx.blocking_send(Ok(batch));
                }),
                Reach::Index(scan) => {
                    let limit = limit.unwrap_or(usize::MAX);
                    index_entries::row_keys_in(&store, shape.txn, &scan.ranges, limit).and_then(
                        |keys| {
                            for chunk in keys.chunks(batch_size.max(1)) {
                                let batch = reader::lookup(&store, &shape, chunk)?;
                                if tx.blocking_send(Ok(batch)).is_err() {
                                    break;
                                }
                            }
                            Ok(())
                        },
                    )
                }
                Reach::Full => reader::scan(&store, &shape, limit, |batch| {
                    tx.blocking_send(Ok(batch)).is_ok()
                }),
            };
            read.map_err(Error::into_datafusion)
        });
        Ok(builder.build())
    }
}
