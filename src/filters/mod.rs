//! Named filters: `CREATE FILTER in_stock AS SELECT item_id FROM items WHERE stock > 0`
//! stores a query whose first column lists eligible items, so that `recommend(…, filter =>
//! 'in_stock')` in SQL and `?filter=in_stock` over HTTP use it by name — HTTP requests never
//! carry SQL text. `DROP FILTER [IF EXISTS] name`; `tastedb_filters` lists them.
//!
//! A filter's query runs as the role that uses it, with that role's privileges, exactly as
//! if it had written the query in its statement.

mod statements;

pub use statements::{FilterStatement, filter_statement};

use crate::catalog::system_tables::{SystemTables, timestamp_type};
use crate::engine::{Command, Family};
use crate::error::Result;
use crate::storage::{Named, NamedRecords, Store, keys};
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// CREATE FILTER and DROP FILTER.
pub const STATEMENTS: Family = Family {
    name: "filters",
    parse: |parser| Ok(filter_statement(parser)?.map(|s| Arc::new(s) as Arc<dyn Command>)),
};

/// A named filter as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// Its name.
    pub name: String,
    /// The query, as text.
    pub definition: String,
    /// The role that created it (`None`: the embedding program).
    pub owner: Option<String>,
    /// Creation time, microseconds since the Unix epoch.
    pub created_micros: i64,
}

impl Named for Filter {
    fn name(&self) -> &str {
        &self.name
    }
}

/// Every named filter of a data directory.
#[derive(Debug)]
pub struct Filters {
    records: NamedRecords<Filter>,
}

impl Filters {
    /// The filters stored in `store`.
    pub fn load(store: Arc<Store>) -> Result<Filters> {
        Ok(Filters {
            records: NamedRecords::load(store, keys::FILTER, "filter")?,
        })
    }

    /// The query of the filter `name`, if there is one.
    pub fn definition(&self, name: &str) -> Option<String> {
        self.records.get(name).map(|f| f.definition)
    }

    /// The filter `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<Filter> {
        self.records.get(name)
    }

    fn rows(&self) -> Result<RecordBatch> {
        let list = self.records.list();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(list.iter().map(|f| &f.name))),
            Arc::new(StringArray::from_iter_values(
                list.iter().map(|f| &f.definition),
            )),
            Arc::new(StringArray::from_iter(list.iter().map(|f| f.owner.clone()))),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                list.iter().map(|f| f.created_micros),
            )),
        ];
        let schema = Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("definition", DataType::Utf8, false),
            Field::new("owner", DataType::Utf8, true),
            Field::new("created_at", timestamp_type(), false),
        ]);
        Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
    }
}

impl SystemTables for Filters {
    fn names(&self) -> &'static [&'static str] {
        &["tastedb_filters"]
    }

    fn rows(&self, name: &str) -> Option<Result<RecordBatch>> {
        (name == "tastedb_filters").then(|| Filters::rows(self))
    }
}
