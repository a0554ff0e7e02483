//! Statements known by their text with the literals taken out, so that a statement sent again
//! with other values is not parsed again. Generalising a statement ([`super::generalise`])
//! needs its syntax tree, and parsing it costs more than the fast path that then runs it; but
//! statements of one shape differ only in the values of their literals. The first statement
//! of such a text is parsed and generalised, and where each lifted value was written is
//! remembered as a [`Template`]; later ones are only scanned, their values read from their
//! literals.
//!
//! The scan is written here rather than done by sqlparser's tokenizer, which costs half as
//! much as parsing (it looks every word up among the keywords), where the scan needs only to
//! find integer and string literals. It is conservative: a literal is one only where the
//! tokenizer surely makes one token of exactly it (delimited by spaces, parentheses,
//! operators), and a text with anything the scan does not follow (comments, dollar quotes,
//! backslashes, prefixed strings, string continuations) is not read at all. Two texts with
//! the same key are then the same tokens but for the values of their literals.

use crate::engine::Statement;
use crate::engine::fast_path::generalise::{Lifted, Place, generalise};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion::sql::sqlparser::tokenizer::Location;
use std::sync::Arc;

/// Text longer than this is not read: a long statement (a many-row INSERT) is seldom sent
/// again, and its key would take as much memory as it does.
const MAX_QUERY_BYTES: usize = 2_048;

/// What stands for an integer literal in a key (control characters end the scan).
const NUMBER: char = '\u{1}';
/// What stands for a string literal in a key.
const STRING: char = '\u{2}';

/// A query's text with its literals taken out (the same for every query that differs from it
/// only in the values of its literals), and its literals.
#[derive(Debug)]
pub struct Spoken {
    key: String,
    literals: Vec<Literal>,
}

/// A literal of a query.
#[derive(Debug, Clone, PartialEq)]
struct Literal {
    /// Where it starts, as the tokenizer counts (lines and characters from 1).
    start: Location,
    value: LiteralValue,
}

/// A literal's value.
#[derive(Debug, Clone, PartialEq)]
enum LiteralValue {
    /// Its digits.
    Integer(String),
    /// Its text, quotes undoubled.
    Text(String),
}

impl Spoken {
    /// `query` scanned for its literals; `None` when it is too long or has what the scan does
    /// not follow (it is then parsed as it comes).
    pub fn read(query: &str) -> Option<Spoken> {
        if query.len() > MAX_QUERY_BYTES {
            return None;
        }
        Scan::new(query).run()
    }

    /// The text, literals taken out: equal for queries that one [`Template`] reads.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the query has literals.
    pub fn has_literals(&self) -> bool {
        !self.literals.is_empty()
    }
}

/// Characters after which a literal starts a token of its own.
fn opens_literal(c: Option<char>) -> bool {
    c.is_none_or(|c| c.is_ascii_whitespace() || "(,=<>+-*/%[|".contains(c))
}

/// Characters before which a literal ends a token of its own.
fn closes_literal(c: Option<char>) -> bool {
    c.is_none_or(|c| c.is_ascii_whitespace() || "),;=<>+-*/%]|:".contains(c))
}

/// The state of a scan: the characters left, where they are, what was read.
struct Scan<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    location: Location,
    previous: Option<char>,
    key: String,
    literals: Vec<Literal>,
}

impl<'a> Scan<'a> {
    fn new(query: &'a str) -> Scan<'a> {
        Scan {
            chars: query.chars().peekable(),
            location: Location::new(1, 1),
            previous: None,
            key: String::with_capacity(query.len()),
            literals: Vec::new(),
        }
    }

    fn next(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.location = Location::new(self.location.line + 1, 1);
        } else {
            self.location = Location::new(self.location.line, self.location.column + 1);
        }
        Some(c)
    }

    /// Copies the next character to the key.
    fn copy(&mut self, c: char) {
        self.key.push(c);
        self.previous = Some(c);
    }

    fn run(mut self) -> Option<Spoken> {
        while let Some(&c) = self.chars.peek() {
            let start = self.location;
            match c {
                '\'' if opens_literal(self.previous) => {
                    self.next();
                    let text = self.string()?;
                    self.literal(start, LiteralValue::Text(text), STRING)?;
                }
                '0'..='9' if opens_literal(self.previous) => {
                    let mut digits = String::new();
                    while let Some(&d) = self.chars.peek().filter(|d| d.is_ascii_digit()) {
                        self.next();
                        digits.push(d);
                    }
                    if closes_literal(self.chars.peek().copied()) {
                        self.literal(start, LiteralValue::Integer(digits), NUMBER)?;
                    } else {
                        // part of another token (`5e3`, `1.5`): kept as written
                        digits.chars().for_each(|d| self.copy(d));
                    }
                }
                '"' => {
                    self.next();
                    self.copy('"');
                    self.quoted_identifier()?;
                }
                // strings after a prefix (E'…', U&'…'), dollar quotes and parameters,
                // backslashes, control characters
                '\'' | '$' | '\\' => return None,
                c if c.is_control() && !c.is_ascii_whitespace() => return None,
                // comments
                '-' | '/' => {
                    self.next();
                    self.copy(c);
                    if self.chars.peek() == Some(&if c == '-' { '-' } else { '*' }) {
                        return None;
                    }
                }
                c => {
                    self.next();
                    self.copy(c);
                }
            }
        }
        Some(Spoken {
            key: self.key,
            literals: self.literals,
        })
    }

    /// Records a literal just read, standing for it in the key by `mark`; `None` when what
    /// follows it would make it part of another token (`5e3`, `5.5`, `'a'\n'b'`).
    fn literal(&mut self, start: Location, value: LiteralValue, mark: char) -> Option<()> {
        if !closes_literal(self.chars.peek().copied()) {
            return None;
        }
        if matches!(value, LiteralValue::Text(_)) {
            // a string continued by another after whitespace is one literal
            let mut rest = self.chars.clone().skip_while(char::is_ascii_whitespace);
            if rest.next() == Some('\'') {
                return None;
            }
        }
        self.literals.push(Literal { start, value });
        self.key.push(mark);
        self.previous = Some(mark);
        Some(())
    }

    /// The text of a string literal whose opening quote was read, up to its closing quote.
    fn string(&mut self) -> Option<String> {
        let mut text = String::new();
        loop {
            match self.next()? {
                '\'' if self.chars.peek() == Some(&'\'') => {
                    self.next();
                    text.push('\'');
                }
                '\'' => return Some(text),
                '\\' => return None,
                c => text.push(c),
            }
        }
    }

    /// Copies a quoted identifier whose opening quote was copied, up to its closing quote.
    fn quoted_identifier(&mut self) -> Option<()> {
        loop {
            let c = self.next()?;
            self.copy(c);
            if c == '"' {
                if self.chars.peek() == Some(&'"') {
                    self.next();
                    self.copy('"');
                } else {
                    return Some(());
                }
            }
        }
    }
}

/// How the shape and values of every query of one [`Spoken::key`] are read from its literals.
#[derive(Debug)]
pub struct Template {
    shape: Arc<str>,
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
    Fixed(LiteralValue),
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
            let place = (generalised.places.iter()).position(|place| place.start == literal.start);
            let slot = match place {
                Some(index) => {
                    let Place { negated, .. } = generalised.places[index];
                    if value(&literal.value, negated).as_ref() != Some(&generalised.values[index]) {
                        return None;
                    }
                    found += 1;
                    Slot::Value { index, negated }
                }
                None => Slot::Fixed(literal.value.clone()),
            };
            slots.push(slot);
        }
        (found == generalised.values.len()).then_some(Template {
            shape: generalised.shape.into(),
            slots,
            parameters: found,
        })
    }

    /// `spoken`'s statement, which has this template's key: its shape and values; `None`
    /// when a literal the shape keeps differs, or a value cannot be lifted.
    pub fn read(&self, query: &str, spoken: &Spoken) -> Option<Shaped> {
        let mut values = vec![None; self.parameters];
        for (slot, literal) in self.slots.iter().zip(&spoken.literals) {
            match slot {
                Slot::Value { index, negated } => {
                    values[*index] = Some(value(&literal.value, *negated)?);
                }
                Slot::Fixed(fixed) if *fixed == literal.value => {}
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
fn value(literal: &LiteralValue, negated: bool) -> Option<Lifted> {
    match literal {
        LiteralValue::Integer(n) if negated => format!("-{n}").parse().ok().map(Lifted::Integer),
        LiteralValue::Integer(n) => n.parse().ok().map(Lifted::Integer),
        LiteralValue::Text(s) if !negated => Some(Lifted::Text(s.clone())),
        LiteralValue::Text(_) => None,
    }
}

/// A statement read by a [`Template`]: run by its shape's fast path without being parsed, or
/// parsed from its text when that path cannot answer it.
#[derive(Debug, Clone)]
pub struct Shaped {
    /// The statement's text.
    pub query: String,
    /// Its shape (see [`super::shape`]).
    pub shape: Arc<str>,
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
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

    fn learn(sql: &str) -> Option<Template> {
        let statement = parse(sql).ok()?.remove(0);
        Template::learn(&Spoken::read(sql)?, statement.sql()?)
    }

    fn read(template: &Template, sql: &str) -> Option<(String, Vec<Lifted>)> {
        let shaped = template.read(sql, &Spoken::read(sql)?)?;
        Some((shaped.shape.to_string(), shaped.values))
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
        let key = |sql: &str| Spoken::read(sql).map(|s| s.key().to_string());
        assert_eq!(
            key("SELECT b FROM a WHERE id = 1"),
            key("SELECT b FROM a WHERE id = 22")
        );
        assert_ne!(
            key("SELECT b FROM a WHERE id = 1"),
            key("SELECT b FROM a WHERE id = '1'")
        );
        // digits that are part of other tokens stay in the key
        assert_ne!(key("SELECT c1 FROM t2"), key("SELECT c3 FROM t2"));
        assert_ne!(key("SELECT \"a 1\" FROM t"), key("SELECT \"a 2\" FROM t"));
        assert_eq!(key("SELECT 'it''s'"), Some(format!("SELECT {STRING}")));
        assert_eq!(key("SELECT 1.5, 2"), Some(format!("SELECT 1.5, {NUMBER}")));
        // what the scan does not follow is not read
        for sql in [
            "SELECT 1 -- one",
            "SELECT /* one */ 1",
            "SELECT E'a\\n'",
            "SELECT 'a'\n'b'",
            "SELECT $1",
            "SELECT 'a\\'",
            "SELECT 'open",
        ] {
            assert_eq!(key(sql), None, "{sql}");
        }
        assert!(Spoken::read(&format!("SELECT '{}'", "x".repeat(MAX_QUERY_BYTES))).is_none());
    }

    #[test]
    fn literals_start_where_the_tokenizer_says() {
        let sql = "SELECT n FROM \"é 1\"\n  WHERE k = 'ü' AND id = 42";
        let spoken = Spoken::read(sql).unwrap();
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize_with_location()
            .unwrap();
        let starts: Vec<Location> = (tokens.iter())
            .filter(|t| matches!(t.token, Token::Number(..) | Token::SingleQuotedString(_)))
            .map(|t| t.span.start)
            .collect();
        let scanned: Vec<Location> = spoken.literals.iter().map(|l| l.start).collect();
        assert_eq!(scanned, starts);
    }

    #[test]
    fn statements_without_a_shape_have_no_template() {
        assert!(learn("SELECT 1").is_none());
        assert!(learn("SELECT * FROM a WHERE b > 3").is_none());
    }
}
