//! `CREATE TABLE` and `DROP TABLE` of stored tables.

use crate::error::{Error, Result};
use crate::schema::{ColumnDef, ColumnType, TableDef};
use crate::sql::names;
use datafusion::arrow::datatypes::Schema;
use datafusion::sql::sqlparser::ast::{
    ColumnDef as SqlColumnDef, ColumnOption, CreateTable, Expr, TableConstraint,
};

/// The definition a `CREATE TABLE` with a column list describes (its id is assigned later).
pub fn table_def(create: &CreateTable) -> Result<TableDef> {
    reject_unsupported(create)?;
    let name = names::table_name(&create.name)?;
    let mut columns = Vec::with_capacity(create.columns.len());
    let mut primary_key: Option<Vec<String>> = None;
    for column in &create.columns {
        let (def, is_key) = column_def(column)?;
        if is_key {
            set_primary_key(&mut primary_key, vec![def.name.clone()])?;
        }
        columns.push(def);
    }
    for constraint in &create.constraints {
        match constraint {
            TableConstraint::PrimaryKey(key) => {
                let key_columns = key
                    .columns
                    .iter()
                    .map(|c| match &c.column.expr {
                        Expr::Identifier(ident) => Ok(names::ident(ident)),
                        other => Err(Error::FeatureNotSupported(format!(
                            "primary key on expression {other} is not supported"
                        ))),
                    })
                    .collect::<Result<Vec<_>>>()?;
                set_primary_key(&mut primary_key, key_columns)?;
            }
            other => {
                return Err(Error::FeatureNotSupported(format!(
                    "constraint {other} is not supported; only PRIMARY KEY is"
                )));
            }
        }
    }
    build(name, columns, primary_key.unwrap_or_default())
}

/// The definition of a table created from a query result (`CREATE TABLE … AS SELECT`).
pub fn table_def_from_schema(create: &CreateTable, schema: &Schema) -> Result<TableDef> {
    reject_unsupported(create)?;
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            Ok(ColumnDef {
                name: field.name().clone(),
                column_type: ColumnType::from_arrow(field.data_type())?,
                nullable: true,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    build(names::table_name(&create.name)?, columns, Vec::new())
}

fn reject_unsupported(create: &CreateTable) -> Result<()> {
    let unsupported = [
        (create.or_replace, "CREATE OR REPLACE TABLE"),
        (create.temporary, "CREATE TEMPORARY TABLE"),
        (
            create.external,
            "CREATE EXTERNAL TABLE with a column list and constraints",
        ),
    ];
    match unsupported.iter().find(|(set, _)| *set) {
        Some((_, what)) => Err(Error::FeatureNotSupported(format!(
            "{what} is not supported"
        ))),
        None => Ok(()),
    }
}

fn column_def(column: &SqlColumnDef) -> Result<(ColumnDef, bool)> {
    let name = names::ident(&column.name);
    let column_type = ColumnType::from_sql(&column.data_type)?;
    let mut nullable = true;
    let mut is_key = false;
    for option in &column.options {
        match &option.option {
            ColumnOption::Null => nullable = true,
            ColumnOption::NotNull => nullable = false,
            ColumnOption::PrimaryKey(_) => is_key = true,
            other => {
                return Err(Error::FeatureNotSupported(format!(
                    "column option {other} of column \"{name}\" is not supported"
                )));
            }
        }
    }
    let def = ColumnDef {
        name,
        column_type,
        nullable,
    };
    Ok((def, is_key))
}

fn set_primary_key(slot: &mut Option<Vec<String>>, columns: Vec<String>) -> Result<()> {
    if slot.is_some() {
        return Err(Error::InvalidTableDefinition(
            "multiple primary keys for a table are not allowed".into(),
        ));
    }
    *slot = Some(columns);
    Ok(())
}

/// Checks names and the key, marks key columns NOT NULL, and assembles the definition.
fn build(name: String, mut columns: Vec<ColumnDef>, key_names: Vec<String>) -> Result<TableDef> {
    if columns.is_empty() {
        return Err(Error::InvalidTableDefinition(format!(
            "table \"{name}\" needs at least one column"
        )));
    }
    for (i, column) in columns.iter().enumerate() {
        if columns[..i].iter().any(|c| c.name == column.name) {
            return Err(Error::DuplicateColumn(column.name.clone()));
        }
    }
    let mut primary_key = Vec::with_capacity(key_names.len());
    for key in &key_names {
        let index = columns
            .iter()
            .position(|c| &c.name == key)
            .ok_or_else(|| Error::UndefinedColumn(key.clone()))?;
        if primary_key.contains(&index) {
            return Err(Error::DuplicateColumn(key.clone()));
        }
        if matches!(
            columns[index].column_type,
            ColumnType::Real | ColumnType::Double | ColumnType::Vector(_)
        ) {
            return Err(Error::FeatureNotSupported(format!(
                "primary key column \"{key}\" is floating-point or a vector; use an integer or \
                 text key"
            )));
        }
        columns[index].nullable = false;
        primary_key.push(index);
    }
    Ok(TableDef {
        id: 0,
        name,
        columns,
        primary_key,
        indexes: Vec::new(),
    })
}
