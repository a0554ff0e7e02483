//! A stored table as a DataFusion `TableProvider`: scans with projection and primary-key
//! pushdown, and INSERT through [`StoredInsertSink`].

use crate::catalog::pushdown;
use crate::catalog::scan::StoredScanExec;
use crate::catalog::sink::StoredInsertSink;
use crate::error::Error;
use crate::storage::Store;
use crate::storage::StoredTable;
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Constraint, Constraints, Result, not_impl_err};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use std::sync::Arc;

/// DataFusion's view of one stored table.
#[derive(Debug)]
pub struct StoredTableProvider {
    store: Arc<Store>,
    table: Arc<StoredTable>,
    schema: SchemaRef,
    constraints: Constraints,
}

impl StoredTableProvider {
    /// The provider for `table`.
    pub fn new(store: Arc<Store>, table: Arc<StoredTable>) -> Self {
        let schema = table.def.schema();
        let constraints = if table.def.has_primary_key() {
            Constraints::new_unverified(vec![Constraint::PrimaryKey(table.def.primary_key.clone())])
        } else {
            Constraints::default()
        };
        StoredTableProvider {
            store,
            table,
            schema,
            constraints,
        }
    }
}

#[async_trait]
impl TableProvider for StoredTableProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn constraints(&self) -> Option<&Constraints> {
        Some(&self.constraints)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Inexact: the scan uses key filters to choose point reads, and DataFusion still
        // applies every filter to the rows it gets back.
        Ok(filters
            .iter()
            .map(|filter| {
                if pushdown::constrains_key(&self.table.def, filter) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let schema = Arc::new(self.schema.project(&projection)?);
        let keys =
            pushdown::point_keys(&self.table.def, filters).map_err(Error::into_datafusion)?;
        Ok(Arc::new(StoredScanExec::new(
            self.store.clone(),
            self.table.clone(),
            projection,
            schema,
            keys,
            limit,
        )))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return not_impl_err!("{insert_op} is not supported; use INSERT INTO");
        }
        let sink = StoredInsertSink::new(self.store.clone(), self.table.clone());
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}
