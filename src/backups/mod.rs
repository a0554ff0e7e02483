//! `BACKUP TO 'dir'`: an online, consistent, incremental backup of the data directory taken
//! by the server that holds it (`storage::backup`), for superusers. `tastedb backup` and
//! `tastedb restore` (`cli/`) do the same from the command line.

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

/// The backup statement.
pub const STATEMENTS: Family = Family {
    name: "backups",
    parse: |parser| Ok(backup_statement(parser)?.map(|s| Arc::new(s) as Arc<dyn Command>)),
};

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
