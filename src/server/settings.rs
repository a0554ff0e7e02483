//! Session statements a Postgres driver sends that are about the connection, not the data:
//! `SET` and `SHOW` of the usual parameters (transaction blocks are
//! [`crate::server::transaction_block`]'s). `SET` of a Postgres parameter is kept per
//! connection; `SET datafusion.…` and `SHOW datafusion.…` go to the engine.

use crate::engine::Statement;
use crate::error::Error;
use crate::server::transaction_block::isolation_of;
use crate::storage::Isolation;
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::sql::sqlparser::ast::{
    Expr, Ident, Set, Statement as SqlStatement, TransactionMode, Value,
};
use pgwire::api::ClientInfo;
use pgwire::api::results::{Response, Tag};
use std::sync::Arc;

/// A statement about the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionStatement {
    /// `SET name = value` of a Postgres parameter.
    Set(String, String),
    /// `SHOW name` of a Postgres parameter.
    Show(String),
}

/// Recognises a session statement; `datafusion.*` settings are left to the engine.
pub fn session_statement(statement: &Statement) -> Option<SessionStatement> {
    let sql = statement.sql()?;
    match sql {
        SqlStatement::Set(Set::SingleAssignment {
            variable, values, ..
        }) => {
            let name = variable.to_string().to_lowercase();
            let value = values.iter().map(value_text).collect::<Vec<_>>().join(", ");
            (!is_engine_setting(&name)).then_some(SessionStatement::Set(name, value))
        }
        SqlStatement::Set(Set::SetTimeZone { value, .. }) => {
            Some(SessionStatement::Set("timezone".into(), value_text(value)))
        }
        SqlStatement::Set(Set::SetTransaction { modes, session, .. }) => {
            // `SET TRANSACTION` of a block is the block's (`transaction_block`); this is
            // `SET SESSION CHARACTERISTICS AS TRANSACTION`, or a snapshot import
            let level = modes.iter().find_map(|mode| match mode {
                TransactionMode::IsolationLevel(level) => Some(level.to_string().to_lowercase()),
                TransactionMode::AccessMode(_) => None,
            });
            let name = if *session {
                "default_transaction_isolation"
            } else {
                "transaction_isolation"
            };
            Some(SessionStatement::Set(
                name.into(),
                level.unwrap_or_else(|| "read committed".into()),
            ))
        }
        SqlStatement::ShowVariable { variable } => {
            let name = show_name(variable);
            (!is_engine_setting(&name)).then_some(SessionStatement::Show(name))
        }
        _ => None,
    }
}

fn is_engine_setting(name: &str) -> bool {
    name.starts_with("datafusion.") || name.starts_with("tastedb.") || name == "all"
}

/// The name a SHOW asks for: `datafusion.x` and `tastedb.x` keep their dots (sqlparser splits
/// them into parts, as it splits `TIME ZONE` into words).
fn show_name(variable: &[Ident]) -> String {
    let parts: Vec<String> = variable.iter().map(|i| i.value.to_lowercase()).collect();
    let dotted = parts
        .first()
        .is_some_and(|first| first == "datafusion" || first == "tastedb");
    let name = parts.join(if dotted { "." } else { " " });
    match name.as_str() {
        "time zone" => "timezone".into(),
        "transaction isolation level" => "transaction_isolation".into(),
        _ => name,
    }
}

fn value_text(expr: &Expr) -> String {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(ident) => ident.value.clone(),
        other => other.to_string(),
    }
}

/// The `-c name=value` (or `--name=value`) settings of a startup packet's `options` (libpq's
/// `PGOPTIONS`): words split at spaces, a backslash keeping the character after it.
pub fn startup_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_ascii_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut settings = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let setting = match word.strip_prefix("--") {
            Some(setting) => Some(setting.to_string()),
            None if word == "-c" => words.next(),
            None => word.strip_prefix("-c").map(str::to_string),
        };
        if let Some((name, value)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            settings.push((name.replace('-', "_").to_lowercase(), value.to_string()));
        }
    }
    settings
}

/// 22023 (or the timeout's error) when `value` is no value of parameter `name`.
pub fn check(name: &str, value: &str) -> Result<(), Error> {
    if crate::sql::timeouts::TIMEOUTS.contains(&name) {
        crate::sql::timeouts::parse(name, value)?;
    }
    if name == "default_transaction_isolation" && Isolation::named(value).is_none() {
        return Err(Error::InvalidParameter(format!(
            "invalid value for parameter \"{name}\": \"{value}\""
        )));
    }
    Ok(())
}

/// Runs a session statement for `client`.
pub fn run<C: ClientInfo>(client: &mut C, statement: SessionStatement) -> Result<Response, Error> {
    Ok(match statement {
        SessionStatement::Set(name, value) => {
            check(&name, &value)?;
            client.metadata_mut().insert(name, value);
            Response::Execution(Tag::new("SET"))
        }
        SessionStatement::Show(_) => {
            return Err(Error::Internal("SHOW returns rows: use show_rows".into()));
        }
    })
}

/// The one-row result of `SHOW name`, or 42704 for a parameter TasteDB does not know.
pub fn show_rows<C: ClientInfo>(
    client: &C,
    name: &str,
) -> Result<SendableRecordBatchStream, Error> {
    let set = client
        .metadata()
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.clone());
    let set = match name {
        "transaction_isolation" => Some(isolation_of(client).name().to_string()),
        _ => set,
    };
    let value = set
        .or_else(|| crate::sql::default_setting(name).map(str::to_string))
        .ok_or_else(|| {
            Error::UndefinedObject(format!("unrecognized configuration parameter \"{name}\""))
        })?;
    let schema = Arc::new(show_schema(name));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(vec![value]))],
    )?;
    Ok(Box::pin(MemoryStream::try_new(vec![batch], schema, None)?))
}

/// The schema of `SHOW name`: one text column called `name`.
pub fn show_schema(name: &str) -> Schema {
    Schema::new(vec![Field::new(name, DataType::Utf8, false)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_options_are_read_as_libpq_writes_them() {
        let options = r"-c default_transaction_isolation=read\ committed --statement-timeout=5s -cwork_mem=4MB -x";
        assert_eq!(
            startup_options(options),
            [
                (
                    "default_transaction_isolation".into(),
                    "read committed".into()
                ),
                ("statement_timeout".into(), "5s".into()),
                ("work_mem".into(), "4MB".into()),
            ]
        );
    }
}
