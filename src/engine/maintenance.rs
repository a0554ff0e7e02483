//! `VACUUM` and `ANALYZE` (with any options and tables), which scripts and tools written for
//! PostgreSQL send (pgbench's initialisation does): accepted and answered as PostgreSQL
//! answers them, doing nothing — RocksDB reclaims space by compaction in the background, and
//! DataFusion plans without gathered statistics.

use crate::engine::command::Family;
use crate::engine::{Command, Context, Outcome};
use crate::error::Result;
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use std::sync::Arc;

/// The `VACUUM` / `ANALYZE` statement family.
pub const STATEMENTS: Family = Family {
    name: "maintenance",
    parse: |parser| Ok(maintenance(parser).map(|s| Arc::new(s) as Arc<dyn Command>)),
};

/// `VACUUM …` or `ANALYZE …`, by its command tag.
#[derive(Debug)]
struct Maintenance(&'static str);

/// Recognises `VACUUM` or `ANALYZE` and consumes the statement to its end.
fn maintenance(parser: &mut Parser) -> Option<Maintenance> {
    let tag = match &parser.peek_token_ref().token {
        Token::Word(word) if word.keyword == Keyword::VACUUM => "VACUUM",
        Token::Word(word) if word.keyword == Keyword::ANALYZE => "ANALYZE",
        _ => return None,
    };
    while !matches!(parser.peek_token_ref().token, Token::SemiColon | Token::EOF) {
        parser.next_token();
    }
    Some(Maintenance(tag))
}

#[async_trait]
impl Command for Maintenance {
    fn rows_schema(&self) -> Option<SchemaRef> {
        None
    }

    async fn execute(&self, _cx: &Context<'_>) -> Result<Outcome> {
        Ok(Outcome::done(self.0))
    }
}
