//! The physical scan of a stored table: a full scan streamed in batches, point reads by key,
//! a secondary index's ranges, or every row in a secondary index's order.

use crate::catalog::pushdown::IndexScan;
use crate::error::Error;
use crate::storage::Store;
use crate::storage::reader::{self, ReadShape};
use crate::storage::{StoredTable, Transaction, index_entries, keys};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions, SortOrderPushdownResult,
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
    /// Every row, in the order of a secondary index (`ORDER BY col [DESC] LIMIT n`).
    Ordered(OrderedScan),
}

/// A read of every entry of a secondary index in order: the rows sorted by its first column,
/// NULLs last (or all reversed: descending, NULLs first), as PostgreSQL sorts by default.
#[derive(Debug)]
pub struct OrderedScan {
    /// The index's name (for EXPLAIN).
    pub name: String,
    /// The `[from, to)` range of its entries.
    pub range: (Vec<u8>, Vec<u8>),
    /// Whether the rows come in descending order.
    pub reverse: bool,
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
        Self::ordered(
            store,
            table,
            projection,
            schema,
            reach,
            limit,
            row_keys_at,
            None,
        )
    }

    /// [`StoredScanExec::new`], its rows sorted by `order` when it is given.
    #[allow(clippy::too_many_arguments)]
    fn ordered(
        store: Arc<Store>,
        table: Arc<StoredTable>,
        projection: Vec<usize>,
        schema: SchemaRef,
        reach: Reach,
        limit: Option<usize>,
        row_keys_at: Option<usize>,
        order: Option<PhysicalSortExpr>,
    ) -> Self {
        let equivalences = match order {
            Some(order) => EquivalenceProperties::new_with_orderings(schema, [[order]]),
            None => EquivalenceProperties::new(schema),
        };
        let properties = PlanProperties::new(
            equivalences,
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
            Reach::Ordered(scan) => write!(
                f,
                ", index_order={}{}",
                scan.name,
                if scan.reverse { " desc" } else { "" }
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

    fn fetch(&self) -> Option<usize> {
        self.limit
    }

    /// An ordered scan stops after `limit` rows (the other reaches apply their limit in
    /// `StoredTableProvider::scan` or not at all, so they keep a limit above them).
    fn with_fetch(&self, limit: Option<usize>) -> Option<Arc<dyn ExecutionPlan>> {
        if !matches!(self.reach.as_ref(), Reach::Ordered(_)) {
            return None;
        }
        Some(Arc::new(StoredScanExec {
            store: self.store.clone(),
            table: self.table.clone(),
            projection: self.projection.clone(),
            reach: self.reach.clone(),
            row_keys_at: self.row_keys_at,
            limit,
            properties: self.properties.clone(),
        }))
    }

    /// `ORDER BY col [DESC]` of a full scan, where `col` is the first column of a secondary
    /// index and NULLs go where PostgreSQL puts them by default: read in index order instead,
    /// and the sort goes (its LIMIT stops the read).
    fn try_pushdown_sort(
        &self,
        order: &[PhysicalSortExpr],
    ) -> Result<SortOrderPushdownResult<Arc<dyn ExecutionPlan>>> {
        let ([sort], Reach::Full, None) = (order, self.reach.as_ref(), self.row_keys_at) else {
            return Ok(SortOrderPushdownResult::Unsupported);
        };
        let column = sort.expr.downcast_ref::<Column>();
        let table_column = column.and_then(|c| self.projection.get(c.index()));
        let reverse = match (sort.options.descending, sort.options.nulls_first) {
            (false, false) => false,
            (true, true) => true,
            _ => return Ok(SortOrderPushdownResult::Unsupported),
        };
        let def = &self.table.def;
        let index = table_column.and_then(|&c| {
            def.indexes
                .iter()
                .find(|index| index.columns.first() == Some(&c))
        });
        let Some(index) = index else {
            return Ok(SortOrderPushdownResult::Unsupported);
        };
        let prefix = keys::index_prefix(def.id, index.id);
        let reach = Reach::Ordered(OrderedScan {
            name: index.name.clone(),
            range: (prefix.clone(), keys::prefix_end(&prefix)),
            reverse,
        });
        let scan = StoredScanExec::ordered(
            self.store.clone(),
            self.table.clone(),
            self.projection.clone(),
            self.schema(),
            reach,
            self.limit,
            None,
            Some(sort.clone()),
        );
        Ok(SortOrderPushdownResult::Exact {
            inner: Arc::new(scan),
        })
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
                Reach::Ordered(scan) => {
                    let mut remaining = limit.unwrap_or(usize::MAX);
                    let range = (scan.range.0.as_slice(), scan.range.1.as_slice());
                    let chunk = batch_size.min(remaining);
                    index_entries::visit_row_keys_in_order(
                        &store,
                        shape.txn,
                        range,
                        scan.reverse,
                        chunk,
                        |keys| {
                            let batch = reader::lookup(&store, &shape, &keys)?;
                            let batch = batch.slice(0, batch.num_rows().min(remaining));
                            remaining -= batch.num_rows();
                            Ok(tx.blocking_send(Ok(batch)).is_ok() && remaining > 0)
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
