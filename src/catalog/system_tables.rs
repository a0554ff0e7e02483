//! System tables: registries shown as tables, built whenever a query reads them. Each product
//! feature implements [`SystemTables`] for its own registry (`models`, `features`, `vectors`);
//! the schema asks the list the engine gives it, so the catalog knows none of them.

use crate::error::Result;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use std::sync::Arc;

/// Something that shows its state as system tables.
pub trait SystemTables: Send + Sync + std::fmt::Debug {
    /// The names of its tables.
    fn names(&self) -> &'static [&'static str];

    /// The rows of the table `name` as they are now, or `None` when `name` is not one of its
    /// tables.
    fn rows(&self, name: &str) -> Option<Result<RecordBatch>>;
}

/// The table `name` of the first of `providers` that has it, as a table of its current rows.
pub fn table(
    providers: &[Arc<dyn SystemTables>],
    name: &str,
) -> Option<Result<Arc<dyn TableProvider>>> {
    let rows = providers.iter().find_map(|p| p.rows(name))?;
    Some(rows.and_then(|batch| {
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        Ok(Arc::new(table) as Arc<dyn TableProvider>)
    }))
}

/// Whether one of `providers` has a table called `name`.
pub fn exists(providers: &[Arc<dyn SystemTables>], name: &str) -> bool {
    providers.iter().any(|p| p.names().contains(&name))
}

/// The type of timestamp columns in system tables.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}
