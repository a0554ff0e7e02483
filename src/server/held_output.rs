//! Answers to extended-protocol messages held until the client waits for them, as
//! PostgreSQL's backend holds them: pgwire flushes the socket after each BindComplete,
//! CommandComplete and CloseComplete, so one prepared Bind/Execute/Sync cost three writes,
//! and each write could wake the client for a partial answer. Wrapped in [`HeldOutput`], a
//! connection writes when Sync (or Flush) asks, when its buffer fills, and at once for what
//! PostgreSQL also sends at once: notices, errors and the start of a COPY.

use futures::Sink;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState, SessionExtensions};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::startup::SecretKey;
use pgwire::messages::{PgWireBackendMessage, ProtocolVersion};
use pgwire::tokio::tokio_rustls::rustls::pki_types::CertificateDer;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A connection whose flushes write only what the client must see before it sends more.
pub struct HeldOutput<'a, C> {
    client: &'a mut C,
    /// A message fed since the last write must reach the client now.
    urgent: bool,
}

impl<'a, C> HeldOutput<'a, C> {
    /// Wraps `client` for the handling of one message.
    pub fn new(client: &'a mut C) -> Self {
        HeldOutput {
            client,
            urgent: false,
        }
    }
}

/// Messages PostgreSQL flushes as soon as it sends them: a client may be waiting for them
/// without having sent Sync (a COPY's start), or should see them while a statement still
/// runs (notices, errors).
fn must_reach_client_now(message: &PgWireBackendMessage) -> bool {
    matches!(
        message,
        PgWireBackendMessage::NoticeResponse(_)
            | PgWireBackendMessage::ErrorResponse(_)
            | PgWireBackendMessage::CopyInResponse(_)
            | PgWireBackendMessage::CopyOutResponse(_)
            | PgWireBackendMessage::CopyBothResponse(_)
    )
}

impl<C> Sink<PgWireBackendMessage> for HeldOutput<'_, C>
where
    C: Sink<PgWireBackendMessage> + Unpin,
{
    type Error = C::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        Pin::new(&mut *self.client).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: PgWireBackendMessage) -> Result<(), C::Error> {
        self.urgent |= must_reach_client_now(&item);
        Pin::new(&mut *self.client).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        if !self.urgent {
            return Poll::Ready(Ok(()));
        }
        let flushed = Pin::new(&mut *self.client).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            self.urgent = false;
        }
        flushed
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        Pin::new(&mut *self.client).poll_close(cx)
    }
}

impl<C: ClientPortalStore> ClientPortalStore for HeldOutput<'_, C> {
    type PortalStore = C::PortalStore;

    fn portal_store(&self) -> &Self::PortalStore {
        self.client.portal_store()
    }
}

impl<C: ClientInfo> ClientInfo for HeldOutput<'_, C> {
    fn socket_addr(&self) -> SocketAddr {
        self.client.socket_addr()
    }

    fn is_secure(&self) -> bool {
        self.client.is_secure()
    }

    fn protocol_version(&self) -> ProtocolVersion {
        self.client.protocol_version()
    }

    fn set_protocol_version(&mut self, version: ProtocolVersion) {
        self.client.set_protocol_version(version)
    }

    fn pid_and_secret_key(&self) -> (i32, SecretKey) {
        self.client.pid_and_secret_key()
    }

    fn set_pid_and_secret_key(&mut self, pid: i32, secret_key: SecretKey) {
        self.client.set_pid_and_secret_key(pid, secret_key)
    }

    fn state(&self) -> PgWireConnectionState {
        self.client.state()
    }

    fn set_state(&mut self, new_state: PgWireConnectionState) {
        self.client.set_state(new_state)
    }

    fn transaction_status(&self) -> TransactionStatus {
        self.client.transaction_status()
    }

    fn set_transaction_status(&mut self, new_status: TransactionStatus) {
        self.client.set_transaction_status(new_status)
    }

    fn metadata(&self) -> &HashMap<String, String> {
        self.client.metadata()
    }

    fn metadata_mut(&mut self) -> &mut HashMap<String, String> {
        self.client.metadata_mut()
    }

    fn session_extensions(&self) -> &SessionExtensions {
        self.client.session_extensions()
    }

    fn sni_server_name(&self) -> Option<&str> {
        self.client.sni_server_name()
    }

    fn client_certificates<'b>(&self) -> Option<&[CertificateDer<'b>]> {
        self.client.client_certificates()
    }
}
