//! `ALTER TABLE` of stored tables: `ADD COLUMN [IF NOT EXISTS]`, `DROP COLUMN [IF EXISTS]`,
//! `RENAME COLUMN … TO …`, `RENAME TO …` and `ADD PRIMARY KEY (…)`, each applied in turn
//! through `Catalog::alter` (one write per operation, while the table's writers wait).

use crate::catalog::alter::Convert;
use crate::engine::{Engine, Outcome};
use crate::error::{Error, Result};
use crate::roles::{Actor, Object};
use crate::schema::{ColumnType, TableDef};
use crate::sql::create_table::{
    column_def, primary_key_positions, unique_columns, unique_index_name, unique_options,
};
use crate::sql::names;
use crate::sql::notices::{Notice, Notices};
use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    AlterTable, AlterTableOperation, RenameTableNameKind, TableConstraint,
};

/// How the rows of a table are rewritten for its new definition.
type Rewrite = Box<dyn Fn(&RecordBatch) -> Result<Vec<ArrayRef>> + Send>;

impl Engine {
    /// Runs `ALTER TABLE` on behalf of `actor`, who must own the table.
    pub(super) async fn alter_table(
        &self,
        alter: AlterTable,
        actor: &Actor,
        notices: &Notices,
    ) -> Result<Outcome> {
        let name = names::table_name(&alter.name)?;
        if self.catalog().get(&name).is_none() {
            if alter.if_exists {
                notices.send(Notice::info(format!(
                    "relation \"{name}\" does not exist, skipping"
                )));
                return Ok(Outcome::done("ALTER TABLE"));
            }
            return Err(match self.is_user_table(&name) {
                true => Error::FeatureNotSupported(format!(
                    "\"{name}\" is not a stored table: only stored tables can be altered"
                )),
                false => Error::UndefinedTable(name),
            });
        }
        self.users()
            .check_owner(actor, &Object::table(name.clone()))?;
        let mut current = name;
        for operation in alter.operations {
            current = self.alter_one(&current, operation, notices).await?;
        }
        Ok(Outcome::done("ALTER TABLE"))
    }

    /// Applies one operation to table `name`; the table's name after it.
    async fn alter_one(
        &self,
        name: &str,
        operation: AlterTableOperation,
        notices: &Notices,
    ) -> Result<String> {
        let stored = self.stored_table(name)?;
        let def = &stored.def;
        let mut new = def.clone();
        let mut rewrite: Option<Rewrite> = None;
        match operation {
            AlterTableOperation::AddColumn {
                column_def: sql,
                if_not_exists,
                ..
            } => {
                let (column, is_key, identity) = column_def(&sql)?;
                if !unique_options(&sql)?.is_empty() {
                    return Err(Error::FeatureNotSupported(
                        "ADD COLUMN … UNIQUE; add the column, then ADD UNIQUE (column)".into(),
                    ));
                }
                if identity {
                    return Err(Error::FeatureNotSupported(
                        "ADD COLUMN of a SERIAL or identity column; create the table with it"
                            .into(),
                    ));
                }
                if def.columns.iter().any(|c| c.name == column.name) {
                    if if_not_exists {
                        notices.send(Notice::with_code(
                            "42701",
                            format!(
                                "column \"{}\" of relation \"{name}\" already exists, skipping",
                                column.name
                            ),
                        ));
                        return Ok(name.to_string());
                    }
                    return Err(Error::DuplicateColumn(column.name));
                }
                if is_key {
                    return Err(Error::FeatureNotSupported(
                        "ADD COLUMN … PRIMARY KEY; add the column, then ADD PRIMARY KEY".into(),
                    ));
                }
                let data_type = column.column_type.arrow_type();
                // the rows there get the default, evaluated once (PostgreSQL evaluates a
                // volatile one per row)
                let value = match &column.default {
                    Some(default) => Some(self.default_value(default, column.column_type).await?),
                    None => None,
                };
                new.columns.push(column);
                rewrite = Some(Box::new(move |batch: &RecordBatch| {
                    let mut columns = batch.columns().to_vec();
                    columns.push(match &value {
                        Some(value) => value.to_array_of_size(batch.num_rows())?,
                        None => new_null_array(&data_type, batch.num_rows()),
                    });
                    Ok(columns)
                }));
            }
            AlterTableOperation::DropColumn {
                column_names,
                if_exists,
                ..
            } => {
                let mut keep: Vec<usize> = (0..def.columns.len()).collect();
                for ident in &column_names {
                    let column = names::ident(ident);
                    let Some(position) = def.columns.iter().position(|c| c.name == column) else {
                        if if_exists {
                            notices.send(Notice::info(format!(
                                "column \"{column}\" of relation \"{name}\" does not exist, skipping"
                            )));
                            continue;
                        }
                        return Err(Error::UndefinedColumn(column));
                    };
                    self.check_droppable(def, position)?;
                    keep.retain(|&i| i != position);
                }
                if keep.is_empty() {
                    return Err(Error::InvalidTableDefinition(format!(
                        "table \"{name}\" needs at least one column"
                    )));
                }
                new = without_columns(def, &keep);
                rewrite = Some(Box::new(move |batch: &RecordBatch| {
                    Ok(keep.iter().map(|&i| batch.column(i).clone()).collect())
                }));
            }
            AlterTableOperation::RenameColumn {
                old_column_name,
                new_column_name,
            } => {
                let (old, renamed) = (
                    names::ident(&old_column_name),
                    names::ident(&new_column_name),
                );
                let position = (def.columns.iter().position(|c| c.name == old))
                    .ok_or_else(|| Error::UndefinedColumn(old.clone()))?;
                if def.columns.iter().any(|c| c.name == renamed) {
                    return Err(Error::DuplicateColumn(renamed));
                }
                if self.indexes().for_column(def, &old).is_some() {
                    return Err(Error::FeatureNotSupported(format!(
                        "column \"{old}\" has an hnsw index: drop it, rename, create it again"
                    )));
                }
                new.columns[position].name = renamed;
            }
            AlterTableOperation::RenameTable { table_name } => {
                let (RenameTableNameKind::As(target) | RenameTableNameKind::To(target)) =
                    table_name;
                new.name = names::table_name(&target)?;
                if self.schema_has_relation(&new.name) {
                    return Err(Error::DuplicateTable(new.name));
                }
            }
            AlterTableOperation::AddConstraint {
                constraint: TableConstraint::Unique(unique),
                ..
            } => {
                let columns = unique_columns(&unique)?;
                let index = match &unique.name {
                    Some(constraint) => names::ident(constraint),
                    None => unique_index_name(name, &columns),
                };
                if self.schema_has_relation(&index) {
                    return Err(Error::DuplicateTable(index));
                }
                let (catalog, table) = (self.catalog().clone(), name.to_string());
                crate::blocking::run("ALTER TABLE", move |stopped| {
                    stopped.check()?;
                    catalog.create_index(&table, &index, &columns, true, false)
                })
                .await?;
                return Ok(name.to_string());
            }
            AlterTableOperation::AddConstraint {
                constraint: TableConstraint::PrimaryKey(key),
                ..
            } => {
                if def.has_primary_key() {
                    return Err(Error::InvalidTableDefinition(format!(
                        "multiple primary keys for table \"{name}\" are not allowed"
                    )));
                }
                if self
                    .indexes()
                    .list()
                    .iter()
                    .any(|i| i.def.table_id == def.id)
                {
                    return Err(Error::FeatureNotSupported(
                        "ADD PRIMARY KEY on a table with an hnsw index (its rows' keys change): \
                         drop the index first"
                            .into(),
                    ));
                }
                let key_names = (key.columns.iter())
                    .map(|column| match &column.column.expr {
                        datafusion::sql::sqlparser::ast::Expr::Identifier(ident) => {
                            Ok(names::ident(ident))
                        }
                        other => Err(Error::FeatureNotSupported(format!(
                            "a primary key over {other}"
                        ))),
                    })
                    .collect::<Result<Vec<_>>>()?;
                new.primary_key = primary_key_positions(&mut new.columns, &key_names)?;
                rewrite = Some(Box::new(|batch: &RecordBatch| Ok(batch.columns().to_vec())));
            }
            other => {
                return Err(Error::FeatureNotSupported(format!(
                    "ALTER TABLE … {other} is not supported"
                )));
            }
        }
        self.archives().check_alter(def, &new)?;
        let engine = self.clone();
        let renamed = (new.name != def.name).then(|| (def.name.clone(), new.name.clone()));
        let new_name = new.name.clone();
        crate::blocking::run("ALTER TABLE", move |stopped| {
            stopped.check()?;
            let convert: Option<Convert> = rewrite.as_deref().map(|f| f as Convert);
            engine.catalog().alter(&stored, new, convert)
        })
        .await?;
        if let Some((from, to)) = renamed {
            self.users()
                .grants()
                .renamed(&Object::table(from), Object::table(to))?;
        }
        Ok(new_name)
    }

    /// The value of the default expression `sql`, as `data_type`.
    async fn default_value(&self, sql: &str, column_type: ColumnType) -> Result<ScalarValue> {
        let query = match column_type {
            ColumnType::Vector(_) => format!("SELECT ({sql}) AS v"),
            other => format!("SELECT CAST(({sql}) AS {}) AS v", other.sql_name()),
        };
        let batches = Box::pin(self.sql(&query)).await?;
        let batch = batches
            .first()
            .ok_or_else(|| Error::Internal("a default without a value".into()))?;
        Ok(ScalarValue::try_from_array(batch.column(0), 0)?)
    }

    /// Refuses to drop column `position` of `def` when a primary key or an hnsw index needs it.
    fn check_droppable(&self, def: &TableDef, position: usize) -> Result<()> {
        let column = &def.columns[position].name;
        if def.primary_key.contains(&position) {
            return Err(Error::FeatureNotSupported(format!(
                "column \"{column}\" is part of the primary key of \"{}\"",
                def.name
            )));
        }
        if def.retention.as_ref().is_some_and(|r| r.column == position) {
            return Err(Error::DependentObjects(format!(
                "cannot drop column \"{column}\": the table's ttl is measured by it \
                 (ALTER TABLE {} RESET (ttl) first)",
                def.name
            )));
        }
        if let Some(index) = self.indexes().for_column(def, column) {
            return Err(Error::DependentObjects(format!(
                "cannot drop column \"{column}\": index \"{}\" depends on it (DROP INDEX it first)",
                index.name
            )));
        }
        Ok(())
    }

    /// Whether a relation (table, view, index) is called `name`.
    pub(super) fn schema_has_relation(&self, name: &str) -> bool {
        self.is_user_table(name)
            || self.catalog().index_table(name).is_some()
            || self.indexes().get(name).is_some()
    }
}

/// `def` with only the columns `keep` (in order): positions of the key and of the secondary
/// indexes follow their columns; an index over a dropped column goes with it, as in PostgreSQL.
fn without_columns(def: &TableDef, keep: &[usize]) -> TableDef {
    let moved = |old: usize| keep.iter().position(|&k| k == old);
    let mut new = def.clone();
    new.columns = keep.iter().map(|&i| def.columns[i].clone()).collect();
    new.primary_key = def.primary_key.iter().filter_map(|&i| moved(i)).collect();
    new.indexes = (def.indexes.iter())
        .filter_map(|index| {
            let columns = index
                .columns
                .iter()
                .map(|&i| moved(i))
                .collect::<Option<Vec<_>>>()?;
            Some(crate::schema::SecondaryIndex {
                columns,
                ..index.clone()
            })
        })
        .collect();
    new.retention = (def.retention.as_ref()).and_then(|r| {
        Some(crate::schema::Retention {
            column: moved(r.column)?,
            ..r.clone()
        })
    });
    new
}
