//! `CREATE FILTER [IF NOT EXISTS] name AS query` and `DROP FILTER [IF EXISTS] name`.

use crate::clock::now_micros;
use crate::engine::{Command, Context, Outcome};
use crate::error::{Error, Result};
use crate::filters::Filter;
use crate::roles::Actor;
use crate::sql::names;
use crate::sql::notices::Notice;
use crate::sql::words::parse_words;
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::ast::Query;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;

/// A statement about named filters.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterStatement {
    /// `CREATE FILTER [IF NOT EXISTS] name AS query`.
    Create {
        /// Filter name.
        name: String,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// The query whose first column lists the eligible items.
        query: Box<Query>,
    },
    /// `DROP FILTER [IF EXISTS] name`.
    Drop {
        /// Filter name.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
}

/// Parses a filter statement; `None` (nothing consumed) for any other statement.
pub fn filter_statement(parser: &mut Parser) -> Result<Option<FilterStatement>> {
    if parse_words(parser, &["create", "filter"]) {
        let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = names::ident(&parser.parse_identifier()?);
        parser.expect_keyword(Keyword::AS)?;
        let query = parser.parse_query()?;
        return Ok(Some(FilterStatement::Create {
            name,
            if_not_exists,
            query,
        }));
    }
    if parse_words(parser, &["drop", "filter"]) {
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = names::ident(&parser.parse_identifier()?);
        return Ok(Some(FilterStatement::Drop { name, if_exists }));
    }
    Ok(None)
}

fn owner_of(actor: &Actor) -> Option<String> {
    match actor {
        Actor::Role(role) => Some(role.clone()),
        Actor::Embedder => None,
    }
}

#[async_trait]
impl Command for FilterStatement {
    fn rows_schema(&self) -> Option<SchemaRef> {
        None
    }

    async fn execute(&self, cx: &Context<'_>) -> Result<Outcome> {
        let filters = cx.engine.filters();
        match self {
            FilterStatement::Create {
                name,
                if_not_exists,
                query,
            } => {
                let definition = query.to_string();
                // planned as its creator: the query must be valid and readable by them
                let plan = cx.engine.plan_query(query.clone(), cx.actor).await?;
                if plan.schema().fields().is_empty() {
                    return Err(Error::InvalidParameter(format!(
                        "filter \"{name}\" must return the eligible item ids as its first column"
                    )));
                }
                let filter = Filter {
                    name: name.clone(),
                    definition,
                    owner: owner_of(cx.actor),
                    created_micros: now_micros(),
                };
                if !filters.records.create(filter, *if_not_exists)? {
                    cx.notices.send(Notice::with_code(
                        "42710",
                        format!("filter \"{name}\" already exists, skipping"),
                    ));
                }
                Ok(Outcome::done("CREATE FILTER"))
            }
            FilterStatement::Drop { name, if_exists } => {
                let users = cx.engine.users();
                let dropped = filters.records.drop_checked(name, *if_exists, |filter| {
                    let owner = filter.owner.as_deref().map(|o| Actor::Role(o.to_string()));
                    match users.is_superuser(cx.actor) || owner.as_ref() == Some(cx.actor) {
                        true => Ok(()),
                        false => Err(Error::MustBeOwner(format!("filter {name}"))),
                    }
                })?;
                if !dropped {
                    cx.notices.send(Notice::info(format!(
                        "filter \"{name}\" does not exist, skipping"
                    )));
                }
                Ok(Outcome::done("DROP FILTER"))
            }
        }
    }
}
