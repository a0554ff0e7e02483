//! `COPY table FROM STDIN` over the wire: the query handler answers CopyInResponse and parks the
//! statement in the connection; CopyData is gathered here and inserted at CopyDone as one atomic
//! statement, so a bad row inserts nothing.

use crate::engine::Engine;
use crate::error::Error;
use crate::server::errors::to_pgwire;
use crate::sql::parser::CopyFrom;
use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::{CopyResponse, Response, Tag};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

/// A COPY FROM STDIN waiting for its data, kept in the connection's extensions.
#[derive(Default)]
struct PendingCopy(Mutex<Option<(CopyFrom, Vec<u8>)>>);

impl PendingCopy {
    fn take(&self) -> Option<(CopyFrom, Vec<u8>)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Starts `copy` on `client`'s connection: checks the table and columns, then asks for data.
pub fn begin<C: ClientInfo>(
    engine: &Engine,
    client: &C,
    copy: CopyFrom,
) -> Result<Response, Error> {
    let width = engine.copy_input_width(&copy)?;
    let pending = client
        .session_extensions()
        .get_or_insert_with(PendingCopy::default);
    *pending.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((copy, Vec::new()));
    Ok(Response::CopyIn(CopyResponse::new(
        0,
        width,
        futures::stream::empty(),
    )))
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
        let (_, data) = slot.as_mut().ok_or_else(no_copy)?;
        data.extend_from_slice(&copy_data.data);
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (copy, data) = pending(client).take().ok_or_else(no_copy)?;
        let statement = format!("COPY {} FROM STDIN", copy.table);
        let rows = self
            .engine
            .copy_from_bytes(copy, data)
            .await
            .map_err(|e| to_pgwire(&e, &statement))?;
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
