//! [`Command`]: a statement TasteDB adds to SQL, and [`Family`], how a product feature's
//! statements are recognised. Every family is listed once, in [`crate::engine::FAMILIES`];
//! adding a statement means adding its parser and its `Command` in the feature's folder.

use crate::engine::{Engine, Outcome};
use crate::error::Result;
use crate::roles::Actor;
use crate::sql::notices::Notices;
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::parser::Parser;
use std::sync::Arc;

/// A parsed statement of one of TasteDB's families (TRAIN MODEL, CREATE FEATURE VIEW, CREATE
/// USER, CREATE INDEX … USING hnsw, …).
#[async_trait]
pub trait Command: std::fmt::Debug + Send + Sync {
    /// The schema of the rows it returns, known before it runs (what Describe reports);
    /// `None` when it returns a command tag only.
    fn rows_schema(&self) -> Option<SchemaRef>;

    /// Whether it only reads, so that a read-only server (a replica) runs it; statements that
    /// write are refused there with 25006 before they start.
    fn read_only(&self) -> bool {
        false
    }

    /// Runs it in `cx`.
    async fn execute(&self, cx: &Context<'_>) -> Result<Outcome>;
}

/// What a statement runs with: the engine, who runs it, and where its notices go.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The engine.
    pub engine: &'a Engine,
    /// Who runs the statement.
    pub actor: &'a Actor,
    /// Where its notices go.
    pub notices: &'a Notices,
}

/// A family's parser: one statement at the parser's position, or `None` (nothing consumed).
pub type ParseFn = fn(&mut Parser) -> Result<Option<Arc<dyn Command>>>;

/// A family of statements: its name (for documentation and errors) and its parser, which
/// looks at the statement's first tokens and returns `None`, consuming nothing, when the
/// statement is not one of its own.
pub struct Family {
    /// The family's name, e.g. `models`.
    pub name: &'static str,
    /// Parses one statement of the family at the parser's position.
    pub parse: ParseFn,
}
