//! What a statement needs to be allowed to run ([`Access`]), found in its plan and text, and
//! the check of it against who runs it. A plan needs SELECT on each table or view it scans and
//! the write privilege of its INSERT/UPDATE/DELETE/TRUNCATE; what a view reads is checked as
//! the view's owner (PostgreSQL's rule); the objects functions read (a model for `recommend`,
//! a feature view, the table of `nearest`) are named by their first argument
//! ([`FUNCTION_OBJECTS`]), and the queries given to functions as arguments are plans like
//! any other.

use crate::catalog::StoredTableProvider;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::models::Pin;
use crate::roles::{Actor, Object, ObjectKind, Privilege, SIGNAL_BACKEND};
use crate::sql::names;
use datafusion::catalog::view::ViewTable;
use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{LogicalPlan, WriteOp};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName, TableFactor,
    Value, Visit, Visitor,
};
use std::ops::ControlFlow;

/// Refuses a `SET` of an engine setting (`datafusion.…`, `tastedb.…`) to anyone but a
/// superuser (42501, PostgreSQL's `permission denied to set parameter`): an engine setting is
/// the engine's for every session, as PostgreSQL's superuser-only parameters are the server's
/// (`tastedb.cluster` sends every session's plans to the cluster it names). The settings of a
/// connection (`statement_timeout`, `search_path`, …) are the session's and anyone's to set.
pub(crate) fn check_setting(plan: &LogicalPlan, superuser: bool) -> Result<()> {
    match plan {
        LogicalPlan::Statement(datafusion::logical_expr::Statement::SetVariable(set))
            if !superuser =>
        {
            Err(Error::InsufficientPrivilege(format!(
                "to set parameter \"{}\"",
                set.variable
            )))
        }
        _ => Ok(()),
    }
}

/// A function whose first argument names an object it reads.
#[derive(Debug, Clone, Copy)]
pub struct FunctionObject {
    /// The function's name (a table or scalar function).
    pub function: &'static str,
    /// The kind of object its first argument names.
    pub kind: ObjectKind,
}

/// Every function that reads an object named by its first argument, from the feature
/// folders' lists.
pub const FUNCTION_OBJECTS: &[&[FunctionObject]] = &[
    crate::models::FUNCTION_OBJECTS,
    crate::features::FUNCTION_OBJECTS,
    crate::vectors::FUNCTION_OBJECTS,
    crate::archive::FUNCTION_OBJECTS,
];

/// What a statement needs, to be checked each time it runs (a prepared statement is checked
/// at every execution, so that a REVOKE applies at once).
#[derive(Debug, Clone, Default)]
pub struct Access {
    needs: Vec<Need>,
}

#[derive(Debug, Clone, PartialEq)]
enum Need {
    /// `privilege` on `object`, held by the caller or, for what a view reads, by the owner of
    /// the view `through`.
    Privilege {
        object: Object,
        privilege: Privilege,
        through: Option<Object>,
    },
    /// Something only a superuser may do, and why.
    Superuser(String),
    /// Cancelling the statement of session `pid` (`pg_cancel_backend`): its own role, a
    /// member of `pg_signal_backend` for a role that is not a superuser, or a superuser.
    Cancel(i32),
}

impl Access {
    fn push(&mut self, need: Need) {
        if !self.needs.contains(&need) {
            self.needs.push(need);
        }
    }

    /// Adds that the caller needs `privilege` on `object`.
    pub fn require(&mut self, object: Object, privilege: Privilege) {
        self.push(Need::Privilege {
            object,
            privilege,
            through: None,
        });
    }

    /// Adds what `other` needs.
    pub fn extend(&mut self, other: Access) {
        for need in other.needs {
            self.push(need);
        }
    }
}

impl Engine {
    /// Ok when `actor` may do everything `access` lists; 42501 otherwise.
    pub fn check_access(&self, actor: &Actor, access: &Access) -> Result<()> {
        let users = self.users();
        if users.is_superuser(actor) {
            return Ok(());
        }
        for need in &access.needs {
            match need {
                Need::Privilege {
                    object,
                    privilege,
                    through: None,
                } => users.check(actor, &self.model_of(object), *privilege)?,
                Need::Privilege {
                    object,
                    privilege,
                    through: Some(view),
                } => {
                    let owner = match users.grants().acl(view).owner {
                        Some(owner) => Actor::Role(owner),
                        None => Actor::Embedder,
                    };
                    users.check(&owner, object, *privilege)?
                }
                Need::Superuser(what) => {
                    return Err(Error::InsufficientPrivilege(format!(
                        "{what}: only superusers may"
                    )));
                }
                Need::Cancel(pid) => self.check_cancel(actor, *pid)?,
            }
        }
        Ok(())
    }

    /// The object whose privileges a function's first argument needs: for a model argument,
    /// `model@alias` and an experiment's name stand for the model.
    fn model_of(&self, object: &Object) -> Object {
        if object.kind != ObjectKind::Model || self.models().contains(&object.name) {
            return object.clone();
        }
        let (model, _) = Pin::split(&object.name);
        match self.experiments().get(&object.name) {
            Some(experiment) if model == object.name => Object::model(experiment.model),
            _ => Object::model(model),
        }
    }

    fn check_cancel(&self, actor: &Actor, pid: i32) -> Result<()> {
        let Some(target) = self.activity().role_of(pid) else {
            return Ok(());
        };
        let users = self.users();
        let target_is_superuser = users.is_superuser(&Actor::Role(target.clone()));
        let allowed = *actor == Actor::Role(target)
            || (users.is_member(actor, SIGNAL_BACKEND) && !target_is_superuser);
        if allowed {
            return Ok(());
        }
        Err(Error::InsufficientPrivilege(format!(
            "to cancel query of process {pid}: only its own role, members of {SIGNAL_BACKEND} \
             (for roles that are not superusers) and superusers may"
        )))
    }

    /// What `plan` needs: SELECT on the tables and views it scans (what views read, as their
    /// owners), and the privilege of the write it makes.
    pub(crate) fn plan_access(&self, plan: &LogicalPlan) -> Result<Access> {
        let mut access = Access::default();
        self.collect_plan(plan, None, &mut access)?;
        Ok(access)
    }

    fn collect_plan(
        &self,
        plan: &LogicalPlan,
        through: Option<&Object>,
        access: &mut Access,
    ) -> Result<()> {
        let mut views = Vec::new();
        plan.apply_with_subqueries(|node| {
            match node {
                LogicalPlan::TableScan(scan) if scan.table_name.table() == "pg_stat_activity" => {
                    access.push(Need::Superuser("to read pg_stat_activity".into()));
                }
                LogicalPlan::TableScan(scan) => {
                    // `tastedb_row_keys('t')` reads `t` under the function's name
                    let stored = source_as_provider(&scan.source).ok().and_then(|p| {
                        let provider = p.downcast_ref::<StoredTableProvider>()?;
                        Some(Object::table(provider.table().def.name.clone()))
                    });
                    if let Some(object) = stored.or_else(|| self.user_table(&scan.table_name)) {
                        if let Ok(provider) = source_as_provider(&scan.source)
                            && let Some(view) = provider.downcast_ref::<ViewTable>()
                        {
                            views.push((object.clone(), view.logical_plan().clone()));
                        }
                        access.push(need(object, Privilege::Select, through));
                    }
                }
                LogicalPlan::Dml(dml) => {
                    if let Some(object) = self.user_table(&dml.table_name) {
                        access.push(need(object, write_privilege(&dml.op), through));
                    }
                }
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        for (view, plan) in views {
            self.collect_plan(&plan, Some(&view), access)?;
        }
        Ok(())
    }

    /// The user table (not a system table) `reference` names in TasteDB's schema.
    fn user_table(&self, reference: &TableReference) -> Option<Object> {
        let ours = reference.schema().is_none_or(|s| s == names::SCHEMA)
            && reference.catalog().is_none_or(|c| c == names::CATALOG);
        (ours && self.schema().is_user_table(reference.table()))
            .then(|| Object::table(reference.table()))
    }

    /// Whether `name` is a table, view or external table users made.
    pub fn is_user_table(&self, name: &str) -> bool {
        self.schema().is_user_table(name)
    }
}

fn need(object: Object, privilege: Privilege, through: Option<&Object>) -> Need {
    Need::Privilege {
        object,
        privilege,
        through: through.cloned(),
    }
}

fn write_privilege(op: &WriteOp) -> Privilege {
    match op {
        WriteOp::Update => Privilege::Update,
        WriteOp::Delete => Privilege::Delete,
        WriteOp::Truncate => Privilege::Truncate,
        _ => Privilege::Insert,
    }
}

/// What the functions `statement` calls read: SELECT on the object each names by its first
/// argument; a name that is not a constant needs a superuser.
pub(crate) fn function_access(statement: &DFStatement) -> Access {
    let mut finder = FunctionFinder::default();
    if let DFStatement::Statement(sql) = statement {
        let _ = sql.visit(&mut finder);
    }
    finder.access
}

#[derive(Default)]
struct FunctionFinder {
    access: Access,
}

impl FunctionFinder {
    fn found(&mut self, name: &ObjectName, args: &[FunctionArg]) {
        let function = name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .map(|ident| ident.value.to_lowercase())
            .unwrap_or_default();
        let Some(reads) = FUNCTION_OBJECTS
            .iter()
            .flat_map(|list| list.iter())
            .find(|f| f.function == function)
        else {
            return;
        };
        let named = match args.first() {
            Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(value)))) => {
                match &value.value {
                    Value::SingleQuotedString(name) => Some(name.clone()),
                    _ => None,
                }
            }
            _ => None,
        };
        self.access.push(match named {
            Some(name) => Need::Privilege {
                object: Object {
                    kind: reads.kind,
                    name,
                },
                privilege: Privilege::Select,
                through: None,
            },
            None => Need::Superuser(format!(
                "to call {function}() with a {} name that is not a constant",
                reads.kind.word()
            )),
        });
    }
}

impl Visitor for FunctionFinder {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            args: Some(args),
            ..
        } = factor
        {
            self.found(name, &args.args);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &SqlExpr) -> ControlFlow<()> {
        if let SqlExpr::Function(function) = expr
            && let FunctionArguments::List(list) = &function.args
        {
            if function
                .name
                .to_string()
                .to_lowercase()
                .ends_with("pg_cancel_backend")
            {
                self.access.push(match list.args.first() {
                    Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(value)))) => {
                        match &value.value {
                            Value::Number(pid, _) => match pid.parse() {
                                Ok(pid) => Need::Cancel(pid),
                                Err(_) => Need::Superuser("to cancel that process".into()),
                            },
                            _ => Need::Superuser("to cancel a process not named by number".into()),
                        }
                    }
                    _ => Need::Superuser("to cancel a process not named by number".into()),
                });
            }
            self.found(&function.name, &list.args);
        }
        ControlFlow::Continue(())
    }
}
