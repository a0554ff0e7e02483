//! Where a plan runs: on the cluster when it reads archives (`archive('t')`, Parquet files the
//! cluster can read too) and nothing else, with DataFusion's own functions only; here
//! otherwise, with the reason.

use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::listing::ListingTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::expr::WindowFunctionDefinition;
use datafusion::logical_expr::{Expr, LogicalPlan};
use std::any::Any;
use std::sync::LazyLock;

/// Where a plan runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// On the cluster.
    Cluster,
    /// Here, for this reason.
    Local(String),
}

/// Where `plan` runs when a cluster is set.
pub fn placement(plan: &LogicalPlan) -> Placement {
    let mut archives = 0;
    let mut reason: Option<String> = None;
    let _ = plan.apply_with_subqueries(|node| {
        reason = match node {
            LogicalPlan::TableScan(scan) => match source_as_provider(&scan.source) {
                Ok(provider) if provider.is::<ListingTable>() => {
                    archives += 1;
                    None
                }
                _ => Some(format!(
                    "it reads {}, which is stored here",
                    scan.table_name
                )),
            },
            LogicalPlan::Dml(_) | LogicalPlan::Ddl(_) | LogicalPlan::Copy(_) => {
                Some("it writes".into())
            }
            LogicalPlan::Extension(_) | LogicalPlan::Statement(_) => {
                Some("it is not a query".into())
            }
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => Some("it is an EXPLAIN".into()),
            other => foreign_function(other),
        };
        Ok(match reason {
            Some(_) => TreeNodeRecursion::Stop,
            None => TreeNodeRecursion::Continue,
        })
    });
    match reason {
        Some(reason) => Placement::Local(reason),
        None if archives == 0 => Placement::Local("it reads no archive".into()),
        None => Placement::Cluster,
    }
}

/// The reason `node` runs here when one of its expressions calls a function the cluster does
/// not have: anything but DataFusion's own.
fn foreign_function(node: &LogicalPlan) -> Option<String> {
    let mut found = None;
    let _ = node.apply_expressions(|expr| {
        expr.apply(|expr| {
            let (name, ours) = match expr {
                Expr::ScalarFunction(call) => (
                    call.func.name(),
                    BUILT_IN
                        .scalar_functions()
                        .get(call.func.name())
                        .map(|f| same_kind(&**f.inner(), &**call.func.inner())),
                ),
                Expr::AggregateFunction(call) => (
                    call.func.name(),
                    BUILT_IN
                        .aggregate_functions()
                        .get(call.func.name())
                        .map(|f| same_kind(&**f.inner(), &**call.func.inner())),
                ),
                Expr::WindowFunction(call) => match &call.fun {
                    WindowFunctionDefinition::AggregateUDF(f) => (
                        f.name(),
                        BUILT_IN
                            .aggregate_functions()
                            .get(f.name())
                            .map(|built_in| same_kind(&**built_in.inner(), &**f.inner())),
                    ),
                    WindowFunctionDefinition::WindowUDF(f) => (
                        f.name(),
                        BUILT_IN
                            .window_functions()
                            .get(f.name())
                            .map(|built_in| same_kind(&**built_in.inner(), &**f.inner())),
                    ),
                },
                _ => return Ok(TreeNodeRecursion::Continue),
            };
            if ours != Some(true) {
                found = Some(format!("it calls {name}(), which only this server has"));
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })
    });
    found
}

/// Whether two functions are the same implementation (a function of ours may have a name of
/// DataFusion's).
fn same_kind(a: &dyn Any, b: &dyn Any) -> bool {
    a.type_id() == b.type_id()
}

/// DataFusion's own functions: what every Ballista executor has.
static BUILT_IN: LazyLock<SessionState> =
    LazyLock::new(|| SessionStateBuilder::new().with_default_features().build());
