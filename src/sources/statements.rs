//! Running CREATE, ALTER and DROP SOURCE.

use crate::clock::now_micros;
use crate::engine::{Command, Context, Outcome};
use crate::error::{Error, Result};
use crate::roles::{Actor, FileAccess, Object, Privilege};
use crate::sources::runner::{partitions, watermarks};
use crate::sources::{Format, SECRET_OPTIONS, Source, SourceStatement, offsets};
use crate::sql::copy_from::listed_columns;
use crate::sql::notices::Notice;
use crate::storage::{WriteSet, keys};
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use std::collections::BTreeMap;

/// librdkafka options a source may set: how to reach and authenticate to the cluster, and how
/// to fetch. Others (plugins, commands, callbacks) are refused.
const CLIENT_OPTIONS: &[&str] = &[
    "client.id",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.ca.pem",
    "ssl.certificate.location",
    "ssl.certificate.pem",
    "ssl.key.location",
    "ssl.key.pem",
    "ssl.key.password",
    "ssl.endpoint.identification.algorithm",
    "enable.ssl.certificate.verification",
    "fetch.wait.max.ms",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "max.partition.fetch.bytes",
    "queued.max.messages.kbytes",
    "socket.timeout.ms",
    "socket.keepalive.enable",
    "reconnect.backoff.ms",
    "reconnect.backoff.max.ms",
    "isolation.level",
    "broker.address.family",
    "topic.metadata.refresh.interval.ms",
];

/// Where each message starts being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Earliest,
    Latest,
}

#[async_trait]
impl Command for SourceStatement {
    fn rows_schema(&self) -> Option<SchemaRef> {
        None
    }

    async fn execute(&self, cx: &Context<'_>) -> Result<Outcome> {
        match self {
            SourceStatement::Create {
                name,
                if_not_exists,
                options,
                table,
                columns,
            } => create(cx, name, *if_not_exists, options, table, columns).await,
            SourceStatement::Pause { name, paused } => {
                let sources = cx.engine.sources();
                check_owner(cx, &sources.get(name)?)?;
                sources.records.update(name, |source| {
                    source.paused = *paused;
                    Ok(())
                })?;
                if let Some(runner) = sources.lock().get(name) {
                    runner.set_paused(*paused);
                }
                Ok(Outcome::done("ALTER SOURCE"))
            }
            SourceStatement::Drop { name, if_exists } => {
                let sources = cx.engine.sources();
                let dropped = sources
                    .records
                    .drop_checked(name, *if_exists, |source| check_owner(cx, source))?;
                if !dropped {
                    cx.notices.send(Notice::info(format!(
                        "source \"{name}\" does not exist, skipping"
                    )));
                    return Ok(Outcome::done("DROP SOURCE"));
                }
                sources.stop(name);
                let prefix = keys::source_offset(name, None);
                let mut write = WriteSet::default();
                write.delete_range(prefix.clone(), keys::prefix_end(&prefix));
                sources.store.write(write)?;
                Ok(Outcome::done("DROP SOURCE"))
            }
        }
    }
}

/// Superusers and the source's owner may change or drop it.
fn check_owner(cx: &Context<'_>, source: &Source) -> Result<()> {
    let owner = source.owner.as_deref().map(|o| Actor::Role(o.to_string()));
    match cx.engine.users().is_superuser(cx.actor) || owner.as_ref() == Some(cx.actor) {
        true => Ok(()),
        false => Err(Error::MustBeOwner(format!("source {}", source.name))),
    }
}

async fn create(
    cx: &Context<'_>,
    name: &str,
    if_not_exists: bool,
    options: &[(String, String)],
    table: &str,
    columns: &[String],
) -> Result<Outcome> {
    let sources = cx.engine.sources();
    let users = cx.engine.users();
    users.check_network(cx.actor)?;
    users.check(
        cx.actor,
        &Object::table(table.to_string()),
        Privilege::Insert,
    )?;
    let (mut source, start) = source_of(name, options, table, columns)?;
    if source.client.keys().any(|k| k.ends_with(".location")) {
        users.check_server_files(cx.actor, FileAccess::Read)?;
    }
    let stored = cx
        .engine
        .catalog()
        .get(table)
        .ok_or_else(|| Error::UndefinedTable(table.into()))?;
    listed_columns(&stored.def, &source.columns)?;
    if sources.records.get(name).is_some() {
        if if_not_exists {
            cx.notices.send(Notice::with_code(
                "42710",
                format!("source \"{name}\" already exists, skipping"),
            ));
            return Ok(Outcome::done("CREATE SOURCE"));
        }
        return Err(Error::DuplicateObject(format!(
            "source \"{name}\" already exists"
        )));
    }
    source.owner = match cx.actor {
        Actor::Role(role) => Some(role.clone()),
        Actor::Embedder => None,
    };
    // where each partition starts is fixed now, so that a restart cannot skip messages
    let connecting = source.clone();
    let starts = crate::blocking::run("connecting to Kafka", move |_| {
        let mut config = ClientConfig::new();
        for (key, value) in &connecting.client {
            config.set(key, value);
        }
        config.set("group.id", format!("tastedb-source-{}", connecting.name));
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| Error::InvalidParameter(format!("Kafka client options: {e}")))?;
        let mut starts = BTreeMap::new();
        for partition in partitions(&consumer, &connecting.topic)? {
            let (low, high) = watermarks(&consumer, &connecting.topic, partition)?;
            let offset = match start {
                Start::Earliest => low,
                Start::Latest => high,
            };
            starts.insert(partition, offset);
        }
        Ok::<_, Error>(starts)
    })
    .await?;
    let mut write = WriteSet::default();
    for (partition, offset) in starts {
        let (key, value) = offsets::entry(name, partition, offset);
        write.put(key, value);
    }
    sources.store.write(write)?;
    sources.records.create(source.clone(), false)?;
    sources.start(&cx.engine.downgrade(), source);
    Ok(Outcome::done("CREATE SOURCE"))
}

/// The source the options describe, and where it starts reading.
fn source_of(
    name: &str,
    options: &[(String, String)],
    table: &str,
    columns: &[String],
) -> Result<(Source, Start)> {
    let mut client = BTreeMap::new();
    let mut topic = None;
    let mut format = Format::Json;
    let mut start = Start::Earliest;
    let mut batch_rows = 10_000;
    let mut batch_ms = 100;
    let mut max_message_bytes = 1 << 20;
    for (key, value) in options {
        let number = |least: u64| {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= least)
                .ok_or_else(|| {
                    Error::InvalidParameter(format!(
                        "{key} must be a whole number of at least {least}, not {value}"
                    ))
                })
        };
        match key.as_str() {
            "brokers" => {
                client.insert("bootstrap.servers".to_string(), value.clone());
            }
            "topic" => topic = Some(value.clone()),
            "format" => {
                format = choice(key, value, &[("json", Format::Json), ("csv", Format::Csv)])?
            }
            "start" => {
                start = choice(
                    key,
                    value,
                    &[("earliest", Start::Earliest), ("latest", Start::Latest)],
                )?
            }
            "batch_rows" => batch_rows = number(1)? as usize,
            "batch_ms" => batch_ms = number(1)?,
            "max_message_bytes" => max_message_bytes = number(1)? as usize,
            other => {
                // librdkafka's own options, with `_` for `.` (`security_protocol`)
                let client_key = other.replace('_', ".");
                if !CLIENT_OPTIONS.contains(&client_key.as_str()) {
                    return Err(Error::InvalidParameter(format!(
                        "unknown source option \"{other}\"; options are brokers, topic, format, \
                         start, batch_rows, batch_ms, max_message_bytes and these of \
                         librdkafka: {}",
                        CLIENT_OPTIONS.join(", ")
                    )));
                }
                client.insert(client_key, value.clone());
            }
        }
    }
    if !client.contains_key("bootstrap.servers") {
        return Err(Error::InvalidParameter(
            "a source needs brokers = 'host:port,…'".into(),
        ));
    }
    let topic =
        topic.ok_or_else(|| Error::InvalidParameter("a source needs topic = '…'".into()))?;
    let source = Source {
        name: name.to_string(),
        table: table.to_string(),
        columns: columns.to_vec(),
        topic,
        format,
        client,
        batch_rows,
        batch_ms,
        max_message_bytes,
        paused: false,
        owner: None,
        created_micros: now_micros(),
    };
    Ok((source, start))
}

/// The choice among `choices` (name, value) that `value` names (any case); 22023 otherwise.
fn choice<T: Copy>(key: &str, value: &str, choices: &[(&str, T)]) -> Result<T> {
    let found = choices
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(value));
    found.map(|&(_, choice)| choice).ok_or_else(|| {
        let names: Vec<String> = choices
            .iter()
            .map(|(name, _)| format!("'{name}'"))
            .collect();
        Error::InvalidParameter(format!(
            "{key} must be {}, not '{value}'",
            names.join(" or ")
        ))
    })
}

/// The client options of `source` as `tastedb_sources` shows them: secrets hidden.
pub fn shown_options(source: &Source) -> String {
    (source.client.iter())
        .map(
            |(key, value)| match SECRET_OPTIONS.contains(&key.as_str()) {
                true => format!("{key}=********"),
                false => format!("{key}={value}"),
            },
        )
        .collect::<Vec<_>>()
        .join(", ")
}
