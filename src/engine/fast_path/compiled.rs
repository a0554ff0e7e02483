//! Expressions of a prepared plan compiled once into DataFusion physical expressions, then
//! evaluated at each execution on one-row batches. DataFusion 55 cannot compile an expression
//! holding a placeholder (`$n`), and its own PREPARE plans again at every EXECUTE; here each
//! `$n` becomes a column of the input instead, so the compiled form serves every execution.

use crate::error::{Error, Result};
use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, ParamValues, ScalarValue};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, ReturnFieldArgs, Volatility};
use datafusion::physical_expr::PhysicalExpr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The name of `$n`'s column.
fn parameter_column(n: usize) -> String {
    format!("tastedb_param_{n}")
}

/// The column standing for `now()`: the time the execution starts.
const NOW_COLUMN: &str = "tastedb_now";

/// The columns a compiled expression reads besides its input's: the parameters `$1…$n`, and
/// `now()` when it is called.
#[derive(Debug, Clone)]
pub struct Parameters {
    types: Vec<DataType>,
    now: Option<DataType>,
}

impl Parameters {
    /// Parameters of the given types, and `now()` when one of `exprs` calls it; `None` when
    /// two calls of `now()` differ in type (time zone).
    pub fn new<'a>(types: &[DataType], exprs: impl IntoIterator<Item = &'a Expr>) -> Option<Self> {
        let mut now: Option<DataType> = None;
        let mut agree = true;
        for expr in exprs {
            let _ = expr.apply(|e| {
                if let Some(found) = now_type(e) {
                    agree &= now.as_ref().is_none_or(|known| *known == found);
                    now = Some(found);
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        agree.then(|| Parameters {
            types: types.to_vec(),
            now,
        })
    }

    /// `expr` with `$n` and `now()` turned into columns; `None` when it holds what cannot be
    /// compiled once for every execution: a subquery, an aggregate, a window, a volatile or
    /// stable function other than `now()`, an unknown parameter.
    fn columns_for(&self, expr: &Expr) -> Option<Expr> {
        let mut compilable = true;
        let _ = expr.apply(|e| {
            compilable &= match e {
                Expr::ScalarFunction(function) => {
                    function.func.signature().volatility == Volatility::Immutable
                        || (now_type(e).is_some() && self.now.is_some())
                }
                Expr::ScalarSubquery(_)
                | Expr::Exists(_)
                | Expr::InSubquery(_)
                | Expr::AggregateFunction(_)
                | Expr::WindowFunction(_)
                | Expr::OuterReferenceColumn(..) => false,
                _ => true,
            };
            Ok(match compilable {
                true => TreeNodeRecursion::Continue,
                false => TreeNodeRecursion::Stop,
            })
        });
        if !compilable {
            return None;
        }
        let count = self.types.len();
        let mut known = true;
        let rewritten = expr
            .clone()
            .transform(|e| {
                let name = match &e {
                    Expr::Placeholder(placeholder) => {
                        let n = (placeholder.id.strip_prefix('$'))
                            .and_then(|n| n.parse::<usize>().ok())
                            .filter(|&n| n >= 1 && n <= count);
                        known &= n.is_some();
                        parameter_column(n.unwrap_or(0))
                    }
                    _ if now_type(&e).is_some() => NOW_COLUMN.to_string(),
                    _ => return Ok(Transformed::no(e)),
                };
                Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
                    name,
                ))))
            })
            .ok()?
            .data;
        known.then_some(rewritten)
    }

    /// The schema of the parameter (and `now`) columns.
    fn schema(&self) -> Schema {
        let mut fields: Vec<Field> = (self.types.iter().enumerate())
            .map(|(i, t)| Field::new(parameter_column(i + 1), t.clone(), true))
            .collect();
        fields.extend((self.now.iter()).map(|t| Field::new(NOW_COLUMN, t.clone(), true)));
        Schema::new(fields)
    }

    /// The values of the parameter columns for one execution: each value of its parameter's
    /// type or cast to it without loss, and the time now; `None` when a value is neither (the
    /// general path then decides, with its own coercions and errors).
    pub fn bind(&self, values: &ParamValues) -> Result<Option<Bound>> {
        let mut bound = Vec::with_capacity(self.types.len() + 1);
        for (i, wanted) in self.types.iter().enumerate() {
            let value = values
                .get_placeholders_with_values(&format!("${}", i + 1))?
                .value;
            let Some(value) = exact_cast(value, wanted) else {
                return Ok(None);
            };
            bound.push(value);
        }
        if let Some(now) = &self.now {
            let DataType::Timestamp(TimeUnit::Nanosecond, zone) = now else {
                return Ok(None);
            };
            let since_epoch = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_err(|e| Error::Internal(format!("the clock is before 1970: {e}")))?;
            let nanos = i64::try_from(since_epoch.as_nanos()).ok();
            bound.push(ScalarValue::TimestampNanosecond(nanos, zone.clone()));
        }
        Ok(Some(Bound {
            values: bound,
            schema: self.schema(),
        }))
    }
}

/// The type `now()` returns, when `expr` is a call of it.
fn now_type(expr: &Expr) -> Option<DataType> {
    let Expr::ScalarFunction(function) = expr else {
        return None;
    };
    if function.func.name() != "now" || !function.args.is_empty() {
        return None;
    }
    let field = function
        .func
        .return_field_from_args(ReturnFieldArgs {
            arg_fields: &[],
            scalar_arguments: &[],
        })
        .ok()?;
    Some(field.data_type().clone())
}

/// The parameter columns' values for one execution.
#[derive(Debug)]
pub struct Bound {
    values: Vec<ScalarValue>,
    schema: Schema,
}

impl Bound {
    /// `input` with the parameter columns after its own.
    pub fn append_to(&self, input: &RecordBatch) -> Result<RecordBatch> {
        let rows = input.num_rows();
        let mut columns = input.columns().to_vec();
        for value in &self.values {
            columns.push(value.to_array_of_size(rows)?);
        }
        let mut fields = input.schema().fields().to_vec();
        fields.extend(self.schema.fields().iter().cloned());
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &options,
        )?)
    }
}

/// `value` as `wanted`: itself when of that type, else cast when the cast loses nothing
/// (casting back gives the value again); `None` otherwise.
pub fn exact_cast(value: ScalarValue, wanted: &DataType) -> Option<ScalarValue> {
    // the common case, an integer literal for an INT or SMALLINT column, without Arrow's casts
    match (&value, wanted) {
        (ScalarValue::Int64(Some(n)), DataType::Int32) => {
            return i32::try_from(*n).ok().map(|n| ScalarValue::Int32(Some(n)));
        }
        (ScalarValue::Int64(Some(n)), DataType::Int16) => {
            return i16::try_from(*n).ok().map(|n| ScalarValue::Int16(Some(n)));
        }
        _ => {}
    }
    if &value.data_type() == wanted || value.is_null() {
        return value.cast_to(wanted).ok();
    }
    let cast = value.cast_to(wanted).ok()?;
    (cast.cast_to(&value.data_type()).ok()? == value).then_some(cast)
}

/// Expressions compiled against an input schema plus [`Parameters`], giving the columns of
/// `output`.
#[derive(Debug, Clone)]
pub struct Compiled {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    output: SchemaRef,
}

impl Compiled {
    /// Compiles `exprs` over rows of `input` (and `parameters`' columns) into columns of the
    /// types of `output`'s fields; `None` when one cannot be compiled once, or its type would
    /// differ from `output`'s.
    pub fn new(
        state: &SessionState,
        exprs: &[Expr],
        input: &DFSchema,
        parameters: &Parameters,
        output: &Schema,
    ) -> Option<Compiled> {
        let rewritten: Vec<Expr> = exprs
            .iter()
            .map(|e| parameters.columns_for(e))
            .collect::<Option<_>>()?;
        let parameter_schema = DFSchema::try_from(parameters.schema()).ok()?;
        let mut schema = input.clone();
        schema.merge(&parameter_schema);
        let arrow_schema = schema.as_arrow();
        let mut compiled = Vec::with_capacity(exprs.len());
        for (expr, field) in rewritten.into_iter().zip(output.fields()) {
            let physical = state.create_physical_expr(expr, &schema).ok()?;
            if &physical.data_type(arrow_schema).ok()? != field.data_type() {
                return None;
            }
            compiled.push(physical);
        }
        let fields: Vec<Field> = (output.fields().iter())
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        Some(Compiled {
            exprs: compiled,
            output: Arc::new(Schema::new(fields)),
        })
    }

    /// The columns computed from `input` (rows with the parameter columns appended).
    pub fn evaluate(&self, input: &RecordBatch) -> Result<RecordBatch> {
        let rows = input.num_rows();
        let columns = self
            .exprs
            .iter()
            .map(|e| e.evaluate(input)?.into_array(rows))
            .collect::<Result<Vec<ArrayRef>, datafusion::error::DataFusionError>>()
            .map_err(Error::from)?;
        Ok(RecordBatch::try_new(self.output.clone(), columns)?)
    }
}
