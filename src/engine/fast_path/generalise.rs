//! Statements sent with their values written in: the simple query protocol (pgbench's default
//! mode, psql, drivers that do not prepare), and [`Engine::sql`](crate::Engine::sql). A
//! statement that may have a fast path has its values lifted out as parameters (`$1…`), and
//! the statement so generalised is prepared once and reused for every statement of the same
//! shape, as PostgreSQL's drivers do by hand with PREPARE. Only the places a fast path reads
//! are generalised: the values of an UPDATE's SET and of an INSERT's one VALUES row, and the
//! `column = value` conjuncts of a WHERE; everything else stays in the shape's text.

use crate::engine::Statement;
use datafusion::common::ScalarValue;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, SetExpr, Statement as SqlStatement, UnaryOperator, Value, ValueWithSpan,
};
use datafusion::sql::sqlparser::tokenizer::Location;

/// A statement with its values lifted out.
#[derive(Debug)]
pub struct Generalised {
    /// The generalised statement's text: the same for every statement of this shape.
    pub shape: String,
    /// The generalised statement, with `$1…$n` where the values were.
    pub statement: Statement,
    /// The values, in parameter order.
    pub values: Vec<Lifted>,
    /// Where each value was written, in parameter order.
    pub places: Vec<Place>,
}

/// Where a lifted value was written in the statement's text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    /// The start of its literal.
    pub start: Location,
    /// Whether the minus sign before the literal was lifted with it.
    pub negated: bool,
}

/// The values lifted so far, and where they were written.
#[derive(Default)]
struct Lifting {
    values: Vec<Lifted>,
    places: Vec<Place>,
}

impl Lifting {
    /// Lifts `value`, written at `place`; its parameter's text.
    fn push(&mut self, value: Lifted, place: Place) -> Value {
        self.values.push(value);
        self.places.push(place);
        Value::Placeholder(format!("${}", self.values.len()))
    }
}

/// A value lifted out of a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Lifted {
    /// An integer: only ever bound to a numeric parameter.
    Integer(i64),
    /// A string literal: PostgreSQL gives it the type its context needs.
    Text(String),
}

impl Lifted {
    /// The value as DataFusion would read the literal.
    pub fn scalar(&self) -> ScalarValue {
        match self {
            Lifted::Integer(n) => ScalarValue::Int64(Some(*n)),
            Lifted::Text(s) => ScalarValue::Utf8(Some(s.clone())),
        }
    }
}

/// `statement` generalised, when it is an UPDATE, DELETE, one-row INSERT … VALUES or a
/// single-table SELECT whose WHERE is `column = value` conjuncts, has values to lift, and
/// has no parameters of its own.
pub fn generalise(statement: &SqlStatement) -> Option<Generalised> {
    let mut statement = statement.clone();
    let mut values = Lifting::default();
    match &mut statement {
        SqlStatement::Update(update) => {
            for assignment in &mut update.assignments {
                lift(&mut assignment.value, &mut values)?;
            }
            lift_equalities(update.selection.as_mut()?, &mut values)?;
        }
        SqlStatement::Delete(delete) => lift_equalities(delete.selection.as_mut()?, &mut values)?,
        SqlStatement::Insert(insert) => {
            let source = insert.source.as_mut()?;
            let SetExpr::Values(rows) = source.body.as_mut() else {
                return None;
            };
            let [row] = rows.rows.as_mut_slice() else {
                return None;
            };
            for value in &mut row.content {
                lift(value, &mut values)?;
            }
        }
        SqlStatement::Query(query) => {
            let SetExpr::Select(select) = query.body.as_mut() else {
                return None;
            };
            let [from] = select.from.as_slice() else {
                return None;
            };
            if !from.joins.is_empty() {
                return None;
            }
            lift_equalities(select.selection.as_mut()?, &mut values)?;
        }
        _ => return None,
    }
    if values.values.is_empty() {
        return None;
    }
    Some(Generalised {
        shape: statement.to_string(),
        statement: Statement::DataFusion(Box::new(DFStatement::Statement(Box::new(statement)))),
        values: values.values,
        places: values.places,
    })
}

/// Lifts the value of each `column = value` conjunct of `expr`; `None` when `expr` is
/// anything else.
fn lift_equalities(expr: &mut Expr, values: &mut Lifting) -> Option<()> {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            lift_equalities(left, values)?;
            lift_equalities(right, values)
        }
        Expr::Nested(inner) => lift_equalities(inner, values),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => match (left.as_ref(), right.as_ref()) {
            (Expr::Identifier(_) | Expr::CompoundIdentifier(_), _) => lift(right, values),
            (_, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) => lift(left, values),
            _ => None,
        },
        _ => None,
    }
}

/// Lifts the literals of `expr` that are operands of arithmetic and comparisons (or `expr`
/// itself); literals anywhere else stay in the shape. `None` when a literal cannot be lifted
/// exactly, or `expr` already holds a parameter.
fn lift(expr: &mut Expr, values: &mut Lifting) -> Option<()> {
    match expr {
        Expr::Value(ValueWithSpan { value, span }) => {
            let lifted = match value {
                Value::Number(n, false) => Lifted::Integer(n.parse().ok()?),
                Value::SingleQuotedString(s) => Lifted::Text(s.clone()),
                Value::Placeholder(_) => return None,
                _ => return Some(()),
            };
            let place = Place {
                start: span.start,
                negated: false,
            };
            *value = values.push(lifted, place);
            Some(())
        }
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr: inner,
        } => {
            if let Expr::Value(ValueWithSpan {
                value: Value::Number(n, false),
                span,
            }) = inner.as_ref()
            {
                let negative: i64 = format!("-{n}").parse().ok()?;
                let place = Place {
                    start: span.start,
                    negated: true,
                };
                *expr = Expr::value(values.push(Lifted::Integer(negative), place));
                return Some(());
            }
            lift(inner, values)
        }
        Expr::BinaryOp { left, right, .. } => {
            lift(left, values)?;
            lift(right, values)
        }
        Expr::Nested(inner) => lift(inner, values),
        _ => Some(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::parse;

    fn shape(sql: &str) -> Option<(String, Vec<Lifted>)> {
        let Statement::DataFusion(df) = parse(sql).ok()?.remove(0) else {
            return None;
        };
        let DFStatement::Statement(sql) = *df else {
            return None;
        };
        generalise(&sql).map(|g| (g.shape, g.values))
    }

    #[test]
    fn values_are_lifted_where_fast_paths_read_them() {
        let (text, values) = shape("UPDATE a SET b = b + -5 WHERE aid = 7 AND k = 'x'").unwrap();
        assert_eq!(text, "UPDATE a SET b = b + $1 WHERE aid = $2 AND k = $3");
        assert_eq!(
            values,
            [
                Lifted::Integer(-5),
                Lifted::Integer(7),
                Lifted::Text("x".into())
            ]
        );
        let (text, _) = shape("INSERT INTO h (a, t) VALUES (1, CURRENT_TIMESTAMP)").unwrap();
        assert_eq!(text, "INSERT INTO h (a, t) VALUES ($1, CURRENT_TIMESTAMP)");
        let (text, _) = shape("SELECT abalance FROM a WHERE aid = 3").unwrap();
        assert_eq!(text, "SELECT abalance FROM a WHERE aid = $1");
        let (text, _) = shape("DELETE FROM a WHERE 4 = aid").unwrap();
        assert_eq!(text, "DELETE FROM a WHERE $1 = aid");
    }

    #[test]
    fn other_statements_and_literals_stay_as_written() {
        for sql in [
            "SELECT * FROM a WHERE b > 3",
            "SELECT * FROM a, b WHERE a.x = 1",
            "SELECT * FROM a WHERE x = $1",
            "INSERT INTO a VALUES (1), (2)",
            "UPDATE a SET b = 1",
            "UPDATE a SET b = 1.5 WHERE id = 2",
            "DELETE FROM a WHERE id = 99999999999999999999",
            "SELECT 1",
        ] {
            assert_eq!(shape(sql), None, "{sql}");
        }
        let (text, _) = shape("UPDATE a SET b = upper('x') WHERE id = 2").unwrap();
        assert_eq!(text, "UPDATE a SET b = upper('x') WHERE id = $1");
    }
}
