//! The arguments of TasteDB's table functions (`recommend`, `similar_items`, `nearest`,
//! `online_features`, `historical_features`), read one way for all of them: a constant (a
//! literal, a cast, `[…]` or `ARRAY[…]`, folded), or a `$n` parameter bound when a prepared
//! statement executes.
//!
//! DataFusion binds parameter values into expressions of the plan, but a table function's
//! arguments live inside its provider, where binding cannot reach; a bound statement therefore
//! runs inside [`with_parameters`], and a table reads its parameters from there.

use crate::error::{Error, Result};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::simplify::SimplifyContext;
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
}

impl Arg {
    /// The argument `expr` of `function`; columns and other expressions are refused (0A000).
    pub fn from_expr(function: &str, expr: &Expr) -> Result<Arg> {
        match expr {
            Expr::Placeholder(p) => Ok(Arg::Parameter(p.id.clone())),
            other => constant(function, other).map(Arg::Value).map_err(|_| {
                Error::FeatureNotSupported(format!(
                    "{function}() takes constants or parameters, not {other}"
                ))
            }),
        }
    }

    /// The value: the constant, or the parameter's bound value.
    pub fn resolve(&self, function: &str) -> Result<ScalarValue> {
        match self {
            Arg::Value(value) => Ok(value.clone()),
            Arg::Parameter(id) => PARAMETERS
                .try_with(|values| values.get_placeholders_with_values(id))
                .map_err(|_| {
                    Error::InvalidParameter(format!("{function}(): no value bound for {id}"))
                })?
                .map(|bound| bound.value)
                .map_err(Error::from),
        }
    }
}

/// The value of the constant argument `expr` of `function` (literals, casts, `[…]` and
/// `ARRAY[…]`, folded); anything else is 22023.
pub fn constant(function: &str, expr: &Expr) -> Result<ScalarValue> {
    let simplifier = ExprSimplifier::new(SimplifyContext::default());
    match simplifier.simplify(expr.clone())? {
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
