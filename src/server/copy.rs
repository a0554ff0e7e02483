//! COPY over the wire. `COPY table FROM STDIN`: the query handler answers CopyInResponse and
//! parks the statement in the connection; the first CopyData starts the insert, which reads
//! the data as it arrives (through a bounded channel, so a fast client waits for the writer)
//! and commits at CopyDone as one atomic statement: a bad row, a CopyFail or a connection
//! closed before CopyDone inserts nothing. A COPY cancelled or timed out while its data
//! arrives fails at the next CopyData (the rest is discarded, as PostgreSQL does) and
//! inserts nothing. `COPY … TO STDOUT`: the query's rows are streamed as CopyData in text or
//! csv format.

use crate::engine::transaction::maybe_within;
use crate::engine::{CurrentEngine, Engine};
use crate::error::{Error, Result};
use crate::roles::Actor;
use crate::server::errors::to_pgwire;
use crate::server::stop::Stop;
use crate::server::text_format;
use crate::server::transaction_block::{Block, engine_for};
use crate::sql::parser::{CopyFormat, CopyFrom, CopyOptions};
use arrow_pg::datatypes::arrow_schema_to_pg_fields;
use arrow_pg::encoder::encode_value;
use async_trait::async_trait;
use bytes::{Buf, Bytes};
use datafusion::arrow::array::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyCsvOptions, CopyEncoder, CopyTextOptions};
use pgwire::api::results::{CopyResponse, FieldInfo, Response, Tag};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail, CopyOutResponse};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// CopyData messages in flight between the connection and the insert.
const CHUNKS_IN_FLIGHT: usize = 16;

/// A COPY FROM STDIN waiting for (more of) its data, kept in the connection's extensions.
#[derive(Default)]
struct PendingCopy(Mutex<Option<Copying>>);

/// The statement and what stops it; once data came, the insert reading it.
struct Copying {
    copy: Option<CopyFrom>,
    stop: Stop,
    feed: Option<Feed>,
}

/// The running insert of a COPY FROM STDIN and the channel that feeds it.
struct Feed {
    chunks: mpsc::Sender<Chunk>,
    insert: JoinHandle<Result<u64>>,
}

/// What the connection tells the insert.
enum Chunk {
    Data(Bytes),
    /// CopyDone: the data is complete.
    Done,
    /// CopyFail: the client gave up; nothing is to be written.
    Failed(String),
}

impl PendingCopy {
    fn take(&self) -> Option<Copying> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The COPY data as the insert reads it, from the connection's channel. The data ends only
/// at CopyDone: a closed channel (the connection went away) or a CopyFail is an error, so the
/// statement writes nothing.
struct Incoming {
    chunks: mpsc::Receiver<Chunk>,
    current: Bytes,
    done: bool,
}

impl std::io::Read for Incoming {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while !self.current.has_remaining() && !self.done {
            match self.chunks.blocking_recv() {
                Some(Chunk::Data(data)) => self.current = data,
                Some(Chunk::Done) => self.done = true,
                Some(Chunk::Failed(message)) => {
                    return Err(std::io::Error::other(format!(
                        "COPY from stdin failed: {message}"
                    )));
                }
                None => {
                    return Err(std::io::Error::other(
                        "the connection ended before the COPY data did",
                    ));
                }
            }
        }
        let n = buf.len().min(self.current.remaining());
        self.current.copy_to_slice(&mut buf[..n]);
        Ok(n)
    }
}

/// Starts `copy` on `client`'s connection: checks the table and columns, then asks for data;
/// `stop` stops it.
pub fn begin<C: ClientInfo>(
    engine: &Engine,
    client: &C,
    copy: CopyFrom,
    actor: &Actor,
    stop: Stop,
) -> Result<Response> {
    let width = engine.copy_input_width(&copy, actor)?;
    let format = i8::from(copy.options.format == Some(CopyFormat::Binary));
    let pending = client
        .session_extensions()
        .get_or_insert_with(PendingCopy::default);
    *pending.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Copying {
        copy: Some(copy),
        stop,
        feed: None,
    });
    Ok(Response::CopyIn(CopyResponse::new(
        format,
        width,
        futures::stream::empty(),
    )))
}

/// Streams the rows of `stream` as COPY data (text by default, or csv with an optional header).
pub fn copy_out(
    stream: SendableRecordBatchStream,
    options: &CopyOptions,
    sql: &str,
) -> PgWireResult<Response> {
    let schema = stream.schema();
    let fields = Arc::new(arrow_schema_to_pg_fields(
        &schema,
        &Format::UnifiedText,
        None,
    )?);
    let csv = options.format == Some(CopyFormat::Csv);
    let delimiter = char::from(options.delimiter.unwrap_or(if csv { b',' } else { b'\t' }));
    let mut encoder = if csv {
        let csv_options = CopyCsvOptions {
            delimiter: delimiter.to_string().into(),
            ..Default::default()
        };
        CopyEncoder::new_csv(fields.clone(), csv_options)
    } else {
        let text_options = CopyTextOptions {
            delimiter: delimiter.to_string().into(),
            ..Default::default()
        };
        CopyEncoder::new_text(fields.clone(), text_options)
    };
    // The header shares the first row's CopyData: pgwire counts CopyData messages as rows.
    let mut header = (csv && options.header).then(|| {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        format!("{}\n", names.join(&delimiter.to_string())).into_bytes()
    });
    let columns = fields.len();
    let sql = sql.to_string();
    let data = stream.flat_map(move |batch| {
        // floats and timestamps as PostgreSQL prints them
        let batch = batch
            .map_err(Error::from)
            .and_then(|batch| Ok(text_format::postgres_text(batch, &fields)?));
        let rows: Vec<PgWireResult<CopyData>> = match batch {
            Err(e) => vec![Err(to_pgwire(&e, &sql))],
            Ok(batch) => (0..batch.num_rows())
                .map(|row| {
                    let mut data = encode_row(&mut encoder, &batch, row, &fields)?;
                    if let Some(header) = header.take() {
                        let mut bytes = header;
                        bytes.extend_from_slice(&data.data);
                        data = CopyData::new(bytes.into());
                    }
                    Ok(data)
                })
                .collect(),
        };
        futures::stream::iter(rows)
    });
    Ok(Response::CopyOut(CopyResponse::new(0, columns, data)))
}

/// Sends the rows of `stream` to `client` as binary COPY data and answers the `COPY n` tag.
/// It sends the messages itself because pgwire counts every CopyData but the trailer as a
/// row, and an empty result still sends the header.
pub async fn send_binary<C>(
    client: &mut C,
    mut stream: SendableRecordBatchStream,
    sql: &str,
) -> PgWireResult<Response>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let schema = stream.schema();
    let fields = Arc::new(arrow_schema_to_pg_fields(
        &schema,
        &Format::UnifiedBinary,
        None,
    )?);
    let columns = fields.len();
    let width = i16::try_from(columns).unwrap_or(i16::MAX);
    let start = CopyOutResponse::new(1, width, vec![1; columns]);
    client
        .send(PgWireBackendMessage::CopyOutResponse(start))
        .await?;
    let mut encoder = CopyEncoder::new_binary(fields.clone());
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| to_pgwire(&Error::from(e), sql))?;
        for row in 0..batch.num_rows() {
            let data = encode_row(&mut encoder, &batch, row, &fields)?;
            client.feed(PgWireBackendMessage::CopyData(data)).await?;
            rows += 1;
        }
    }
    if rows == 0 {
        let mut header = b"PGCOPY\n\xff\r\n\0".to_vec();
        header.extend_from_slice(&[0; 8]); // flags, header extension length
        let header = CopyData::new(header.into());
        client.feed(PgWireBackendMessage::CopyData(header)).await?;
    }
    let trailer = CopyEncoder::finish_copy_binary();
    client.feed(PgWireBackendMessage::CopyData(trailer)).await?;
    client
        .send(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    Ok(Response::Execution(Tag::new("COPY").with_rows(rows)))
}

/// Row `row` of `batch` as one CopyData message of `encoder`'s format.
fn encode_row(
    encoder: &mut CopyEncoder,
    batch: &RecordBatch,
    row: usize,
    fields: &[FieldInfo],
) -> PgWireResult<CopyData> {
    let schema = batch.schema();
    let columns = batch.columns().iter().zip(schema.fields()).zip(fields);
    for ((column, field), pg_field) in columns {
        encode_value(encoder, column, row, field, pg_field)?;
    }
    Ok(encoder.take_copy())
}

/// Receives the data of a COPY FROM STDIN.
pub struct CopyIn {
    engine: CurrentEngine,
}

impl CopyIn {
    /// A handler inserting through the engine current when a COPY's data starts.
    pub fn new(engine: CurrentEngine) -> Self {
        CopyIn { engine }
    }
}

fn pending<C: ClientInfo>(client: &C) -> Arc<PendingCopy> {
    client
        .session_extensions()
        .get_or_insert_with(PendingCopy::default)
}

fn no_copy() -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "08P01".into(),
        "COPY data arrived outside of a COPY FROM STDIN".into(),
    )))
}

/// The channel feeding the insert of the pending COPY, started on first use.
fn feed<C: ClientInfo>(
    engine: &Engine,
    client: &C,
    copying: &mut Copying,
) -> Option<mpsc::Sender<Chunk>> {
    if copying.feed.is_none() {
        let copy = copying.copy.take()?;
        let (chunks, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let incoming = Incoming {
            chunks: receiver,
            current: Bytes::new(),
            done: false,
        };
        let engine = engine.clone();
        let stop = copying.stop.clone();
        let txn = Block::of(client).transaction();
        let insert = tokio::spawn(async move {
            let load = engine.copy_from_reader(copy, incoming);
            maybe_within(txn, stop.within(load)).await
        });
        copying.feed = Some(Feed { chunks, insert });
    }
    copying.feed.as_ref().map(|feed| feed.chunks.clone())
}

/// The outcome of the pending COPY's insert, once it has ended.
async fn finished(copying: Copying) -> Result<u64> {
    match copying.feed {
        Some(feed) => {
            drop(feed.chunks);
            (feed.insert.await)
                .unwrap_or_else(|e| Err(Error::Internal(format!("COPY failed: {e}"))))
        }
        None => Err(Error::Internal("COPY ended before it started".into())),
    }
}

#[async_trait]
impl CopyHandler for CopyIn {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let pending = pending(client);
        let (chunks, statement) = {
            let mut slot = pending.0.lock().unwrap_or_else(|p| p.into_inner());
            let copying = slot.as_mut().ok_or_else(no_copy)?;
            if let Some(stopped) = copying.stop.stopped() {
                slot.take();
                Block::of(client).failed();
                return Err(to_pgwire(&stopped, "COPY FROM STDIN"));
            }
            (
                feed(&engine_for(&self.engine, client), client, copying),
                "COPY FROM STDIN",
            )
        };
        let sent = match chunks {
            Some(chunks) => chunks.send(Chunk::Data(copy_data.data)).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The insert ended before the data did: it failed (a bad row, a stop).
        let copying = pending.take().ok_or_else(no_copy)?;
        let error = match finished(copying).await {
            Err(e) => e,
            Ok(_) => Error::Internal("COPY ended before its data".into()),
        };
        Block::of(client).failed();
        Err(to_pgwire(&error, statement))
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let pending = pending(client);
        let (chunks, statement) = {
            let mut slot = pending.0.lock().unwrap_or_else(|p| p.into_inner());
            let copying = slot.as_mut().ok_or_else(no_copy)?;
            let statement = (copying.copy.as_ref()).map_or("COPY FROM STDIN".to_string(), |c| {
                format!("COPY {} FROM STDIN", c.table)
            });
            (
                feed(&engine_for(&self.engine, client), client, copying),
                statement,
            )
        };
        if let Some(chunks) = chunks {
            // a closed channel means the insert has ended already: its outcome says why
            let _ = chunks.send(Chunk::Done).await;
        }
        let copying = pending.take().ok_or_else(no_copy)?;
        let block = Block::of(client);
        let rows = finished(copying).await.map_err(|e| {
            block.failed();
            to_pgwire(&e, &statement)
        })?;
        self.engine.get().metrics().rows_written(rows);
        let tag = Tag::new("COPY").with_rows(rows as usize);
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(copying) = pending(client).take() {
            if let Some(feed) = &copying.feed {
                let _ = feed.chunks.send(Chunk::Failed(fail.message.clone())).await;
            }
            // wait for the insert to give up, so that nothing of it is left behind
            let _ = finished(copying).await;
        }
        Block::of(client).failed();
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".into(),
            "57014".into(),
            format!("COPY from stdin failed: {}", fail.message),
        )))
    }
}
