//! Helpers for TasteDB's statements, whose words (TRAIN, MODEL, FEATURE, MATERIALIZE, …) are
//! not sqlparser keywords and are matched as plain words.

use crate::error::{Error, Result};
use datafusion::sql::sqlparser::ast::{Expr, SqlOption, UnaryOperator, Value};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

/// Runs `parse` over `sql` in the PostgreSQL dialect (a statement family's parser, in tests
/// and wherever one statement is parsed on its own).
pub fn parse_text<T>(sql: &str, parse: fn(&mut Parser) -> Result<T>) -> Result<T> {
    let mut parser = Parser::new(&PostgreSqlDialect {}).try_with_sql(sql)?;
    parse(&mut parser)
}

/// Consumes `tokens` tokens (words already matched by peeking).
pub fn skip(parser: &mut Parser, tokens: usize) {
    for _ in 0..tokens {
        parser.next_token();
    }
}

/// Consumes the words `expected` (any case) when they come next, and says whether they did;
/// for words sqlparser has no keyword for (`MODEL`, `FEATURE`).
pub fn parse_words(parser: &mut Parser, expected: &[&str]) -> bool {
    let all = expected.iter().enumerate().all(|(i, word)| {
        matches!(&parser.peek_nth_token_ref(i).token,
            Token::Word(w) if w.value.eq_ignore_ascii_case(word))
    });
    if all {
        skip(parser, expected.len());
    }
    all
}

/// Consumes the word `expected` (any case), or fails with 42601.
pub fn expect_word(parser: &mut Parser, expected: &str) -> Result<()> {
    let token = parser.next_token();
    match &token.token {
        Token::Word(w) if w.value.eq_ignore_ascii_case(expected) => Ok(()),
        other => Err(Error::Syntax(format!(
            "expected {}, found {other}",
            expected.to_uppercase()
        ))),
    }
}

/// The text of a literal option value: numbers, strings, booleans, names, signed numbers.
pub fn literal_text(expr: &Expr) -> Result<String> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Ok(n.clone()),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Ok(s.clone()),
            Value::Boolean(b) => Ok(b.to_string()),
            other => Err(Error::InvalidParameter(format!(
                "option value {other} is not supported"
            ))),
        },
        Expr::Identifier(ident) => Ok(ident.value.clone()),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => Ok(format!("-{}", literal_text(expr)?)),
        other => Err(Error::InvalidParameter(format!(
            "option value {other} must be a literal"
        ))),
    }
}

/// `sql` with COPY's `FREEZE ON` / `FREEZE OFF` written `FREEZE TRUE` / `FALSE` (PostgreSQL
/// takes any boolean spelling there, sqlparser only TRUE and FALSE; pgbench sends `on`);
/// `None` when there is nothing to change.
pub fn copy_freeze_booleans(sql: &str) -> Option<String> {
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::{Tokenizer, Whitespace, Word};
    if !sql.to_ascii_lowercase().contains("freeze") {
        return None;
    }
    let mut tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let mut changed = false;
    let mut after_freeze = false;
    for token in &mut tokens {
        match token {
            Token::Whitespace(Whitespace::Space | Whitespace::Newline | Whitespace::Tab) => {}
            Token::Word(word) if word.keyword == Keyword::FREEZE => after_freeze = true,
            Token::Word(Word { value, .. }) if after_freeze => {
                let replacement = match value.to_ascii_lowercase().as_str() {
                    "on" => Some("TRUE"),
                    "off" => Some("FALSE"),
                    _ => None,
                };
                if let Some(replacement) = replacement {
                    *token = Token::make_keyword(replacement);
                    changed = true;
                }
                after_freeze = false;
            }
            _ => after_freeze = false,
        }
    }
    changed.then(|| tokens.iter().map(ToString::to_string).collect())
}

/// `name = value` of a WITH or SET list as (lower-case name, literal text).
pub fn option(option: SqlOption) -> Result<(String, String)> {
    let SqlOption::KeyValue { key, value } = option else {
        return Err(Error::Syntax(format!(
            "expected option = value, found {option}"
        )));
    };
    Ok((key.value.to_lowercase(), literal_text(&value)?))
}
