//! `archive('events')`: a table's archive read back as a table — every column of the table
//! plus one text column per partition level (`day`), over the Parquet files the archive has
//! published (DataFusion's `ListingTable`, so filters on the partition columns skip whole
//! directories). Reading it needs SELECT on the table.

use crate::archive::Archives;
use crate::catalog::Catalog;
use crate::engine::FunctionObject;
use crate::error::{Error, Result};
use crate::roles::ObjectKind;
use crate::sql::arguments;
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;
use std::sync::Arc;

/// The functions that read an object named by their first argument.
pub const FUNCTION_OBJECTS: &[FunctionObject] = &[FunctionObject {
    function: "archive",
    kind: ObjectKind::Table,
}];

/// Registers `archive(table)` on `ctx`.
pub fn register_functions(ctx: &SessionContext, archives: &Arc<Archives>, catalog: &Arc<Catalog>) {
    ctx.register_udtf(
        "archive",
        Arc::new(ArchiveFunction {
            archives: archives.clone(),
            catalog: catalog.clone(),
        }),
    );
}

#[derive(Debug)]
struct ArchiveFunction {
    archives: Arc<Archives>,
    catalog: Arc<Catalog>,
}

impl ArchiveFunction {
    fn table(&self, args: &[datafusion::logical_expr::Expr]) -> Result<Arc<dyn TableProvider>> {
        let [arg] = args else {
            return Err(Error::InvalidParameter(
                "archive() takes one argument, the table's name".into(),
            ));
        };
        let value = arguments::constant("archive", arg)?;
        let name = arguments::text("archive", "the table", &value)?;
        let archive = self.archives.existing(&name)?;
        let table = (self.catalog.get(&name)).ok_or_else(|| Error::UndefinedTable(name.clone()))?;
        let root = format!("{}/", archive.url);
        let url = ListingTableUrl::parse(&root)?;
        let partitions = (archive.partition_by.iter())
            .map(|level| (level.unit.name().to_string(), DataType::Utf8))
            .collect();
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(partitions);
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(table.def.input_schema());
        Ok(Arc::new(ListingTable::try_new(config)?))
    }
}

impl TableFunctionImpl for ArchiveFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        self.table(args.exprs()).map_err(Error::into_datafusion)
    }
}
