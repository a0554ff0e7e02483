//! The storage parameters that set up a table's archive, as `ALTER TABLE … SET (…)` and
//! `RESET (…)` give them (`engine::retention` hands them here): `archive` (the URL of the
//! archive's root), `archive_every` (an interval, 5 minutes by default) and `partition_by`
//! (`'day(ts)'`, see `partition`). Setting them up writes files on the server or in its
//! object store, so it takes the table's owner who may also write the server's files.

use crate::archive::{Archive, manifest, partition, stores};
use crate::clock::now_micros;
use crate::engine::Context;
use crate::error::{Error, Result};
use crate::roles::{Actor, FileAccess};
use crate::storage::StoredTable;
use datafusion::sql::sqlparser::ast::{Expr, Value};

/// The names of the archive's parameters.
pub const PARAMETERS: &[&str] = &[ARCHIVE, ARCHIVE_EVERY, PARTITION_BY];

const ARCHIVE: &str = "archive";
const ARCHIVE_EVERY: &str = "archive_every";
const PARTITION_BY: &str = "partition_by";
const DEFAULT_EVERY: &str = "5 minutes";

/// Applies `options` (only names of [`PARAMETERS`]) to the archive of `table`.
pub async fn set(cx: &Context<'_>, table: &StoredTable, options: &[(String, Expr)]) -> Result<()> {
    if options.is_empty() {
        return Ok(());
    }
    let def = &table.def;
    if def.has_primary_key() {
        return Err(Error::FeatureNotSupported(format!(
            "table \"{}\" has a primary key: only tables without one (logs of events, where rows \
             are added, not changed) can be archived",
            def.name
        )));
    }
    cx.engine
        .users()
        .check_server_files(cx.actor, FileAccess::Write)?;
    let archives = cx.engine.archives();
    let existing = archives.get(&def.name);
    let mut url = existing.as_ref().map(|a| a.url.clone());
    let mut every = existing.as_ref().map(|a| (a.every.clone(), a.every_micros));
    let mut levels = existing.as_ref().map(|a| a.partition_by.clone());
    for (name, value) in options {
        let text = text(name, value)?;
        match name.as_str() {
            ARCHIVE => url = Some(archive_url(&text)?),
            ARCHIVE_EVERY => every = Some((text.clone(), interval(&text)?)),
            _ => levels = Some(partition::parse(&text, def)?),
        }
    }
    let Some(url) = url else {
        return Err(Error::InvalidParameter(
            "archive_every and partition_by need archive = 'file:///…' or 's3://bucket/prefix'"
                .into(),
        ));
    };
    let (every, every_micros) = match every {
        Some(every) => every,
        None => (DEFAULT_EVERY.to_string(), interval(DEFAULT_EVERY)?),
    };
    let archive = Archive {
        table: def.name.clone(),
        table_id: def.id,
        url,
        every,
        every_micros,
        partition_by: levels.unwrap_or_default(),
        owner: match cx.actor {
            Actor::Role(role) => Some(role.clone()),
            Actor::Embedder => None,
        },
        created_micros: now_micros(),
    };
    let store = cx.engine.catalog().store().clone();
    if existing.as_ref().is_none_or(|e| e.url != archive.url) {
        archives.check_empty(&archive.url).await?;
    }
    if let Some(existing) = &existing {
        let moved = existing.url != archive.url || existing.partition_by != archive.partition_by;
        if moved && manifest::last(&store, &def.name)?.is_some() {
            return Err(Error::ObjectNotInPrerequisiteState(format!(
                "table \"{}\" is archived to {} partitioned by ({}): RESET (archive) first to \
                 archive it elsewhere or otherwise",
                def.name,
                existing.url,
                partition::describe(&existing.partition_by)
            )));
        }
    }
    archives.put(&cx.engine.downgrade(), archive)
}

/// Takes the parameters `names` (only names of [`PARAMETERS`]) of `table`'s archive back to
/// their defaults; `archive` ends the archive.
pub async fn reset(cx: &Context<'_>, table: &StoredTable, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let def = &table.def;
    let archives = cx.engine.archives();
    let Some(mut archive) = archives.get(&def.name) else {
        return Ok(());
    };
    if names.iter().any(|n| n == ARCHIVE) {
        return archives.remove(&def.name);
    }
    for name in names {
        if name == ARCHIVE_EVERY {
            archive.every = DEFAULT_EVERY.to_string();
            archive.every_micros = interval(DEFAULT_EVERY)?;
        } else if !archive.partition_by.is_empty() {
            let store = cx.engine.catalog().store();
            if manifest::last(store, &def.name)?.is_some() {
                return Err(Error::ObjectNotInPrerequisiteState(format!(
                    "table \"{}\" has archived files partitioned by ({}): RESET (archive) first",
                    def.name,
                    partition::describe(&archive.partition_by)
                )));
            }
            archive.partition_by.clear();
        }
    }
    archives.put(&cx.engine.downgrade(), archive)
}

/// The text of the parameter `name`'s value: a string or a number.
fn text(name: &str, value: &Expr) -> Result<String> {
    match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Ok(s.clone()),
            Value::Number(n, _) => Ok(n.clone()),
            _ => Err(Error::InvalidParameter(format!(
                "{name} takes a string, not {value}"
            ))),
        },
        _ => Err(Error::InvalidParameter(format!(
            "{name} takes a string, not {value}"
        ))),
    }
}

/// The archive's root URL without a trailing `/`.
fn archive_url(text: &str) -> Result<String> {
    let parsed = stores::parse(text)?;
    if parsed.scheme() == "s3" && parsed.host_str().unwrap_or_default().is_empty() {
        return Err(Error::InvalidParameter(format!(
            "\"{text}\": an s3:// URL names a bucket"
        )));
    }
    Ok(text.trim_end_matches('/').to_string())
}

/// The interval `text` in microseconds (a bare number is seconds); 22023 unless positive.
fn interval(text: &str) -> Result<i64> {
    let micros = crate::engine::interval_micros(text)?;
    match micros > 0 {
        true => Ok(micros),
        false => Err(Error::InvalidParameter(format!(
            "archive_every '{text}' must be a positive interval"
        ))),
    }
}
