//! `CREATE TABLE` and `DROP TABLE` of stored tables.

use crate::catalog::sequences::{nextval_of, sequence_name};
use crate::error::{Error, Result};
use crate::schema::{ColumnDef, ColumnType, SecondaryIndex, TableDef, TableLayout};
use crate::sql::names;
use datafusion::arrow::datatypes::Schema;
use datafusion::sql::sqlparser::ast::{
    ColumnDef as SqlColumnDef, ColumnOption, CreateTable, DataType as SqlType, Expr,
    NullsDistinctOption, TableConstraint, UniqueConstraint,
};

/// The definition a `CREATE TABLE` with a column list describes (its id is assigned later).
pub fn table_def(create: &CreateTable) -> Result<TableDef> {
    reject_unsupported(create)?;
    let name = names::table_name(&create.name)?;
    let mut columns = Vec::with_capacity(create.columns.len());
    let mut primary_key: Option<Vec<String>> = None;
    let mut unique: Vec<(Option<String>, Vec<String>)> = Vec::new();
    for column in &create.columns {
        let (mut def, is_key, identity) = column_def(column)?;
        if is_key {
            set_primary_key(&mut primary_key, vec![def.name.clone()])?;
        }
        for constraint in unique_options(column)? {
            unique.push((constraint, vec![def.name.clone()]));
        }
        if identity {
            def.default = Some(nextval_of(&sequence_name(&name, &def.name)));
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
            TableConstraint::Unique(constraint) => {
                unique.push((
                    constraint.name.as_ref().map(names::ident),
                    unique_columns(constraint)?,
                ));
            }
            other => {
                return Err(Error::FeatureNotSupported(format!(
                    "constraint {other} is not supported; only PRIMARY KEY and UNIQUE are"
                )));
            }
        }
    }
    let mut def = build(name, columns, primary_key.unwrap_or_default())?;
    for (id, (constraint, columns)) in unique.into_iter().enumerate() {
        let index = constraint.unwrap_or_else(|| unique_index_name(&def.name, &columns));
        if def.indexes.iter().any(|i| i.name == index) {
            return Err(Error::DuplicateTable(index));
        }
        let positions = (columns.iter())
            .map(|c| {
                (def.columns.iter().position(|d| &d.name == c))
                    .ok_or_else(|| Error::UndefinedColumn(c.clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        if positions
            .iter()
            .any(|&p| matches!(def.columns[p].column_type, ColumnType::Vector(_)))
        {
            return Err(Error::FeatureNotSupported(
                "UNIQUE over a vector column".into(),
            ));
        }
        def.indexes.push(SecondaryIndex {
            name: index,
            id: id as u32,
            columns: positions,
            unique: true,
        });
    }
    Ok(def)
}

/// The name PostgreSQL gives the index of a `UNIQUE` constraint without a name:
/// `table_col1_col2_key`.
pub fn unique_index_name(table: &str, columns: &[String]) -> String {
    format!("{table}_{}_key", columns.join("_"))
}

/// The columns of a table constraint `UNIQUE (a, b)`.
pub fn unique_columns(constraint: &UniqueConstraint) -> Result<Vec<String>> {
    check_nulls_distinct(constraint)?;
    (constraint.columns.iter())
        .map(|c| match &c.column.expr {
            Expr::Identifier(ident) => Ok(names::ident(ident)),
            other => Err(Error::FeatureNotSupported(format!(
                "UNIQUE on expression {other} is not supported"
            ))),
        })
        .collect()
}

/// The `UNIQUE` options of a column (with the constraint's name, if it has one).
pub fn unique_options(column: &SqlColumnDef) -> Result<Vec<Option<String>>> {
    let mut found = Vec::new();
    for option in &column.options {
        if let ColumnOption::Unique(constraint) = &option.option {
            check_nulls_distinct(constraint)?;
            found.push(
                option
                    .name
                    .as_ref()
                    .or(constraint.name.as_ref())
                    .map(names::ident),
            );
        }
    }
    Ok(found)
}

fn check_nulls_distinct(constraint: &UniqueConstraint) -> Result<()> {
    match constraint.nulls_distinct {
        NullsDistinctOption::NotDistinct => Err(Error::FeatureNotSupported(
            "UNIQUE NULLS NOT DISTINCT is not supported (NULLs never clash)".into(),
        )),
        _ => Ok(()),
    }
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
                default: None,
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

/// A column of CREATE TABLE or ALTER TABLE … ADD COLUMN: its definition, whether it says
/// PRIMARY KEY, and whether it takes its values from a sequence of its own (`SERIAL`,
/// `BIGSERIAL`, `SMALLSERIAL`, `GENERATED … AS IDENTITY`; the caller names the sequence).
pub fn column_def(column: &SqlColumnDef) -> Result<(ColumnDef, bool, bool)> {
    let name = names::ident(&column.name);
    let serial = match &column.data_type {
        SqlType::Custom(type_name, _) => match type_name.to_string().to_lowercase().as_str() {
            "serial" | "serial4" => Some(ColumnType::Int),
            "bigserial" | "serial8" => Some(ColumnType::BigInt),
            "smallserial" | "serial2" => Some(ColumnType::SmallInt),
            _ => None,
        },
        _ => None,
    };
    let mut identity = serial.is_some();
    let column_type = match serial {
        Some(column_type) => column_type,
        None => ColumnType::from_sql(&column.data_type)?,
    };
    let mut nullable = !identity;
    let mut is_key = false;
    let mut default = None;
    for option in &column.options {
        match &option.option {
            ColumnOption::Null => nullable = true,
            ColumnOption::NotNull => nullable = false,
            ColumnOption::PrimaryKey(_) => is_key = true,
            ColumnOption::Default(expr) => default = Some(expr.to_string()),
            // the table's definition turns it into a unique index (`unique_options`)
            ColumnOption::Unique(_) => {}
            ColumnOption::Generated {
                generation_expr: None,
                ..
            } => {
                identity = true;
                nullable = false;
            }
            other => {
                return Err(Error::FeatureNotSupported(format!(
                    "column option {other} of column \"{name}\" is not supported"
                )));
            }
        }
    }
    if identity && default.is_some() {
        return Err(Error::Syntax(format!(
            "both default and identity specified for column \"{name}\""
        )));
    }
    let def = ColumnDef {
        name,
        column_type,
        nullable,
        default,
    };
    Ok((def, is_key, identity))
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

/// The positions of the key columns `key_names` among `columns`, which become NOT NULL; a
/// missing or repeated column, or one that cannot be a key (floats, vectors), is refused.
pub fn primary_key_positions(
    columns: &mut [ColumnDef],
    key_names: &[String],
) -> Result<Vec<usize>> {
    let mut primary_key = Vec::with_capacity(key_names.len());
    for key in key_names {
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
    Ok(primary_key)
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
    let primary_key = primary_key_positions(&mut columns, &key_names)?;
    Ok(TableDef {
        id: 0,
        name,
        columns,
        primary_key,
        indexes: Vec::new(),
        retention: None,
        layout: TableLayout::Rows,
    })
}
