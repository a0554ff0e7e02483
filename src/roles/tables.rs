//! The system tables of roles: `tastedb_roles` (each role's attributes and memberships) and
//! `tastedb_privileges` (each table, view, model and feature view with its owner and its
//! privileges in PostgreSQL's `aclitem` text), which psql's `\du` and `\dp` read.

use crate::catalog::TasteSchema;
use crate::catalog::system_tables::SystemTables;
use crate::error::Result;
use crate::roles::grants::{Object, ObjectKind};
use crate::roles::users::Users;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, ListBuilder, RecordBatch, StringArray, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use std::sync::{Arc, OnceLock, Weak};

/// The roles' system tables.
#[derive(Debug)]
pub struct RoleTables {
    users: Users,
    /// The schema whose tables are listed; set once the schema exists (it holds this).
    schema: OnceLock<Weak<TasteSchema>>,
}

impl RoleTables {
    /// The system tables of `users`; [`RoleTables::list_tables_of`] gives them the schema.
    pub fn new(users: Users) -> Self {
        RoleTables {
            users,
            schema: OnceLock::new(),
        }
    }

    /// Lists the tables of `schema` in `tastedb_privileges`.
    pub fn list_tables_of(&self, schema: &Arc<TasteSchema>) {
        let _ = self.schema.set(Arc::downgrade(schema));
    }

    fn roles(&self) -> Result<RecordBatch> {
        let names = self.users.names()?;
        let mut member_of = ListBuilder::new(StringBuilder::new());
        let mut superuser = Vec::new();
        let mut createrole = Vec::new();
        let mut login = Vec::new();
        for name in &names {
            let role = self.users.get(name)?.unwrap_or_default();
            for parent in &role.member_of {
                member_of.values().append_value(parent);
            }
            member_of.append(true);
            superuser.push(role.attributes.superuser);
            createrole.push(role.attributes.createrole);
            login.push(role.attributes.login);
        }
        let list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
        let schema = Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("superuser", DataType::Boolean, false),
            Field::new("createrole", DataType::Boolean, false),
            Field::new("login", DataType::Boolean, false),
            Field::new("member_of", list, false),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(names)),
            Arc::new(BooleanArray::from(superuser)),
            Arc::new(BooleanArray::from(createrole)),
            Arc::new(BooleanArray::from(login)),
            Arc::new(member_of.finish()),
        ];
        Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
    }

    fn privileges(&self) -> Result<RecordBatch> {
        let mut objects: Vec<(Object, &'static str)> = Vec::new();
        if let Some(schema) = self.schema.get().and_then(Weak::upgrade) {
            for name in schema.user_tables() {
                if let Some(kind) = schema.relation_type(&name) {
                    objects.push((Object::table(name), kind));
                }
            }
        }
        for (object, _) in self.users.grants().all() {
            if object.kind != ObjectKind::Table {
                let kind = object.kind.word();
                objects.push((object, kind));
            }
        }
        objects.sort();
        let (mut types, mut names, mut owners, mut acls) = (vec![], vec![], vec![], vec![]);
        for (object, kind) in objects {
            let acl = self.users.grants().acl(&object);
            let items = acl.items(object.kind);
            types.push(kind);
            owners.push(acl.owner.clone());
            acls.push((!acl.grants.is_empty()).then(|| items.join("\n")));
            names.push(object.name);
        }
        let schema = Schema::new(vec![
            Field::new("type", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("owner", DataType::Utf8, true),
            Field::new("access_privileges", DataType::Utf8, true),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(types)),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(owners)),
            Arc::new(StringArray::from(acls)),
        ];
        Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
    }
}

impl SystemTables for RoleTables {
    fn names(&self) -> &'static [&'static str] {
        &["tastedb_roles", "tastedb_privileges", "tastedb_api_keys"]
    }

    fn rows(&self, name: &str) -> Option<Result<RecordBatch>> {
        match name {
            "tastedb_roles" => Some(self.roles()),
            "tastedb_privileges" => Some(self.privileges()),
            "tastedb_api_keys" => Some(self.users.api_keys().rows()),
            _ => None,
        }
    }
}
