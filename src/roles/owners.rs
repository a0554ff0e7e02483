//! Roles by OID, as catalog queries join them: `pg_roles` with an OID per role (the same in
//! every query and after a restart), `pg_get_userbyid(oid)`, and each table's owner for
//! `pg_class.relowner` — so psql's `\dt` and `\di` show who owns what. datafusion-pg-catalog
//! gives every role OID 0 and answers `postgres` for any OID.

use crate::catalog::pg_indexes::{RelationOwners, stable_oid};
use crate::catalog::system_tables::{self, SystemTables};
use crate::error::Result;
use crate::roles::grants::Object;
use crate::roles::privileges::PREDEFINED_ROLES;
use crate::roles::users::{StoredUser, Users};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, ListBuilder, RecordBatch, StringArray,
    StringBuilder, new_null_array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use std::sync::Arc;

/// The OID of the role `name`.
pub fn role_oid(name: &str) -> i32 {
    stable_oid(&["role", name])
}

/// `pg_roles` and the owners of tables, over the stored roles.
#[derive(Debug, Clone)]
pub struct RoleOids(pub Users);

impl RoleOids {
    /// Every role: the stored ones and the predefined ones (which are not stored).
    fn roles(&self) -> Result<Vec<(String, Option<StoredUser>)>> {
        let mut roles: Vec<(String, Option<StoredUser>)> = (self.0.names()?.into_iter())
            .map(|name| {
                let stored = self.0.get(&name).ok().flatten();
                (name, stored)
            })
            .collect();
        roles.extend(PREDEFINED_ROLES.iter().map(|r| (r.to_string(), None)));
        Ok(roles)
    }

    /// The superuser that owns what the embedding program made: the first by name.
    fn first_superuser(&self) -> Option<String> {
        let roles = self.roles().ok()?;
        roles
            .into_iter()
            .find(|(_, stored)| stored.as_ref().is_some_and(|s| s.attributes.superuser))
            .map(|(name, _)| name)
    }

    /// `pg_roles`, PostgreSQL 15's columns.
    fn pg_roles(&self) -> Result<RecordBatch> {
        let roles = self.roles()?;
        let rows = roles.len();
        let flag = |f: &dyn Fn(&StoredUser) -> bool| -> ArrayRef {
            Arc::new(BooleanArray::from_iter(
                roles.iter().map(|(_, u)| Some(u.as_ref().is_some_and(f))),
            ))
        };
        let mut config = ListBuilder::new(StringBuilder::new());
        for (_, user) in &roles {
            let settings = user.as_ref().map(|u| u.config.clone()).unwrap_or_default();
            for (name, value) in &settings {
                config.values().append_value(format!("{name}={value}"));
            }
            config.append(!settings.is_empty());
        }
        let text_list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
        let fields = vec![
            Field::new("rolname", DataType::Utf8, false),
            Field::new("rolsuper", DataType::Boolean, false),
            Field::new("rolinherit", DataType::Boolean, false),
            Field::new("rolcreaterole", DataType::Boolean, false),
            Field::new("rolcreatedb", DataType::Boolean, false),
            Field::new("rolcanlogin", DataType::Boolean, false),
            Field::new("rolreplication", DataType::Boolean, false),
            Field::new("rolconnlimit", DataType::Int32, false),
            Field::new("rolpassword", DataType::Utf8, false),
            Field::new("rolvaliduntil", system_tables::timestamp_type(), true),
            Field::new("rolbypassrls", DataType::Boolean, false),
            Field::new("rolconfig", text_list, true),
            Field::new("oid", DataType::Int32, false),
        ];
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(roles.iter().map(|(n, _)| n))),
            flag(&|u| u.attributes.superuser),
            Arc::new(BooleanArray::from(vec![true; rows])),
            flag(&|u| u.attributes.createrole),
            flag(&|_| false),
            flag(&|u| u.attributes.login),
            flag(&|_| false),
            Arc::new(Int32Array::from(vec![-1; rows])),
            Arc::new(StringArray::from(vec!["********"; rows])),
            new_null_array(&system_tables::timestamp_type(), rows),
            flag(&|_| false),
            Arc::new(config.finish()),
            Arc::new(Int32Array::from_iter_values(
                roles.iter().map(|(n, _)| role_oid(n)),
            )),
        ];
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }

    /// `pg_get_userbyid(oid)`.
    pub fn get_userbyid(&self) -> ScalarUDF {
        ScalarUDF::new_from_impl(GetUserById {
            roles: self.clone(),
            signature: Signature::any(1, Volatility::Stable),
        })
    }
}

impl SystemTables for RoleOids {
    fn names(&self) -> &'static [&'static str] {
        &["pg_roles"]
    }

    fn rows(&self, name: &str) -> Option<Result<RecordBatch>> {
        (name == "pg_roles").then(|| self.pg_roles())
    }
}

impl RelationOwners for RoleOids {
    fn owner_oid(&self, table: &str) -> Option<i32> {
        let owner = self.0.grants().acl(&Object::table(table)).owner;
        owner.map(|o| role_oid(&o))
    }

    fn default_owner_oid(&self) -> Option<i32> {
        self.first_superuser().map(|o| role_oid(&o))
    }
}

/// `pg_get_userbyid(oid)`: the role's name, or PostgreSQL's `unknown (OID=n)`.
#[derive(Debug)]
struct GetUserById {
    roles: RoleOids,
    signature: Signature,
}

impl PartialEq for GetUserById {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for GetUserById {}
impl std::hash::Hash for GetUserById {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "pg_get_userbyid".hash(state)
    }
}

impl ScalarUDFImpl for GetUserById {
    fn name(&self) -> &str {
        "pg_get_userbyid"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let oids = cast(&args.args[0].to_array(args.number_rows)?, &DataType::Int64)?;
        let oids = oids.as_primitive::<Int64Type>();
        let names: Vec<(i32, String)> = (self.roles.roles())
            .map_err(crate::error::Error::into_datafusion)?
            .into_iter()
            .map(|(name, _)| (role_oid(&name), name))
            .collect();
        let answer: StringArray = (0..oids.len())
            .map(|i| {
                (!oids.is_null(i)).then(|| {
                    let oid = oids.value(i);
                    names
                        .iter()
                        .find(|(o, _)| i64::from(*o) == oid)
                        .map(|(_, name)| name.clone())
                        .unwrap_or_else(|| format!("unknown (OID={oid})"))
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(answer)))
    }
}
