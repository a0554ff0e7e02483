//! `VACUUM` and `ANALYZE` (with any options and tables), which scripts and tools written for
//! PostgreSQL send (pgbench's initialisation does). `VACUUM [tables]` compacts the tables'
//! rows and index entries now, which drops the rows their retention has expired (RocksDB
//! otherwise reclaims space by compaction in the background); `ANALYZE` does nothing, as
//! DataFusion plans without gathered statistics.

use crate::engine::command::Family;
use crate::engine::{Command, Context, Outcome};
use crate::error::{Error, Result};
use crate::roles::Object;
use crate::sql::names;
use crate::sql::notices::Notice;
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use std::sync::Arc;

/// The `VACUUM` / `ANALYZE` statement family.
pub const STATEMENTS: Family = Family {
    name: "maintenance",
    parse: |parser| Ok(maintenance(parser)?.map(|s| Arc::new(s) as Arc<dyn Command>)),
};

/// `VACUUM …` (with the tables it names; none: every table) or `ANALYZE …`.
#[derive(Debug)]
enum Maintenance {
    Vacuum(Vec<String>),
    Analyze,
}

/// Recognises `VACUUM` or `ANALYZE` and consumes the statement to its end.
fn maintenance(parser: &mut Parser) -> Result<Option<Maintenance>> {
    let vacuum = match &parser.peek_token_ref().token {
        Token::Word(word) if word.keyword == Keyword::VACUUM => true,
        Token::Word(word) if word.keyword == Keyword::ANALYZE => false,
        _ => return Ok(None),
    };
    parser.next_token();
    if !vacuum {
        skip_to_end(parser);
        return Ok(Some(Maintenance::Analyze));
    }
    if parser.peek_token_ref().token == Token::LParen {
        skip_parenthesized(parser);
    }
    while parser
        .parse_one_of_keywords(&[
            Keyword::FULL,
            Keyword::FREEZE,
            Keyword::VERBOSE,
            Keyword::ANALYZE,
        ])
        .is_some()
    {}
    let mut tables = Vec::new();
    if !matches!(parser.peek_token_ref().token, Token::SemiColon | Token::EOF) {
        loop {
            tables.push(names::table_name(&parser.parse_object_name(false)?)?);
            if parser.peek_token_ref().token == Token::LParen {
                skip_parenthesized(parser);
            }
            if !parser.consume_token(&Token::Comma) {
                break;
            }
        }
    }
    Ok(Some(Maintenance::Vacuum(tables)))
}

fn skip_to_end(parser: &mut Parser) {
    while !matches!(parser.peek_token_ref().token, Token::SemiColon | Token::EOF) {
        parser.next_token();
    }
}

/// Skips a parenthesized group (VACUUM's options, a column list).
fn skip_parenthesized(parser: &mut Parser) {
    let mut depth = 0usize;
    loop {
        match parser.next_token().token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return;
                }
            }
            Token::EOF => return,
            _ => {}
        }
    }
}

#[async_trait]
impl Command for Maintenance {
    fn rows_schema(&self) -> Option<SchemaRef> {
        None
    }

    async fn execute(&self, cx: &Context<'_>) -> Result<Outcome> {
        let Maintenance::Vacuum(named) = self else {
            return Ok(Outcome::done("ANALYZE"));
        };
        let catalog = cx.engine.catalog();
        for table in named {
            if catalog.get(table).is_none() {
                return Err(Error::UndefinedTable(table.clone()));
            }
        }
        let tables = match named.is_empty() {
            true => catalog.names(),
            false => named.clone(),
        };
        let mut owned = Vec::new();
        for table in tables {
            match cx
                .engine
                .users()
                .check_owner(cx.actor, &Object::table(&table))
            {
                Ok(()) => owned.push(table),
                Err(_) if named.is_empty() => {}
                Err(_) => cx.notices.send(Notice::with_code(
                    "01000",
                    format!("permission denied to vacuum \"{table}\", skipping it"),
                )),
            }
        }
        let catalog = catalog.clone();
        crate::blocking::run("VACUUM", move |stopped| {
            for table in &owned {
                stopped.check()?;
                catalog.compact(table);
            }
            Ok(())
        })
        .await?;
        Ok(Outcome::done("VACUUM"))
    }
}
