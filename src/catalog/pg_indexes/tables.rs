//! The rows of `pg_class`, `pg_am`, `pg_index`, `pg_constraint` and `pg_indexes`.

use super::{IndexInfo, RelationOwners, stable_oid};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::sql::names;
use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int32Array, RecordBatch, StringArray, new_empty_array,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What the tables are built from.
pub struct Indexed<'a> {
    /// The OID of the schema TasteDB's tables are in.
    pub schema_oid: i32,
    /// The OIDs of its tables by name.
    pub table_oids: &'a HashMap<String, i32>,
    /// The indexes of those tables.
    pub indexes: &'a [IndexInfo],
    /// The tables' definitions (column numbers).
    pub catalog: &'a Catalog,
    /// Who owns the tables.
    pub owners: &'a dyn RelationOwners,
}

impl Indexed<'_> {
    fn table_oid(&self, index: &IndexInfo) -> i32 {
        self.table_oids.get(&index.table).copied().unwrap_or(0)
    }

    /// The column numbers (`attnum`, from 1) of the index's columns.
    fn attnums(&self, index: &IndexInfo) -> Vec<ScalarValue> {
        let table = self.catalog.get(&index.table);
        (index.columns.iter())
            .map(|column| {
                let position = table
                    .as_ref()
                    .and_then(|t| t.def.columns.iter().position(|c| &c.name == column));
                ScalarValue::Int16(position.and_then(|p| i16::try_from(p + 1).ok()))
            })
            .collect()
    }
}

/// PostgreSQL's OID of the `heap` table access method.
const HEAP_ACCESS_METHOD: i32 = 2;

/// The OID of the access method called `method` (PostgreSQL's for btree).
fn access_method_oid(method: &str) -> i32 {
    match method {
        "btree" => 403,
        other => stable_oid(&["access method", other]),
    }
}

/// A stored table's storage parameters as `pg_class.reloptions` lists them: its retention.
fn table_options(catalog: &Catalog, name: &str) -> Vec<String> {
    let Some(table) = catalog.get(name) else {
        return Vec::new();
    };
    let def = &table.def;
    let Some(retention) = &def.retention else {
        return Vec::new();
    };
    let mut options = vec![format!("ttl={}", retention.ttl)];
    if let Some(column) = def.columns.get(retention.column) {
        options.push(format!("ttl_column={}", column.name));
    }
    options
}

/// datafusion-pg-catalog's `pg_class` columns (`classes`) and `reloptions`.
pub fn pg_class_schema(classes: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = classes
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("reloptions", text_list_type(), true));
    Arc::new(Schema::new(fields))
}

/// datafusion-pg-catalog's `pg_class` with a row per index, `relhasindex` set on the tables
/// that have one, and `reloptions` (the indexes' `WITH` parameters, the tables' retention).
pub fn pg_class(classes: &RecordBatch, indexed: &Indexed) -> Result<RecordBatch> {
    let schema = classes.schema();
    let indexes = indexed.indexes;
    let index_rows = rows_like(&schema, indexes.len(), |field, row| {
        let index = &indexes[row];
        Some(match field {
            "oid" | "relfilenode" => ScalarValue::Int32(Some(index.oid())),
            "relname" => utf8(&index.name),
            "relnamespace" => ScalarValue::Int32(Some(indexed.schema_oid)),
            "relam" => ScalarValue::Int32(Some(access_method_oid(index.method))),
            "relkind" => utf8("i"),
            "relpersistence" => utf8("p"),
            "relreplident" => utf8("n"),
            "relnatts" => ScalarValue::Int16(i16::try_from(index.columns.len()).ok()),
            "relpages" => ScalarValue::Int32(Some(1)),
            "relispopulated" => ScalarValue::Boolean(Some(true)),
            _ => return None,
        })
    })?;
    let all = concat_batches(&schema, [classes, &index_rows])?;
    let indexed_tables: HashSet<i32> = indexes.iter().map(|i| indexed.table_oid(i)).collect();
    let oids = oids(&all)?;
    let had_index = column(&all, "relhasindex")?.as_boolean();
    let has_index: BooleanArray = (0..all.num_rows())
        .map(|i| Some(had_index.value(i) || indexed_tables.contains(&oids.value(i))))
        .collect();
    let tables = classes.num_rows();
    let row_index =
        |row: usize, tables: usize| row.checked_sub(tables).and_then(|i| indexes.get(i));
    let names = strings(&all, "relname")?;
    let reloptions = (0..all.num_rows()).map(|row| {
        let options: Vec<String> = match row_index(row, tables) {
            Some(index) => (index.options.iter())
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            None => table_options(indexed.catalog, names.value(row)),
        };
        match options.is_empty() {
            false => text_array(options),
            true => ScalarValue::try_from(&text_list_type()).unwrap_or(ScalarValue::Null),
        }
    });
    let reloptions = scalars_to_array(reloptions.collect(), &text_list_type())?;
    // tables are stored by TasteDB's one table access method, shown as PostgreSQL's `heap`
    let kinds = strings(&all, "relkind")?;
    let methods = column(&all, "relam")?.as_primitive::<Int32Type>();
    let relam: Int32Array = (0..all.num_rows())
        .map(|i| match kinds.value(i) {
            "r" | "m" if methods.value(i) == 0 => Some(HEAP_ACCESS_METHOD),
            _ => Some(methods.value(i)),
        })
        .collect();
    // TasteDB's tables and their indexes belong to the role that created the table
    let names = strings(&all, "relname")?;
    let namespaces = column(&all, "relnamespace")?.as_primitive::<Int32Type>();
    let owners = column(&all, "relowner")?.as_primitive::<Int32Type>();
    let default_owner = indexed.owners.default_owner_oid();
    let relowner: Int32Array = (0..all.num_rows())
        .map(|i| {
            let table = match row_index(i, tables) {
                Some(index) => Some(index.table.as_str()),
                None => (namespaces.value(i) == indexed.schema_oid).then(|| names.value(i)),
            };
            let owner = table.map(|t| indexed.owners.owner_oid(t).or(default_owner));
            Some(owner.flatten().unwrap_or(owners.value(i)))
        })
        .collect();
    let mut columns: Vec<ArrayRef> = all.columns().to_vec();
    for (name, replaced) in [
        ("relhasindex", Arc::new(has_index) as ArrayRef),
        ("relam", Arc::new(relam)),
        ("relowner", Arc::new(relowner)),
    ] {
        if let Ok(i) = schema.index_of(name) {
            columns[i] = replaced;
        }
    }
    columns.push(reloptions);
    Ok(RecordBatch::try_new(pg_class_schema(&schema), columns)?)
}

/// datafusion-pg-catalog's `pg_am` with `hnsw`.
pub fn pg_am(methods: &RecordBatch) -> Result<RecordBatch> {
    let schema = methods.schema();
    let hnsw = rows_like(&schema, 1, |field, _| {
        Some(match field {
            "oid" => ScalarValue::Int32(Some(access_method_oid("hnsw"))),
            "amname" => utf8("hnsw"),
            "amtype" => utf8("i"),
            _ => return None,
        })
    })?;
    Ok(concat_batches(&schema, [methods, &hnsw])?)
}

/// `pg_index`: a row per index; `indkey` is an `int2[]` (PostgreSQL's int2vector, which
/// clients unnest and subscript).
pub fn pg_index(indexed: &Indexed) -> Result<RecordBatch> {
    let schema = pg_index_schema();
    let indexes = indexed.indexes;
    rows_like(&schema, indexes.len(), |field, row| {
        let index = &indexes[row];
        let width = index.columns.len();
        Some(match field {
            "indexrelid" => ScalarValue::Int32(Some(index.oid())),
            "indrelid" => ScalarValue::Int32(Some(indexed.table_oid(index))),
            "indnatts" | "indnkeyatts" => ScalarValue::Int16(i16::try_from(width).ok()),
            "indisunique" => ScalarValue::Boolean(Some(index.unique)),
            "indisprimary" => ScalarValue::Boolean(Some(index.primary)),
            "indimmediate" | "indisvalid" | "indisready" | "indislive" => {
                ScalarValue::Boolean(Some(true))
            }
            "indkey" => list(&indexed.attnums(index), DataType::Int16),
            "indcollation" | "indclass" => {
                list(&vec![ScalarValue::Int32(Some(0)); width], DataType::Int32)
            }
            "indoption" => list(&vec![ScalarValue::Int16(Some(0)); width], DataType::Int16),
            _ => return None,
        })
    })
}

/// The columns of `pg_index` (PostgreSQL 15's).
pub fn pg_index_schema() -> SchemaRef {
    let int2vector = || DataType::List(Arc::new(Field::new("item", DataType::Int16, true)));
    let oidvector = || DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
    let mut fields = vec![
        Field::new("indexrelid", DataType::Int32, false),
        Field::new("indrelid", DataType::Int32, false),
        Field::new("indnatts", DataType::Int16, false),
        Field::new("indnkeyatts", DataType::Int16, false),
    ];
    for flag in [
        "indisunique",
        "indnullsnotdistinct",
        "indisprimary",
        "indisexclusion",
        "indimmediate",
        "indisclustered",
        "indisvalid",
        "indcheckxmin",
        "indisready",
        "indislive",
        "indisreplident",
    ] {
        fields.push(Field::new(flag, DataType::Boolean, false));
    }
    fields.extend([
        vector_field("indkey", int2vector(), "int2vector"),
        vector_field("indcollation", oidvector(), "oidvector"),
        vector_field("indclass", oidvector(), "oidvector"),
        vector_field("indoption", int2vector(), "int2vector"),
        Field::new("indexprs", DataType::Utf8, true),
        Field::new("indpred", DataType::Utf8, true),
    ]);
    Arc::new(Schema::new(fields))
}

/// A column of PostgreSQL's `int2vector` or `oidvector` type: a list here (subscripts and
/// `unnest` work on it), sent to clients as the type `pg_type` names (space-separated text).
fn vector_field(name: &str, data_type: DataType, pg_type: &str) -> Field {
    Field::new(name, data_type, false).with_metadata(HashMap::from([(
        super::PG_TYPE_METADATA.to_string(),
        pg_type.to_string(),
    )]))
}

/// `pg_constraint`: the primary keys.
pub fn pg_constraint(indexed: &Indexed) -> Result<RecordBatch> {
    let schema = pg_constraint_schema();
    let constraints: Vec<(&IndexInfo, i32)> = (indexed.indexes.iter())
        .filter_map(|index| Some((index, index.constraint_oid()?)))
        .collect();
    rows_like(&schema, constraints.len(), |field, row| {
        let (index, oid) = constraints[row];
        Some(match field {
            "oid" => ScalarValue::Int32(Some(oid)),
            "conname" => utf8(&index.name),
            "connamespace" => ScalarValue::Int32(Some(indexed.schema_oid)),
            "contype" => utf8("p"),
            "convalidated" | "conislocal" | "connoinherit" => ScalarValue::Boolean(Some(true)),
            "conrelid" => ScalarValue::Int32(Some(indexed.table_oid(index))),
            "conindid" => ScalarValue::Int32(Some(index.oid())),
            "confupdtype" | "confdeltype" | "confmatchtype" => utf8(" "),
            "conkey" => list(&indexed.attnums(index), DataType::Int16),
            _ => return None,
        })
    })
}

/// The columns of `pg_constraint` (PostgreSQL 15's).
pub fn pg_constraint_schema() -> SchemaRef {
    let int2_array = || DataType::List(Arc::new(Field::new("item", DataType::Int16, true)));
    let oid_array = || DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
    let oid = |name: &str| Field::new(name, DataType::Int32, false);
    let flag = |name: &str| Field::new(name, DataType::Boolean, false);
    let char = |name: &str| Field::new(name, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        oid("oid"),
        Field::new("conname", DataType::Utf8, false),
        oid("connamespace"),
        char("contype"),
        flag("condeferrable"),
        flag("condeferred"),
        flag("convalidated"),
        oid("conrelid"),
        oid("contypid"),
        oid("conindid"),
        oid("conparentid"),
        oid("confrelid"),
        char("confupdtype"),
        char("confdeltype"),
        char("confmatchtype"),
        flag("conislocal"),
        Field::new("coninhcount", DataType::Int16, false),
        flag("connoinherit"),
        Field::new("conkey", int2_array(), true),
        Field::new("confkey", int2_array(), true),
        Field::new("conpfeqop", oid_array(), true),
        Field::new("conppeqop", oid_array(), true),
        Field::new("conffeqop", oid_array(), true),
        Field::new("confdelsetcols", int2_array(), true),
        Field::new("conexclop", oid_array(), true),
        Field::new("conbin", DataType::Utf8, true),
    ]))
}

/// `pg_indexes`: each index with its `CREATE INDEX` statement.
pub fn pg_indexes(indexed: &Indexed) -> Result<RecordBatch> {
    let schema = pg_indexes_schema();
    let indexes = indexed.indexes;
    rows_like(&schema, indexes.len(), |field, row| {
        let index = &indexes[row];
        Some(match field {
            "schemaname" => utf8(names::SCHEMA),
            "tablename" => utf8(&index.table),
            "indexname" => utf8(&index.name),
            "indexdef" => utf8(&index.definition()),
            _ => return None,
        })
    })
}

/// The columns of `pg_indexes`.
pub fn pg_indexes_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("schemaname", DataType::Utf8, false),
        Field::new("tablename", DataType::Utf8, false),
        Field::new("indexname", DataType::Utf8, false),
        Field::new("tablespace", DataType::Utf8, true),
        Field::new("indexdef", DataType::Utf8, false),
    ]))
}

/// `rows` rows of `schema`, each column's values from `value(column name, row)`, or the
/// column's default where it answers `None`: NULL, or zero, false and '' when not nullable.
fn rows_like(
    schema: &SchemaRef,
    rows: usize,
    value: impl Fn(&str, usize) -> Option<ScalarValue>,
) -> Result<RecordBatch> {
    let columns = (schema.fields().iter())
        .map(|field| {
            let values = (0..rows)
                .map(|row| match value(field.name(), row) {
                    Some(v) => Ok(v),
                    None => default_value(field),
                })
                .collect::<Result<Vec<_>>>()?;
            scalars_to_array(values, field.data_type())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn default_value(field: &Field) -> Result<ScalarValue> {
    Ok(match field.data_type() {
        _ if field.is_nullable() => ScalarValue::try_from(field.data_type())?,
        DataType::Utf8 => utf8(""),
        DataType::Boolean => ScalarValue::Boolean(Some(false)),
        DataType::List(item) => list(&[], item.data_type().clone()),
        other => ScalarValue::new_zero(other)?,
    })
}

fn scalars_to_array(values: Vec<ScalarValue>, data_type: &DataType) -> Result<ArrayRef> {
    if values.is_empty() {
        return Ok(new_empty_array(data_type));
    }
    let values = (values.into_iter())
        .map(|v| v.cast_to(data_type))
        .collect::<datafusion::common::Result<Vec<_>>>()?;
    Ok(ScalarValue::iter_to_array(values)?)
}

fn utf8(text: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(text.to_string()))
}

fn list(values: &[ScalarValue], item: DataType) -> ScalarValue {
    ScalarValue::List(ScalarValue::new_list_nullable(values, &item))
}

fn text_list_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

fn text_array(values: Vec<String>) -> ScalarValue {
    let values: Vec<ScalarValue> = values.iter().map(|v| utf8(v)).collect();
    list(&values, DataType::Utf8)
}

/// The column `name` of `batch`.
pub fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| Error::Internal(format!("pg_catalog column {name} is missing")))
}

/// The text column `name` of `batch`.
pub fn strings<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    column(batch, name)?
        .as_string_opt::<i32>()
        .ok_or_else(|| Error::Internal(format!("pg_catalog column {name} is not text")))
}

/// The `oid` column of `batch`.
pub fn oids(batch: &RecordBatch) -> Result<&Int32Array> {
    column(batch, "oid")?
        .as_primitive_opt::<Int32Type>()
        .ok_or_else(|| Error::Internal("pg_catalog oid column is not int4".into()))
}
