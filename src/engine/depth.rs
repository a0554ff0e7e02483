//! How deeply a statement nests, estimated from its tokens before it is parsed, so that a
//! statement too deep for the stack of the thread planning it is refused with `54001` instead
//! of overflowing that stack (which aborts the whole process, every session with it).
//!
//! Parsing, planning, optimising and evaluating all recurse over expression trees: a chain of
//! 2,000 `OR` or `+` terms is a tree 2,000 levels deep. PostgreSQL guards the same way with
//! `max_stack_depth`. The estimate counts, at each parenthesis level, the operators since the
//! last comma, plus the levels themselves: the depth of the tree a left-deep chain of
//! operators becomes, or more. Threads that run statements need [`STATEMENT_STACK_BYTES`] of
//! stack for [`MAX_DEPTH`]; `tastedb serve` and `tastedb sql` run statements on such threads.

use crate::error::{Error, Result};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// The deepest nesting a statement may have: a 2,000-term `OR` list estimates at about
/// 4,000 (its `=` count too), a 2,000-term `+` chain at 2,000.
pub const MAX_DEPTH: usize = 10_000;

/// The stack of the threads that parse, plan and run statements: room for [`MAX_DEPTH`]
/// levels of recursion in a debug build, with a margin. Only the pages used are committed.
pub const STATEMENT_STACK_BYTES: usize = 512 << 20;

/// Refuses `sql` with `54001` when its estimated nesting is deeper than [`MAX_DEPTH`]. Text
/// that does not tokenize is left to the parser, which reports it.
pub fn check(sql: &str) -> Result<()> {
    // Every token is at least one character and the estimate is at most the number of tokens
    // plus one: shorter text cannot be too deep, and is not tokenized twice.
    if sql.len() < MAX_DEPTH {
        return Ok(());
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return Ok(());
    };
    // Operators since the last comma, one entry per open parenthesis or bracket.
    let mut runs: Vec<usize> = vec![0];
    let mut sum = 0usize;
    let mut deepest = 0usize;
    for token in &tokens {
        match token {
            Token::LParen | Token::LBracket => runs.push(0),
            Token::RParen | Token::RBracket if runs.len() > 1 => {
                sum -= runs.pop().unwrap_or(0);
            }
            Token::Comma | Token::SemiColon => {
                if let Some(run) = runs.last_mut() {
                    sum -= *run;
                    *run = 0;
                }
            }
            token if is_operator(token) => {
                if let Some(run) = runs.last_mut() {
                    *run += 1;
                    sum += 1;
                }
            }
            _ => {}
        }
        deepest = deepest.max(runs.len() + sum);
    }
    if deepest > MAX_DEPTH {
        return Err(Error::StatementTooComplex(format!(
            "its expressions nest about {deepest} levels deep, more than the {MAX_DEPTH} \
             TasteDB plans; split long OR chains into IN lists or the statement into parts"
        )));
    }
    Ok(())
}

/// Tokens that join two expressions into a deeper one.
fn is_operator(token: &Token) -> bool {
    match token {
        Token::Word(word) => matches!(word.keyword, Keyword::AND | Keyword::OR),
        Token::Plus
        | Token::Minus
        | Token::Mul
        | Token::Div
        | Token::Mod
        | Token::StringConcat
        | Token::Eq
        | Token::Neq
        | Token::Lt
        | Token::Gt
        | Token::LtEq
        | Token::GtEq
        | Token::Caret
        | Token::Ampersand
        | Token::Pipe => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(op: &str, terms: usize) -> String {
        let body: Vec<String> = (0..terms).map(|i| format!("x = {i}")).collect();
        format!("SELECT 1 FROM t WHERE {}", body.join(&format!(" {op} ")))
    }

    #[test]
    fn long_chains_and_deep_parentheses_are_measured() {
        assert!(check(&chain("OR", 2_000)).is_ok());
        let error = check(&chain("OR", 20_000)).unwrap_err();
        assert_eq!(error.sqlstate(), "54001");
        let deep = format!("SELECT {}1{}", "(".repeat(12_000), ")".repeat(12_000));
        assert_eq!(check(&deep).unwrap_err().sqlstate(), "54001");
        assert!(
            check(&format!(
                "SELECT {}1{}",
                "(".repeat(2_000),
                ")".repeat(2_000)
            ))
            .is_ok()
        );
        // Many rows, each shallow, are not deep.
        let rows: Vec<String> = (0..50_000)
            .map(|i| format!("({i}, -{i}, 'a' || 'b')"))
            .collect();
        assert!(check(&format!("INSERT INTO t VALUES {}", rows.join(", "))).is_ok());
    }
}
