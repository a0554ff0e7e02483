//! `BACKUP TO 'dir'`: an online, consistent, incremental backup of the data directory taken
//! by the server that holds it (`storage::backup`), for superusers. `tastedb backup` and
//! `tastedb restore` (`cli/`) do the same from the command line. `CHECKPOINT TO 'dir'` adds a
//! checkpoint to a checkpoint directory (`storage::checkpoint`): a data directory of its own that
//! a read replica serves (`tastedb serve --read-only --follow dir`); `CHECKPOINT TO
//! 's3://bucket/prefix'` uploads one ([`RemoteCheckpoints`]). `tastedb serve --checkpoint-to`
//! makes one at an interval ([`checkpoint_every`]), and [`follow`] moves a replica to the newest.

mod follow;
mod remote;
pub use follow::{Followed, first_checkpoint, follow};
pub use remote::RemoteCheckpoints;

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

/// Where checkpoints go and replicas follow them: a directory of the server's file system
/// (`/dir` or `file:///dir`), or an object store (`s3://bucket/prefix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointPlace {
    /// A checkpoint directory.
    Directory(PathBuf),
    /// The URL of checkpoints in an object store.
    ObjectStore(String),
}

impl CheckpointPlace {
    /// `text` as a place: a path, a `file://` URL, or an `s3://` URL; 22023 for other URLs.
    pub fn parse(text: &str) -> Result<CheckpointPlace> {
        if !text.contains("://") {
            return Ok(CheckpointPlace::Directory(PathBuf::from(text)));
        }
        let url = url::Url::parse(text)
            .map_err(|e| Error::InvalidParameter(format!("\"{text}\": {e}")))?;
        match url.scheme() {
            "file" => url
                .to_file_path()
                .map(CheckpointPlace::Directory)
                .map_err(|()| Error::InvalidParameter(format!("\"{text}\" is not a local path"))),
            "s3" if url.host_str().is_some_and(|bucket| !bucket.is_empty()) => {
                Ok(CheckpointPlace::ObjectStore(text.to_string()))
            }
            "s3" => Err(Error::InvalidParameter(format!(
                "\"{text}\" names no bucket"
            ))),
            other => Err(Error::InvalidParameter(format!(
                "checkpoints go to a directory, a file:// or an s3:// URL, not {other}://"
            ))),
        }
    }
}

impl std::fmt::Display for CheckpointPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointPlace::Directory(dir) => write!(f, "{}", dir.display()),
            CheckpointPlace::ObjectStore(url) => f.write_str(url),
        }
    }
}

/// Adds a checkpoint of `engine`'s data directory to `place`; returns its directory or URL.
pub async fn checkpoint_to(engine: &crate::Engine, place: &CheckpointPlace) -> Result<String> {
    let store = engine.catalog().store().clone();
    match place {
        CheckpointPlace::Directory(directory) => {
            let to = directory.clone();
            let made = blocking::run("the checkpoint", move |_| store.checkpoint(&to)).await?;
            Ok(made.display().to_string())
        }
        CheckpointPlace::ObjectStore(url) => {
            let remote = RemoteCheckpoints::at(engine.archives().stores(), url)?;
            remote.publish(store).await
        }
    }
}

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

/// `CHECKPOINT TO 'directory'` or `CHECKPOINT TO 's3://bucket/prefix'` (a bare `CHECKPOINT`,
/// PostgreSQL's, is not this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointTo {
    /// The checkpoint directory on the server, or an object-store URL.
    pub place: String,
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
    let place = parser.parse_literal_string()?;
    Ok(Some(CheckpointTo { place }))
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
        let place = CheckpointPlace::parse(&self.place)?;
        let made = checkpoint_to(cx.engine, &place).await?;
        let batch = RecordBatch::try_new(
            checkpoint_schema(),
            vec![Arc::new(StringArray::from(vec![made]))],
        )?;
        Outcome::batch(batch)
    }
}

/// Adds a checkpoint of `engine`'s data directory to `place` every `every`, for as long as the
/// future runs (`tastedb serve --checkpoint-to`); a failure is logged and tried again at the
/// next interval.
pub async fn checkpoint_every(
    engine: crate::Engine,
    place: CheckpointPlace,
    every: std::time::Duration,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match checkpoint_to(&engine, &place).await {
            Ok(made) => tracing::debug!(checkpoint = %made, "checkpoint made"),
            Err(error) => tracing::warn!("checkpoint to {place}: {error}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_go_to_a_directory_or_an_s3_url() {
        let place = |text| CheckpointPlace::parse(text);
        assert_eq!(
            place("/srv/checkpoints").unwrap(),
            CheckpointPlace::Directory("/srv/checkpoints".into())
        );
        assert_eq!(
            place("file:///srv/checkpoints").unwrap(),
            CheckpointPlace::Directory("/srv/checkpoints".into())
        );
        assert_eq!(
            place("s3://replicas/prod").unwrap(),
            CheckpointPlace::ObjectStore("s3://replicas/prod".into())
        );
        for bad in ["http://example.com/x", "s3://", "file://host/x"] {
            assert_eq!(place(bad).unwrap_err().sqlstate(), "22023", "{bad}");
        }
    }
}
