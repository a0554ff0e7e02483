//! Indexes and constraints as PostgreSQL's catalog shows them: `pg_index`, `pg_constraint`,
//! `pg_indexes`, index rows in `pg_class` (and `hnsw` in `pg_am`), `pg_get_indexdef`,
//! `pg_get_constraintdef` and the relation size functions; `relowner` from the roles. psql's `\d`, `\di`, `\d+`, `\dt+`,
//! SQLAlchemy's reflection and pgJDBC's `DatabaseMetaData` read them.
//!
//! datafusion-pg-catalog numbers tables itself, in the order its `pg_class` first meets them,
//! and has no index rows; so these tables are built from its `pg_class` each time a query
//! reads them: its rows, plus one per index, whose OID is a hash of the table and index
//! names (the same in every query and after a restart, above the range it hands out).

mod functions;
mod lazy_table;
mod tables;

use crate::catalog::Catalog;
use crate::error::Result;
use crate::sql::names;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::Int32Type;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Field metadata naming the PostgreSQL type a column is sent as, where it differs from what
/// its Arrow type maps to (`int2vector`, `oidvector`).
pub const PG_TYPE_METADATA: &str = "pg_type";

/// An index as the catalog shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexInfo {
    /// Index name.
    pub name: String,
    /// The indexed table.
    pub table: String,
    /// The indexed columns, in key order.
    pub columns: Vec<String>,
    /// Whether it is the table's primary key.
    pub primary: bool,
    /// Whether it refuses equal keys.
    pub unique: bool,
    /// Its access method (`btree`, `hnsw`).
    pub method: &'static str,
    /// Its `WITH (…)` storage parameters.
    pub options: Vec<(String, String)>,
}

impl IndexInfo {
    /// Its OID: the same for the same table and index name, in every query.
    pub fn oid(&self) -> i32 {
        stable_oid(&["index", &self.table, &self.name])
    }

    /// The OID of the constraint it enforces (primary keys only, so far).
    fn constraint_oid(&self) -> Option<i32> {
        self.primary
            .then(|| stable_oid(&["constraint", &self.table, &self.name]))
    }

    /// `CREATE … INDEX` as `pg_get_indexdef` prints it.
    fn definition(&self) -> String {
        let unique = if self.unique { "UNIQUE " } else { "" };
        let options = if self.options.is_empty() {
            String::new()
        } else {
            let pairs: Vec<String> = self
                .options
                .iter()
                .map(|(k, v)| format!("{k}='{v}'"))
                .collect();
            format!(" WITH ({})", pairs.join(", "))
        };
        format!(
            "CREATE {unique}INDEX {} ON {}.{} USING {} ({}){options}",
            quote_ident(&self.name),
            names::SCHEMA,
            quote_ident(&self.table),
            self.method,
            self.quoted_columns()
        )
    }

    /// The constraint as `pg_get_constraintdef` prints it.
    fn constraint_definition(&self) -> String {
        format!("PRIMARY KEY ({})", self.quoted_columns())
    }

    fn quoted_columns(&self) -> String {
        let columns: Vec<String> = self.columns.iter().map(|c| quote_ident(c)).collect();
        columns.join(", ")
    }
}

/// Something that has indexes: the catalog (primary keys), vector indexes.
pub trait ListIndexes: Send + Sync + std::fmt::Debug {
    /// Its indexes as they are now.
    fn indexes(&self) -> Vec<IndexInfo>;
}

impl ListIndexes for Catalog {
    fn indexes(&self) -> Vec<IndexInfo> {
        let mut indexes = Vec::new();
        for table in self.names().into_iter().filter_map(|name| self.get(&name)) {
            let def = &table.def;
            let column_names = |columns: &[usize]| {
                columns
                    .iter()
                    .map(|&i| def.columns[i].name.clone())
                    .collect()
            };
            if def.has_primary_key() {
                indexes.push(IndexInfo {
                    name: format!("{}_pkey", def.name),
                    table: def.name.clone(),
                    columns: column_names(&def.primary_key),
                    primary: true,
                    unique: true,
                    method: "btree",
                    options: Vec::new(),
                });
            }
            for index in &def.indexes {
                indexes.push(IndexInfo {
                    name: index.name.clone(),
                    table: def.name.clone(),
                    columns: column_names(&index.columns),
                    primary: false,
                    unique: index.unique,
                    method: "btree",
                    options: Vec::new(),
                });
            }
        }
        indexes
    }
}

/// Who owns each table (the roles know; `pg_class.relowner` shows it).
pub trait RelationOwners: Send + Sync + std::fmt::Debug {
    /// The OID of the role recorded as the owner of the table `table`, if one is.
    fn owner_oid(&self, table: &str) -> Option<i32>;

    /// The OID of the role that owns the tables with no recorded owner.
    fn default_owner_oid(&self) -> Option<i32>;
}

/// What an OID of this module's tables stands for, as of the last query that read them.
#[derive(Debug, Clone)]
enum Relation {
    Table(String),
    Index(IndexInfo),
    Constraint(IndexInfo),
}

/// The catalog tables and functions of this module.
#[derive(Debug)]
pub struct IndexCatalog {
    catalog: Arc<Catalog>,
    sources: Vec<Arc<dyn ListIndexes>>,
    owners: Arc<dyn RelationOwners>,
    relations: RwLock<HashMap<i32, Relation>>,
}

/// The `pg_catalog` tables this module builds (in place of datafusion-pg-catalog's).
pub const TABLES: &[&str] = &[
    "pg_class",
    "pg_am",
    "pg_index",
    "pg_constraint",
    "pg_indexes",
];

impl IndexCatalog {
    /// The tables and functions over the indexes of `sources`; table sizes come from
    /// `catalog`, owners from `owners`.
    pub fn new(
        catalog: Arc<Catalog>,
        sources: Vec<Arc<dyn ListIndexes>>,
        owners: Arc<dyn RelationOwners>,
    ) -> Arc<Self> {
        Arc::new(IndexCatalog {
            catalog,
            sources,
            owners,
            relations: RwLock::new(HashMap::new()),
        })
    }

    /// The functions: `pg_get_indexdef`, `pg_get_constraintdef`, `pg_table_size`,
    /// `pg_relation_size`, `pg_total_relation_size`, `pg_indexes_size`.
    pub fn functions(self: &Arc<Self>) -> Vec<ScalarUDF> {
        functions::all(self)
    }

    /// The table `name`, whose rows are built over `inner` (datafusion-pg-catalog's
    /// `pg_catalog`) when a plan reads them, or `None` when it is not one of [`TABLES`].
    pub async fn table(
        self: &Arc<Self>,
        name: &str,
        inner: &Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(&name) = TABLES.iter().find(|&&t| t == name) else {
            return Ok(None);
        };
        let schema = match name {
            "pg_class" => {
                tables::pg_class_schema(&inner_table(inner.as_ref(), name).await?.schema())
            }
            "pg_am" => inner_table(inner.as_ref(), name).await?.schema(),
            "pg_index" => tables::pg_index_schema(),
            "pg_constraint" => tables::pg_constraint_schema(),
            _ => tables::pg_indexes_schema(),
        };
        Ok(Some(Arc::new(lazy_table::LazyTable {
            name,
            schema,
            indexes: self.clone(),
            inner: inner.clone(),
        })))
    }

    /// The rows of the table `name` as they are now.
    async fn rows(&self, name: &str, inner: &dyn SchemaProvider) -> Result<RecordBatch> {
        if name == "pg_am" {
            return tables::pg_am(&collect(inner, "pg_am").await?);
        }
        let classes = collect(inner, "pg_class").await?;
        let namespaces = collect(inner, "pg_namespace").await?;
        let schema_oid = oid_of(&namespaces, "nspname", names::SCHEMA)?;
        let table_oids = table_oids(&classes, schema_oid)?;
        let indexes = self.indexes(&table_oids);
        let catalog = tables::Indexed {
            schema_oid,
            table_oids: &table_oids,
            indexes: &indexes,
            catalog: &self.catalog,
            owners: self.owners.as_ref(),
        };
        match name {
            "pg_class" => tables::pg_class(&classes, &catalog),
            "pg_index" => tables::pg_index(&catalog),
            "pg_constraint" => tables::pg_constraint(&catalog),
            _ => tables::pg_indexes(&catalog),
        }
    }

    /// The indexes of the tables in `table_oids`, remembered with the tables for the functions.
    fn indexes(&self, table_oids: &HashMap<String, i32>) -> Vec<IndexInfo> {
        let indexes: Vec<IndexInfo> = (self.sources.iter())
            .flat_map(|source| source.indexes())
            .filter(|index| table_oids.contains_key(&index.table))
            .collect();
        let mut relations: HashMap<i32, Relation> = (table_oids.iter())
            .map(|(name, &oid)| (oid, Relation::Table(name.clone())))
            .collect();
        for index in &indexes {
            relations.insert(index.oid(), Relation::Index(index.clone()));
            if let Some(oid) = index.constraint_oid() {
                relations.insert(oid, Relation::Constraint(index.clone()));
            }
        }
        *self.relations.write().unwrap_or_else(|p| p.into_inner()) = relations;
        indexes
    }

    fn relation(&self, oid: i32) -> Option<Relation> {
        let relations = self.relations.read().unwrap_or_else(|p| p.into_inner());
        relations.get(&oid).cloned()
    }
}

/// The table `name` of `schema`.
async fn inner_table(schema: &dyn SchemaProvider, name: &str) -> Result<Arc<dyn TableProvider>> {
    (schema.table(name).await?)
        .ok_or_else(|| crate::error::Error::Internal(format!("pg_catalog.{name} is missing")))
}

/// All rows of the table `name` of `schema`, in one batch.
async fn collect(schema: &dyn SchemaProvider, name: &str) -> Result<RecordBatch> {
    let table = inner_table(schema, name).await?;
    let table_schema = table.schema();
    let batches = SessionContext::new().read_table(table)?.collect().await?;
    Ok(concat_batches(&table_schema, &batches)?)
}

/// The `oid` of the row of `batch` whose `column` is `value`.
fn oid_of(batch: &RecordBatch, column: &str, value: &str) -> Result<i32> {
    let names = tables::strings(batch, column)?;
    let oids = tables::oids(batch)?;
    (0..batch.num_rows())
        .find(|&i| names.is_valid(i) && names.value(i) == value)
        .map(|i| oids.value(i))
        .ok_or_else(|| crate::error::Error::Internal(format!("no {column} {value}")))
}

/// The OIDs of the relations in the namespace `schema_oid`, by name.
fn table_oids(classes: &RecordBatch, schema_oid: i32) -> Result<HashMap<String, i32>> {
    let names = tables::strings(classes, "relname")?;
    let oids = tables::oids(classes)?;
    let namespaces = tables::column(classes, "relnamespace")?.as_primitive::<Int32Type>();
    Ok((0..classes.num_rows())
        .filter(|&i| namespaces.value(i) == schema_oid)
        .map(|i| (names.value(i).to_string(), oids.value(i)))
        .collect())
}

/// An OID from `parts`, in 2^30..2^31: above those datafusion-pg-catalog hands out (counting
/// up from 16384) and below `i32::MAX`, as OIDs travel as int4 here. The same parts give the
/// same OID in every query and after a restart.
pub fn stable_oid(parts: &[&str]) -> i32 {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    (1 << 30) + (hash % (1 << 30)) as i32
}

/// `name` as PostgreSQL's `quote_ident` writes it: bare when it is lower-case letters,
/// digits and underscores not starting with a digit, else in double quotes.
fn quote_ident(name: &str) -> String {
    let bare = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && !name.is_empty();
    if bare {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(primary: bool) -> IndexInfo {
        IndexInfo {
            name: "Ix".into(),
            table: "t".into(),
            columns: vec!["a".into(), "b c".into()],
            primary,
            unique: true,
            method: "btree",
            options: Vec::new(),
        }
    }

    #[test]
    fn definitions_read_as_postgresql_prints_them() {
        assert_eq!(
            index(true).definition(),
            "CREATE UNIQUE INDEX \"Ix\" ON public.t USING btree (a, \"b c\")"
        );
        assert_eq!(
            index(true).constraint_definition(),
            "PRIMARY KEY (a, \"b c\")"
        );
    }

    #[test]
    fn oids_are_stable_distinct_and_above_the_counted_range() {
        let oid = index(true).oid();
        assert_eq!(stable_oid(&["a", "b"]), stable_oid(&["a", "b"]));
        assert_ne!(stable_oid(&["ab"]), stable_oid(&["a", "b"]));
        assert_eq!(oid, index(true).oid());
        assert!(oid >= 1 << 30);
        assert_ne!(Some(oid), index(true).constraint_oid());
        assert_eq!(index(false).constraint_oid(), None);
    }
}
