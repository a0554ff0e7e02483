//! A stored table as a DataFusion `TableProvider`: scans with projection and primary-key
//! pushdown, and INSERT through [`StoredInsertSink`].

use crate::catalog::pushdown;
use crate::catalog::scan::{Reach, StoredScanExec};
use crate::catalog::sink::StoredInsertSink;
use crate::error::Error;
use crate::storage::Store;
use crate::storage::StoredTable;
use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Constraint, Constraints, Result, not_impl_err};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use std::sync::Arc;

/// The column of each row's key in [`StoredTableProvider::with_row_keys`].
pub const ROW_KEY_COLUMN: &str = "ctid";

/// DataFusion's view of one stored table.
#[derive(Debug)]
pub struct StoredTableProvider {
    store: Arc<Store>,
    table: Arc<StoredTable>,
    schema: SchemaRef,
    constraints: Constraints,
    /// Whether the last column is each row's key (UPDATE and DELETE find rows by it).
    row_keys: bool,
}

impl StoredTableProvider {
    /// The provider for `table`.
    pub fn new(store: Arc<Store>, table: Arc<StoredTable>) -> Self {
        Self::build(store, table, false)
    }

    /// The provider for `table` with one more column, [`ROW_KEY_COLUMN`]: the key each row is
    /// stored under, as UPDATE and DELETE find their rows.
    pub fn with_row_keys(store: Arc<Store>, table: Arc<StoredTable>) -> Self {
        Self::build(store, table, true)
    }

    /// The stored table.
    pub fn table(&self) -> &Arc<StoredTable> {
        &self.table
    }

    fn build(store: Arc<Store>, table: Arc<StoredTable>, row_keys: bool) -> Self {
        let mut schema = table.def.schema();
        if row_keys {
            let mut fields = schema.fields().to_vec();
            fields.push(Arc::new(Field::new(
                ROW_KEY_COLUMN,
                DataType::Binary,
                false,
            )));
            schema = Arc::new(Schema::new(fields));
        }
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
            row_keys,
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
                let def = &self.table.def;
                if pushdown::constrains_key(def, filter) || pushdown::constrains_index(def, filter)
                {
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
        let key_column = self.table.def.columns.len();
        let row_keys_at = projection.iter().position(|&i| i == key_column);
        let columns: Vec<usize> = projection
            .into_iter()
            .filter(|&i| i != key_column)
            .collect();
        let def = &self.table.def;
        let reach = match pushdown::point_keys(def, filters).map_err(Error::into_datafusion)? {
            Some(keys) => Reach::Keys(keys),
            None => match pushdown::index_scan(def, filters).map_err(Error::into_datafusion)? {
                Some(scan) => Reach::Index(scan),
                None => Reach::Full,
            },
        };
        Ok(Arc::new(StoredScanExec::new(
            self.store.clone(),
            self.table.clone(),
            columns,
            schema,
            reach,
            limit,
            row_keys_at.filter(|_| self.row_keys),
        )))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.row_keys {
            return not_impl_err!("rows are inserted into the table itself");
        }
        if insert_op != InsertOp::Append {
            return not_impl_err!("{insert_op} is not supported; use INSERT INTO");
        }
        let sink = StoredInsertSink::new(self.store.clone(), self.table.clone());
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}
