//! The arguments of TasteDB's table functions (`recommend`, `similar_items`, `nearest`,
//! `online_features`, `historical_features`), read one way for all of them: a constant (a
//! literal, a cast, `[…]` or `ARRAY[…]`, folded), a `$n` parameter bound when a prepared
//! statement executes, or an expression that is constant once its parameters are bound
//! (`'u' || $1`, `$2 * 2`, `$1::bigint`), folded then.
//!
//! DataFusion binds parameter values into expressions of the plan, but a table function's
//! arguments live inside its provider, where binding cannot reach; a bound statement therefore
//! runs inside [`with_parameters`], and a table reads its parameters from there.

use crate::error::{Error, Result};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Cast, Expr, TryCast};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use std::future::Future;

tokio::task_local! {
    static PARAMETERS: ParamValues;
}

/// Runs `future` with `values` bound to the `$n` parameters of the table functions it plans
/// and runs.
pub async fn with_parameters<F: Future>(values: ParamValues, future: F) -> F::Output {
    PARAMETERS.scope(values, future).await
}

/// An argument: a constant, or a `$n` parameter bound at execution.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A constant.
    Value(ScalarValue),
    /// The parameter `$n`.
    Parameter(String),
    /// An expression of parameters and constants, folded once they are bound.
    Expression(Expr),
}

impl Arg {
    /// The argument `expr` of `function`; columns and what is not constant once parameters
    /// are bound are refused (0A000).
    pub fn from_expr(function: &str, expr: &Expr) -> Result<Arg> {
        match expr {
            Expr::Placeholder(p) => Ok(Arg::Parameter(p.id.clone())),
            other if has_placeholders(other) && other.column_refs().is_empty() => {
                Ok(Arg::Expression(other.clone()))
            }
            other => constant(function, other).map(Arg::Value).map_err(|_| {
                Error::FeatureNotSupported(format!(
                    "{function}() takes constants or parameters, not {other}"
                ))
            }),
        }
    }

    /// The types its parameters take: `type` for a parameter alone; in an expression, the
    /// type it is cast to (`$1::text`, as PostgreSQL types it) or of the constant it is
    /// combined with (`'u' || $1`: text, `$2 * 2`: bigint).
    pub fn parameter_types(&self, alone: DataType) -> Vec<(String, DataType)> {
        match self {
            Arg::Value(_) => Vec::new(),
            Arg::Parameter(id) => vec![(id.clone(), alone)],
            Arg::Expression(expr) => {
                let mut types = Vec::new();
                let _ = expr.apply(|e| {
                    match e {
                        Expr::BinaryExpr(binary) => match (&*binary.left, &*binary.right) {
                            (Expr::Placeholder(p), Expr::Literal(v, _))
                            | (Expr::Literal(v, _), Expr::Placeholder(p)) => {
                                types.push((p.id.clone(), v.data_type()));
                            }
                            _ => {}
                        },
                        Expr::Cast(Cast { expr, field })
                        | Expr::TryCast(TryCast { expr, field }) => {
                            if let Expr::Placeholder(p) = expr.as_ref() {
                                types.push((p.id.clone(), field.data_type().clone()));
                            }
                        }
                        _ => {}
                    }
                    Ok(TreeNodeRecursion::Continue)
                });
                types
            }
        }
    }

    /// The value: the constant, or the parameter's bound value.
    pub fn resolve(&self, function: &str) -> Result<ScalarValue> {
        match self {
            Arg::Value(value) => Ok(value.clone()),
            Arg::Parameter(id) => bound(function, id),
            Arg::Expression(expr) => {
                let with_values = expr
                    .clone()
                    .transform(|e| match e {
                        Expr::Placeholder(p) => {
                            let value = bound(function, &p.id).map_err(Error::into_datafusion)?;
                            Ok(Transformed::yes(Expr::Literal(value, None)))
                        }
                        other => Ok(Transformed::no(other)),
                    })?
                    .data;
                constant(function, &with_values)
            }
        }
    }
}

/// The value bound to the parameter `id`.
fn bound(function: &str, id: &str) -> Result<ScalarValue> {
    PARAMETERS
        .try_with(|values| values.get_placeholders_with_values(id))
        .map_err(|_| Error::InvalidParameter(format!("{function}(): no value bound for {id}")))?
        .map(|bound| bound.value)
        .map_err(Error::from)
}

fn has_placeholders(expr: &Expr) -> bool {
    let mut found = false;
    let _ = expr.apply(|e| {
        found |= matches!(e, Expr::Placeholder(_));
        Ok(match found {
            true => TreeNodeRecursion::Stop,
            false => TreeNodeRecursion::Continue,
        })
    });
    found
}

impl Arg {
    /// True when it is a constant known before execution.
    pub fn is_constant(&self) -> bool {
        matches!(self, Arg::Value(_))
    }
}

/// The value of the constant argument `expr` of `function` (literals, casts, `[…]` and
/// `ARRAY[…]`, folded); anything else is 22023.
pub fn constant(function: &str, expr: &Expr) -> Result<ScalarValue> {
    let simplifier = ExprSimplifier::new(SimplifyContext::default());
    let empty = datafusion::common::DFSchema::empty();
    // coerced first, as the planner would: `'u' || 5` concatenates text
    let coerced = simplifier.coerce(expr.clone(), &empty)?;
    match simplifier.simplify(coerced)? {
        Expr::Literal(value, _) => Ok(value),
        other => Err(Error::InvalidParameter(format!(
            "{function}() takes constant arguments, not {other}"
        ))),
    }
}

/// The text of `value` (the argument `what` of `function`): a string, or an integer written
/// as text; NULL is 22023, other types 42804.
pub fn text(function: &str, what: &str, value: &ScalarValue) -> Result<String> {
    if value.is_null() {
        return Err(Error::InvalidParameter(format!(
            "{function}(): {what} is NULL"
        )));
    }
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Ok(s.clone()),
        v if v.data_type().is_integer() => Ok(v.to_string()),
        other => Err(Error::DatatypeMismatch(format!(
            "{function}(): {what} must be text or an integer, not {}",
            other.data_type()
        ))),
    }
}

/// `value` as an integer, or `None` when it is not one.
pub fn integer(value: &ScalarValue) -> Option<i64> {
    match value.cast_to(&DataType::Int64) {
        Ok(ScalarValue::Int64(Some(n))) => Some(n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::expr::Placeholder;
    use datafusion::logical_expr::{BinaryExpr, Operator, lit};

    fn placeholder(id: &str) -> Expr {
        Expr::Placeholder(Placeholder::new_with_field(id.into(), None))
    }

    #[tokio::test]
    async fn expressions_of_parameters_fold_once_bound() {
        let concat = Expr::BinaryExpr(BinaryExpr::new(
            Box::new(lit("u")),
            Operator::StringConcat,
            Box::new(placeholder("$1")),
        ));
        let doubled = Expr::BinaryExpr(BinaryExpr::new(
            Box::new(placeholder("$2")),
            Operator::Multiply,
            Box::new(lit(2i64)),
        ));
        let (user, k) = (
            Arg::from_expr("recommend", &concat).unwrap(),
            Arg::from_expr("recommend", &doubled).unwrap(),
        );
        assert_eq!(
            user.parameter_types(DataType::Int64),
            [("$1".into(), DataType::Utf8)]
        );
        assert_eq!(
            k.parameter_types(DataType::Int64),
            [("$2".into(), DataType::Int64)]
        );
        // a cast types its parameter, as PostgreSQL's `$1::text` does
        let cast = Expr::Cast(Cast::new(Box::new(placeholder("$3")), DataType::Utf8));
        assert_eq!(
            (Arg::from_expr("recommend", &cast).unwrap()).parameter_types(DataType::Int64),
            [("$3".into(), DataType::Utf8)]
        );
        let values = ParamValues::List(vec![
            ScalarValue::Utf8(Some("42".into())).into(),
            ScalarValue::Int64(Some(5)).into(),
        ]);
        let (user, k) = with_parameters(values, async {
            (user.resolve("recommend"), k.resolve("recommend"))
        })
        .await;
        assert_eq!(user.unwrap(), ScalarValue::Utf8(Some("u42".into())));
        assert_eq!(k.unwrap(), ScalarValue::Int64(Some(10)));
        // a column is never an argument
        let column = Expr::Column("user_id".into());
        assert!(Arg::from_expr("recommend", &column).is_err());
    }
}
