//! `BACKUP TO 'dir'`: an online, consistent, incremental backup of the data directory taken
//! by the server that holds it (`storage::backup`), for superusers. `tastedb backup` and
//! `tastedb restore` (`cli/`) do the same from the command line. `CHECKPOINT TO 'dir'` adds a
//! checkpoint to a checkpoint directory (`storage::checkpoint`): a data directory of its own that
//! a read replica serves (`tastedb serve --read-only --follow dir`); `tastedb serve
//! --checkpoint-to dir` makes one at an interval ([`checkpoint_every`]), and [`follow`] moves a
//! replica to the newest.

mod follow;
pub use follow::{first_checkpoint, follow};

use crate::blocking;
use crate::engine::{Command, Context, Family, Outcome};
use crate::error::{Error, Result};
use async_trait::async_trait;
use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use std::path::PathBuf;
use std::sync::Arc;

/// The backup and checkpoint statements.
pub const STATEMENTS: Family = Family {
    name: "backups",
    parse: |parser| {
        if let Some(checkpoint) = checkpoint_statement(parser)? {
            return Ok(Some(Arc::new(checkpoint) as Arc<dyn Command>));
        }
        Ok(backup_statement(parser)?.map(|s| Arc::new(s) as Arc<dyn Command>))
    },
};

/// `CHECKPOINT TO 'directory'` (a bare `CHECKPOINT`, PostgreSQL's, is not this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointTo {
    /// The checkpoint directory on the server.
    pub directory: String,
}

fn checkpoint_statement(parser: &mut Parser) -> Result<Option<CheckpointTo>> {
    let word = |n: usize, expected: &str| {
        matches!(&parser.peek_nth_token_ref(n).token,
            Token::Word(w) if w.value.eq_ignore_ascii_case(expected))
    };
    if !(word(0, "checkpoint") && word(1, "to")) {
        return Ok(None);
    }
    parser.next_token();
    parser.next_token();
    let directory = parser.parse_literal_string()?;
    Ok(Some(CheckpointTo { directory }))
}

fn checkpoint_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "checkpoint",
        DataType::Utf8,
        false,
    )]))
}

#[async_trait]
impl Command for CheckpointTo {
    fn rows_schema(&self) -> Option<SchemaRef> {
        Some(checkpoint_schema())
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn execute(&self, cx: &Context<'_>) -> Result<Outcome> {
        if !cx.engine.users().is_superuser(cx.actor) {
            return Err(Error::InsufficientPrivilege(
                "to checkpoint the data directory: only superusers may".into(),
            ));
        }
        let store = cx.engine.catalog().store().clone();
        let directory = PathBuf::from(&self.directory);
        let made = blocking::run("the checkpoint", move |_| store.checkpoint(&directory)).await?;
        let batch = RecordBatch::try_new(
            checkpoint_schema(),
            vec![Arc::new(StringArray::from(vec![
                made.display().to_string(),
            ]))],
        )?;
        Outcome::batch(batch)
    }
}

/// Adds a checkpoint of `engine`'s data directory to `directory` every `every`, for as long as
/// the future runs (`tastedb serve --checkpoint-to`); a failure is logged and tried again at the
/// next interval.
pub async fn checkpoint_every(
    engine: crate::Engine,
    directory: PathBuf,
    every: std::time::Duration,
) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let store = engine.catalog().store().clone();
        let to = directory.clone();
        match blocking::run("the checkpoint", move |_| store.checkpoint(&to)).await {
            Ok(made) => tracing::debug!(checkpoint = %made.display(), "checkpoint made"),
            Err(error) => tracing::warn!("checkpoint to {}: {error}", directory.display()),
        }
    }
}

/// `BACKUP TO 'directory'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupTo {
    /// The backup directory on the server.
    pub directory: String,
}

fn backup_statement(parser: &mut Parser) -> Result<Option<BackupTo>> {
    let is_backup = matches!(
        &parser.peek_token_ref().token,
        Token::Word(w) if w.value.eq_ignore_ascii_case("backup")
    );
    if !is_backup {
        return Ok(None);
    }
    parser.next_token();
    let to = parser.next_token();
    if !matches!(&to.token, Token::Word(w) if w.value.eq_ignore_ascii_case("to")) {
        return Err(Error::Syntax(format!(
            "expected TO 'directory' after BACKUP, found {}",
            to.token
        )));
    }
    let directory = parser.parse_literal_string()?;
    Ok(Some(BackupTo { directory }))
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("backup_id", DataType::Int64, false),
        Field::new("directory", DataType::Utf8, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new("files", DataType::Int64, false),
    ]))
}

#[async_trait]
impl Command for BackupTo {
    fn rows_schema(&self) -> Option<SchemaRef> {
        Some(schema())
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn execute(&self, cx: &Context<'_>) -> Result<Outcome> {
        if !cx.engine.users().is_superuser(cx.actor) {
            return Err(Error::InsufficientPrivilege(
                "to back up the data directory: only superusers may".into(),
            ));
        }
        let store = cx.engine.catalog().store().clone();
        let directory = PathBuf::from(&self.directory);
        let to = directory.clone();
        let info = blocking::run("the backup", move |_| store.backup(&to)).await?;
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(vec![i64::from(info.id)])),
                Arc::new(StringArray::from(vec![directory.display().to_string()])),
                Arc::new(Int64Array::from(vec![info.bytes as i64])),
                Arc::new(Int64Array::from(vec![i64::from(info.files)])),
            ],
        )?;
        Outcome::batch(batch)
    }
}
