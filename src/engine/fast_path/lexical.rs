//! Statements known by their tokens, so that a statement sent again with other values is not
//! parsed again. Generalising a statement ([`super::generalise`]) needs its syntax tree, and
//! parsing it costs more than the fast path that then runs it; but statements of one shape
//! differ only in the values of their literals, so their tokens (literals taken out) are the
//! same. The first statement of such tokens is parsed and generalised, and where each lifted
//! value was written is remembered as a [`Template`]; later ones are tokenized only, their
//! values read from their literals. Whitespace and comments are tokens like the others (the
//! parser reads a newline between string literals, and hints in comments).

use crate::engine::Statement;
use crate::engine::fast_path::generalise::{Lifted, Place, generalise};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// Text longer than this is not read for its tokens: a long statement (a many-row INSERT) is
/// seldom sent again, and its tokens would take as much memory as it does.
const MAX_QUERY_BYTES: usize = 2_048;

/// A query's tokens with its literals taken out (the same for every query that differs from
/// it only in the values of its literals), and its literals.
#[derive(Debug)]
pub struct Spoken {
    key: Vec<Token>,
    literals: Vec<TokenWithSpan>,
}

impl Spoken {
    /// The tokens of `query`; `None` when it is too long or does not tokenize (the parser
    /// then says why).
    pub fn read(query: &str) -> Option<Spoken> {
        if query.len() > MAX_QUERY_BYTES {
            return None;
        }
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, query)
            .tokenize_with_location()
            .ok()?;
        let mut key = Vec::with_capacity(tokens.len());
        let mut literals = Vec::new();
        for token in tokens {
            key.push(match &token.token {
                Token::Number(_, false) => Token::Number(String::new(), false),
                Token::SingleQuotedString(_) => Token::SingleQuotedString(String::new()),
                other => other.clone(),
            });
            if matches!(
                token.token,
                Token::Number(_, false) | Token::SingleQuotedString(_)
            ) {
                literals.push(token);
            }
        }
        Some(Spoken { key, literals })
    }

    /// The tokens, literals taken out: equal for queries that one [`Template`] reads.
    pub fn key(&self) -> &[Token] {
        &self.key
    }

    /// Whether the query has literals.
    pub fn has_literals(&self) -> bool {
        !self.literals.is_empty()
    }
}

/// How the shape and values of every query of one [`Spoken::key`] are read from its literals.
#[derive(Debug)]
pub struct Template {
    shape: String,
    /// What each literal is, in the order they are written.
    slots: Vec<Slot>,
    parameters: usize,
}

/// What a literal of a template is.
#[derive(Debug)]
enum Slot {
    /// The value of parameter `index`, negated when the shape lifted the sign before it too.
    Value { index: usize, negated: bool },
    /// Part of the shape: queries with another literal here are not read by the template.
    Fixed(Token),
}

impl Template {
    /// The template of `spoken`, read from `statement`, which was parsed from the same text;
    /// `None` when the statement is not generalised, or its values are not exactly its
    /// literals.
    pub fn learn(spoken: &Spoken, statement: &SqlStatement) -> Option<Template> {
        let generalised = generalise(statement)?;
        let mut slots = Vec::with_capacity(spoken.literals.len());
        let mut found = 0;
        for literal in &spoken.literals {
            let place =
                (generalised.places.iter()).position(|place| place.start == literal.span.start);
            let slot = match place {
                Some(index) => {
                    let Place { negated, .. } = generalised.places[index];
                    if value(&literal.token, negated).as_ref() != Some(&generalised.values[index]) {
                        return None;
                    }
                    found += 1;
                    Slot::Value { index, negated }
                }
                None => Slot::Fixed(literal.token.clone()),
            };
            slots.push(slot);
        }
        (found == generalised.values.len()).then_some(Template {
            shape: generalised.shape,
            slots,
            parameters: found,
        })
    }

    /// `spoken`'s statement, which has this template's key: its shape and values; `None`
    /// when a literal the shape keeps differs, or a value cannot be lifted.
    pub fn read(&self, query: &str, spoken: Spoken) -> Option<Shaped> {
        let mut values = vec![None; self.parameters];
        for (slot, literal) in self.slots.iter().zip(spoken.literals) {
            match slot {
                Slot::Value { index, negated } => {
                    values[*index] = Some(value(&literal.token, *negated)?);
                }
                Slot::Fixed(token) if *token == literal.token => {}
                Slot::Fixed(_) => return None,
            }
        }
        Some(Shaped {
            query: query.to_string(),
            shape: self.shape.clone(),
            values: values.into_iter().collect::<Option<_>>()?,
        })
    }
}

/// The value [`generalise`] lifts from `literal`.
fn value(literal: &Token, negated: bool) -> Option<Lifted> {
    match literal {
        Token::Number(n, false) if negated => format!("-{n}").parse().ok().map(Lifted::Integer),
        Token::Number(n, false) => n.parse().ok().map(Lifted::Integer),
        Token::SingleQuotedString(s) if !negated => Some(Lifted::Text(s.clone())),
        _ => None,
    }
}

/// A statement read by a [`Template`]: run by its shape's fast path without being parsed, or
/// parsed from its text when that path cannot answer it.
#[derive(Debug, Clone)]
pub struct Shaped {
    /// The statement's text.
    pub query: String,
    /// Its shape (see [`super::shape`]).
    pub shape: String,
    /// Its values, in parameter order.
    pub values: Vec<Lifted>,
}

impl Shaped {
    /// As a statement to run.
    pub fn statement(self) -> Statement {
        Statement::Shaped(Box::new(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::parse;

    fn learn(sql: &str) -> Option<Template> {
        let statement = parse(sql).ok()?.remove(0);
        Template::learn(&Spoken::read(sql)?, statement.sql()?)
    }

    fn read(template: &Template, sql: &str) -> Option<(String, Vec<Lifted>)> {
        let shaped = template.read(sql, Spoken::read(sql)?)?;
        Some((shaped.shape, shaped.values))
    }

    #[test]
    fn statements_of_one_key_are_read_without_parsing() {
        let sql = "UPDATE a SET b = b + -5 WHERE aid = 7 AND k = 'x' AND n = upper('y')";
        let template = learn(sql).unwrap();
        let other = "UPDATE a SET b = b + -12 WHERE aid = 3 AND k = 'it''s' AND n = upper('y')";
        let spoken = [sql, other].map(|s| Spoken::read(s).unwrap());
        assert_eq!(spoken[0].key(), spoken[1].key());
        let (shape, values) = read(&template, other).unwrap();
        assert_eq!(
            shape,
            "UPDATE a SET b = b + $1 WHERE aid = $2 AND k = $3 AND n = upper('y')"
        );
        assert_eq!(
            values,
            [
                Lifted::Integer(-12),
                Lifted::Integer(3),
                Lifted::Text("it's".into())
            ]
        );
        // what the same text parsed and generalised gives
        let statement = parse(other).unwrap().remove(0);
        let generalised = generalise(statement.sql().unwrap()).unwrap();
        assert_eq!((generalised.shape, generalised.values), (shape, values));
    }

    #[test]
    fn literals_the_shape_keeps_must_match() {
        let template = learn("UPDATE a SET b = upper('y') WHERE id = 2").unwrap();
        assert!(read(&template, "UPDATE a SET b = upper('y') WHERE id = 5").is_some());
        assert!(read(&template, "UPDATE a SET b = upper('z') WHERE id = 5").is_none());
        // a value the shape cannot lift is not read either
        let template = learn("DELETE FROM a WHERE id = 2").unwrap();
        assert!(read(&template, "DELETE FROM a WHERE id = 99999999999999999999").is_none());
    }

    #[test]
    fn keys_keep_everything_but_the_values_of_literals() {
        let key = |sql: &str| Spoken::read(sql).unwrap().key().to_vec();
        assert_eq!(
            key("SELECT b FROM a WHERE id = 1"),
            key("SELECT b FROM a WHERE id = 22")
        );
        assert_ne!(
            key("SELECT b FROM a WHERE id = 1"),
            key("SELECT b FROM a WHERE id = '1'")
        );
        assert_ne!(key("SELECT /*+ x */ 1"), key("SELECT /*+ y */ 1"));
        assert_ne!(key("SELECT 'a'\n'b'"), key("SELECT 'a' 'b'"));
        assert!(Spoken::read(&format!("SELECT '{}'", "x".repeat(MAX_QUERY_BYTES))).is_none());
    }

    #[test]
    fn statements_without_a_shape_have_no_template() {
        assert!(learn("SELECT 1").is_none());
        assert!(learn("SELECT * FROM a WHERE b > 3").is_none());
    }
}
