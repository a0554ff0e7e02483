//! COPY over the wire. `COPY table FROM STDIN`: the query handler answers CopyInResponse and
//! parks the statement in the connection; CopyData is gathered here and inserted at CopyDone as
//! one atomic statement, so a bad row inserts nothing. A COPY cancelled or timed out while its
//! data arrives fails at the next CopyData (the rest is discarded, as PostgreSQL does) and
//! inserts nothing. `COPY … TO STDOUT`: the query's rows are
//! streamed as CopyData in text or csv format.

use crate::engine::Engine;
use crate::engine::transaction::maybe_within;
use crate::error::Error;
use crate::roles::Actor;
use crate::server::errors::to_pgwire;
use crate::server::stop::Stop;
use crate::server::text_format;
use crate::server::transaction_block::Block;
use crate::sql::parser::{CopyFormat, CopyFrom, CopyOptions};
use arrow_pg::datatypes::arrow_schema_to_pg_fields;
use arrow_pg::encoder::encode_value;
use async_trait::async_trait;
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

/// A COPY FROM STDIN waiting for its data, kept in the connection's extensions.
#[derive(Default)]
struct PendingCopy(Mutex<Option<Copying>>);

/// The statement, what stops it, and the data so far.
type Copying = (CopyFrom, Stop, Vec<u8>);

impl PendingCopy {
    fn take(&self) -> Option<Copying> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
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
) -> Result<Response, Error> {
    let width = engine.copy_input_width(&copy, actor)?;
    let format = i8::from(copy.options.format == Some(CopyFormat::Binary));
    let pending = client
        .session_extensions()
        .get_or_insert_with(PendingCopy::default);
    *pending.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((copy, stop, Vec::new()));
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
    engine: Engine,
}

impl CopyIn {
    /// A handler inserting through `engine`.
    pub fn new(engine: Engine) -> Self {
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

#[async_trait]
impl CopyHandler for CopyIn {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let pending = pending(client);
        let mut slot = pending.0.lock().unwrap_or_else(|p| p.into_inner());
        let (copy, stop, data) = slot.as_mut().ok_or_else(no_copy)?;
        if let Some(stopped) = stop.stopped() {
            let statement = format!("COPY {} FROM STDIN", copy.table);
            slot.take();
            return Err(to_pgwire(&stopped, &statement));
        }
        data.extend_from_slice(&copy_data.data);
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (copy, stop, data) = pending(client).take().ok_or_else(no_copy)?;
        let statement = format!("COPY {} FROM STDIN", copy.table);
        let block = Block::of(client);
        let load = self.engine.copy_from_bytes(copy, data);
        let rows = maybe_within(block.transaction(), stop.within(load))
            .await
            .map_err(|e| {
                block.failed();
                to_pgwire(&e, &statement)
            })?;
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
        pending(client).take();
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".into(),
            "57014".into(),
            format!("COPY from stdin failed: {}", fail.message),
        )))
    }
}
