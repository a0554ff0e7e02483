//! A table whose schema is known up front and whose rows are built when a plan scans it.
//!
//! datafusion-pg-catalog's `pg_class` asks every table of every schema for its schema while
//! it builds its rows, these tables included; building theirs from its `pg_class` at that
//! point would wait on the lock it holds. So the rows wait for the scan.

use super::IndexCatalog;
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use std::sync::Arc;

/// One of [`super::TABLES`], built over datafusion-pg-catalog's schema when scanned.
#[derive(Debug)]
pub struct LazyTable {
    /// The table's name.
    pub name: &'static str,
    /// Its columns.
    pub schema: SchemaRef,
    /// What builds its rows.
    pub indexes: Arc<IndexCatalog>,
    /// datafusion-pg-catalog's `pg_catalog`.
    pub inner: Arc<dyn datafusion::catalog::SchemaProvider>,
}

#[async_trait]
impl TableProvider for LazyTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = (self.indexes.rows(self.name, self.inner.as_ref()).await)
            .map_err(crate::error::Error::into_datafusion)?;
        let exec = MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?;
        Ok(exec)
    }
}
