//! The roles as Postgres clients read them: datafusion-pg-catalog's context provider (its
//! `pg_roles` is `owners`'s now), `pg_user`, `has_table_privilege(role, table, privilege)`, and the
//! session's own name wherever a statement says `current_user`, `session_user`, `user` or
//! `current_role`.

use crate::catalog::TasteSchema;
use crate::catalog::system_tables::{self, SystemTables};
use crate::error::{Error, Result};
use crate::roles::grants::{Object, Privilege};
use crate::roles::privileges::PREDEFINED_ROLES;
use crate::roles::users::{StoredUser, Users};
use crate::sql::names;
use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Int32Array, ListBuilder, RecordBatch,
    StringArray, StringBuilder, new_null_array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Statement, Value,
    visit_expressions_mut,
};
use datafusion_pg_catalog::pg_catalog::context::{PgCatalogContextProvider, Role};
use std::ops::ControlFlow;
use std::sync::Arc;

/// `pg_roles` rows from the stored roles and the predefined ones.
#[derive(Debug, Clone)]
pub struct RoleCatalog(pub Users);

#[async_trait]
impl PgCatalogContextProvider for RoleCatalog {
    async fn roles(&self) -> Vec<String> {
        let mut names = self.0.names().unwrap_or_default();
        names.extend(PREDEFINED_ROLES.iter().map(|r| r.to_string()));
        names
    }

    async fn role(&self, name: &str) -> Option<Role> {
        // datafusion-pg-catalog expects a role for every name it listed, even one dropped
        // since: that one shows without attributes.
        let stored = self.0.get(name).ok().flatten().unwrap_or_default();
        Some(Role {
            name: name.to_string(),
            is_superuser: stored.attributes.superuser,
            can_login: stored.attributes.login,
            can_create_db: false,
            can_create_role: stored.attributes.createrole,
            can_create_user: stored.attributes.createrole,
            can_replication: false,
            grants: Vec::new(),
            inherited_roles: stored.member_of.into_iter().collect(),
        })
    }
}

impl SystemTables for RoleCatalog {
    fn names(&self) -> &'static [&'static str] {
        &["pg_user"]
    }

    /// `pg_user`: the roles that may log in, as PostgreSQL's view shows them.
    fn rows(&self, name: &str) -> Option<Result<RecordBatch>> {
        (name == "pg_user").then(|| self.pg_user())
    }
}

impl RoleCatalog {
    fn pg_user(&self) -> Result<RecordBatch> {
        let users: Vec<(String, StoredUser)> = self
            .0
            .names()?
            .into_iter()
            .filter_map(|name| Some((name.clone(), self.0.get(&name).ok()??)))
            .filter(|(_, user)| user.attributes.login)
            .collect();
        let rows = users.len();
        let flag = |f: &dyn Fn(&StoredUser) -> bool| -> ArrayRef {
            Arc::new(BooleanArray::from_iter(
                users.iter().map(|(_, u)| Some(f(u))),
            ))
        };
        let mut config = ListBuilder::new(StringBuilder::new());
        for (_, user) in &users {
            for (name, value) in &user.config {
                config.values().append_value(format!("{name}={value}"));
            }
            config.append(!user.config.is_empty());
        }
        let fields = vec![
            Field::new("usename", DataType::Utf8, false),
            Field::new("usesysid", DataType::Int32, false),
            Field::new("usecreatedb", DataType::Boolean, false),
            Field::new("usesuper", DataType::Boolean, false),
            Field::new("userepl", DataType::Boolean, false),
            Field::new("usebypassrls", DataType::Boolean, false),
            Field::new("passwd", DataType::Utf8, false),
            Field::new("valuntil", system_tables::timestamp_type(), true),
            Field::new(
                "useconfig",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ];
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(users.iter().map(|(n, _)| n))),
            Arc::new(Int32Array::from_iter_values(
                users.iter().map(|(n, _)| crate::roles::role_oid(n)),
            )),
            flag(&|_| false),
            flag(&|u| u.attributes.superuser),
            flag(&|_| false),
            flag(&|_| false),
            Arc::new(StringArray::from(vec!["********"; rows])),
            new_null_array(&system_tables::timestamp_type(), rows),
            Arc::new(config.finish()),
        ];
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }
}

/// `has_table_privilege(role, table, privilege)`: whether `role` holds the privilege (or,
/// for a comma-separated list, any of them) on the table, as the privilege checks see it.
/// The two-argument form (no role) is what a statement of the embedding program sees: true.
#[derive(Debug)]
pub struct HasTablePrivilege {
    users: Users,
    tables: Arc<TasteSchema>,
    signature: Signature,
}

impl HasTablePrivilege {
    /// The function over `users`, for the tables of `tables`.
    pub fn new(users: Users, tables: Arc<TasteSchema>) -> Self {
        HasTablePrivilege {
            users,
            tables,
            signature: Signature::one_of(
                vec![TypeSignature::Any(2), TypeSignature::Any(3)],
                Volatility::Stable,
            ),
        }
    }

    fn holds(&self, role: Option<&str>, table: &str, privileges: &str) -> Result<bool> {
        let name = relation_name(table);
        let table = match name.as_slice() {
            [table] => table,
            [schema, table] if schema == names::SCHEMA => table,
            _ => return Err(Error::UndefinedTable(table.to_string())),
        };
        if !self.tables.is_user_table(table) {
            return Err(Error::UndefinedTable(table.to_string()));
        }
        let Some(role) = role else { return Ok(true) };
        if self.users.get(role)?.is_none() {
            return Err(Error::UndefinedObject(format!(
                "role \"{role}\" does not exist"
            )));
        }
        let object = Object::table(table);
        for word in privileges.split(',') {
            let word = word.trim().trim_end_matches("WITH GRANT OPTION").trim();
            let privilege = Privilege::parse(word).ok_or_else(|| {
                Error::InvalidParameter(format!("unrecognized privilege type: \"{word}\""))
            })?;
            if self.users.has_privilege(role, &object, privilege) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The parts of a relation name as PostgreSQL reads it: `"Public"."t"` keeps the quoted parts
/// as written and folds the others to lower case.
fn relation_name(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.trim().chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                current.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            ('.', false) => parts.push(std::mem::take(&mut current)),
            (c, true) => current.push(c),
            (c, false) => current.extend(c.to_lowercase()),
        }
    }
    parts.push(current);
    parts
}

impl PartialEq for HasTablePrivilege {
    fn eq(&self, other: &Self) -> bool {
        self.signature == other.signature
    }
}
impl Eq for HasTablePrivilege {}
impl std::hash::Hash for HasTablePrivilege {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.signature.hash(state)
    }
}

impl ScalarUDFImpl for HasTablePrivilege {
    fn name(&self) -> &str {
        "has_table_privilege"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let rows = args.number_rows;
        let texts = args
            .args
            .iter()
            .map(|a| Ok(cast(&a.to_array(rows)?, &DataType::Utf8)?))
            .collect::<datafusion::common::Result<Vec<ArrayRef>>>()?;
        let texts: Vec<_> = texts.iter().map(|a| a.as_string::<i32>()).collect();
        let mut out = BooleanBuilder::with_capacity(rows);
        for row in 0..rows {
            if texts.iter().any(|t| t.is_null(row)) {
                out.append_null();
                continue;
            }
            let held = match texts.as_slice() {
                [role, table, privilege] => self.holds(
                    Some(role.value(row)),
                    table.value(row),
                    privilege.value(row),
                ),
                [table, privilege] => self.holds(None, table.value(row), privilege.value(row)),
                _ => Ok(false),
            };
            out.append_value(held.map_err(Error::into_datafusion)?);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// Writes the session's role into `statement`: `current_user` and its synonyms become the
/// role's name, and `has_table_privilege(table, privilege)` asks about the role.
pub fn personalize(statement: &mut Statement, role: &str) {
    let literal = || Expr::value(Value::SingleQuotedString(role.to_string()));
    let _ = visit_expressions_mut(statement, |expr| {
        match expr {
            // unquoted, these are the role's name in PostgreSQL, not columns
            Expr::Identifier(Ident {
                value,
                quote_style: None,
                ..
            }) if ["current_user", "session_user", "current_role", "user"]
                .contains(&value.to_lowercase().as_str()) =>
            {
                *expr = literal();
            }
            Expr::Function(function) => {
                let name = function.name.to_string().to_lowercase();
                let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
                match (&mut function.args, name) {
                    (
                        FunctionArguments::None,
                        "current_user" | "session_user" | "current_role" | "user",
                    ) => *expr = literal(),
                    (FunctionArguments::List(list), "has_table_privilege")
                        if list.args.len() == 2 =>
                    {
                        list.args
                            .insert(0, FunctionArg::Unnamed(FunctionArgExpr::Expr(literal())));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Registers `has_table_privilege` over `users` and the tables of `tables` on `ctx`.
pub fn register(ctx: &SessionContext, users: &Users, tables: Arc<TasteSchema>) {
    ctx.register_udf(ScalarUDF::from(HasTablePrivilege::new(
        users.clone(),
        tables,
    )));
}

#[cfg(test)]
mod tests {
    #[test]
    fn relation_names_read_as_postgres_reads_them() {
        assert_eq!(
            super::relation_name(r#""public"."Games""x""#),
            ["public", "Games\"x"]
        );
        assert_eq!(super::relation_name("Public.T"), ["public", "t"]);
    }
}
