//! `a IS [NOT] DISTINCT FROM b AND c` as PostgreSQL reads it: `(a IS DISTINCT FROM b) AND c`.
//! sqlparser parses a whole expression after `DISTINCT FROM`, so it builds
//! `a IS DISTINCT FROM (b AND c OR …)`, swallowing the rest of the AND/OR chain; in
//! PostgreSQL IS binds tighter than AND and OR. Chains are regrouped from their operands in
//! text order: the comparison takes the first operand, AND binds tighter than OR, both group
//! from the left. Parentheses in the text (sqlparser's `Nested`) are kept as written.

use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, Statement, visit_expressions_mut};
use std::ops::ControlFlow;

/// Regroups every `IS [NOT] DISTINCT FROM` of `statement` and the chain it swallowed.
pub fn regroup_distinct_from(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        // children are visited first: a swallowed chain is already regrouped inside
        let regrouped = match &*expr {
            Expr::IsDistinctFrom(left, right) if is_chain(right) => {
                Some(with_first(right, |first| {
                    Expr::IsDistinctFrom(left.clone(), first)
                }))
            }
            Expr::IsNotDistinctFrom(left, right) if is_chain(right) => {
                Some(with_first(right, |first| {
                    Expr::IsNotDistinctFrom(left.clone(), first)
                }))
            }
            chain if is_chain(chain) && swallowed(chain) => rebuild(flatten(chain)),
            _ => None,
        };
        if let Some(regrouped) = regrouped {
            *expr = regrouped;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// A link of an AND/OR chain.
enum Link {
    Operand(Box<Expr>),
    Op(BinaryOperator),
}

fn is_chain(expr: &Expr) -> bool {
    matches!(
        expr,
        Expr::BinaryOp {
            op: BinaryOperator::And | BinaryOperator::Or,
            ..
        }
    )
}

/// Whether `chain` has a right operand that is itself a chain: a shape sqlparser builds only
/// from a swallowed chain (its own parse groups AND/OR from the left).
fn swallowed(chain: &Expr) -> bool {
    matches!(chain, Expr::BinaryOp { right, .. } if is_chain(right))
}

/// The chain's operands and operators in text order.
fn flatten(expr: &Expr) -> Vec<Link> {
    match expr {
        Expr::BinaryOp { left, op, right } if is_chain(expr) => {
            let mut links = flatten(left);
            links.push(Link::Op(op.clone()));
            links.extend(flatten(right));
            links
        }
        operand => vec![Link::Operand(Box::new(operand.clone()))],
    }
}

/// `chain` regrouped, with its first operand `x` replaced by `compare(x)`.
fn with_first(chain: &Expr, compare: impl FnOnce(Box<Expr>) -> Expr) -> Expr {
    let mut links = flatten(chain).into_iter();
    let first = match links.next() {
        Some(Link::Operand(first)) => Link::Operand(Box::new(compare(first))),
        Some(op) => op,
        None => return chain.clone(),
    };
    rebuild(std::iter::once(first).chain(links).collect()).unwrap_or_else(|| chain.clone())
}

/// The chain of `links` grouped by precedence: AND before OR, each from the left.
fn rebuild(links: Vec<Link>) -> Option<Expr> {
    let mut ors: Vec<Expr> = Vec::new();
    let mut and: Option<Expr> = None;
    for link in links {
        match link {
            Link::Operand(operand) => {
                and = Some(match and.take() {
                    None => *operand,
                    Some(left) => binary(left, BinaryOperator::And, *operand),
                });
            }
            Link::Op(BinaryOperator::Or) => ors.extend(and.take()),
            Link::Op(_) => {}
        }
    }
    ors.extend(and);
    let mut terms = ors.into_iter();
    let first = terms.next()?;
    Some(terms.fold(first, |left, right| binary(left, BinaryOperator::Or, right)))
}

fn binary(left: Expr, op: BinaryOperator, right: Expr) -> Expr {
    Expr::BinaryOp {
        left: Box::new(left),
        op,
        right: Box::new(right),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::{SelectItem, SetExpr};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    /// The first select item of `sql`, regrouped, with every AND/OR in parentheses.
    fn regrouped(sql: &str) -> String {
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        regroup_distinct_from(&mut statement);
        let Statement::Query(query) = statement else {
            panic!("a query")
        };
        let SetExpr::Select(select) = *query.body else {
            panic!("a select")
        };
        let SelectItem::UnnamedExpr(expr) = &select.projection[0] else {
            panic!("an expression")
        };
        show(expr)
    }

    fn show(expr: &Expr) -> String {
        match expr {
            Expr::BinaryOp { left, op, right } if is_chain(expr) => {
                format!("({} {op} {})", show(left), show(right))
            }
            Expr::IsDistinctFrom(a, b) => format!("[{} IDF {}]", show(a), show(b)),
            Expr::IsNotDistinctFrom(a, b) => format!("[{} INDF {}]", show(a), show(b)),
            other => other.to_string(),
        }
    }

    #[test]
    fn distinct_from_binds_tighter_than_and_and_or() {
        assert_eq!(
            regrouped("SELECT a IS NOT DISTINCT FROM b AND c IS DISTINCT FROM d OR e"),
            "(([a INDF b] AND [c IDF d]) OR e)"
        );
        assert_eq!(
            regrouped("SELECT x AND c IS DISTINCT FROM d OR e"),
            "((x AND [c IDF d]) OR e)"
        );
        assert_eq!(
            regrouped("SELECT a OR b AND c IS DISTINCT FROM d AND e"),
            "(a OR ((b AND [c IDF d]) AND e))"
        );
    }

    #[test]
    fn parentheses_and_plain_chains_are_kept() {
        assert_eq!(
            regrouped("SELECT a IS DISTINCT FROM (b AND c)"),
            "[a IDF (b AND c)]"
        );
        assert_eq!(regrouped("SELECT a AND (b OR c)"), "(a AND (b OR c))");
        assert_eq!(regrouped("SELECT a OR b AND c"), "(a OR (b AND c))");
    }
}
