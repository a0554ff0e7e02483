//! Ending a connection from the server's side while its client waits: PostgreSQL's
//! `idle_in_transaction_session_timeout` ends a session that sits in a transaction block,
//! with FATAL 25P03, at once. pgwire's message loop offers no way to end a connection between
//! messages, so the connection's task drops that loop when [`Ending`] fires and writes the
//! FATAL ErrorResponse itself, on a duplicate of the socket kept for this.

use pgwire::error::ErrorInfo;
use pgwire::messages::Message;
use pgwire::messages::response::ErrorResponse;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The message PostgreSQL ends such a session with.
const MESSAGE: &str = "terminating connection due to idle-in-transaction timeout";

/// How one connection may be ended by the server (see the module documentation).
#[derive(Debug)]
pub struct Ending {
    token: CancellationToken,
    /// Whether the client negotiated TLS: then no plain-text goodbye can be written.
    secure: AtomicBool,
    /// The duplicate of the connection's socket that the goodbye is written on.
    socket: Mutex<Option<OwnedFd>>,
}

impl Ending {
    /// The ending of the connection on `socket`.
    pub fn new(socket: &TcpStream) -> Arc<Self> {
        Arc::new(Ending {
            token: CancellationToken::new(),
            secure: AtomicBool::new(false),
            socket: Mutex::new(socket.as_fd().try_clone_to_owned().ok()),
        })
    }

    /// The token that ends the connection when fired; `secure` says whether its client
    /// negotiated TLS.
    pub fn token(&self, secure: bool) -> CancellationToken {
        self.secure.store(secure, Ordering::Relaxed);
        self.token.clone()
    }

    /// Fires when the connection is to end.
    pub async fn fired(&self) {
        self.token.cancelled().await;
    }

    /// Once the connection's message loop has been dropped: sends the client the FATAL error
    /// on the duplicate socket (unless it uses TLS) and closes it.
    pub async fn goodbye(&self) {
        tracing::info!("{MESSAGE}");
        let socket = self.socket.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(socket) = socket.filter(|_| !self.secure.load(Ordering::Relaxed)) else {
            return;
        };
        let info = ErrorInfo::new("FATAL".into(), "25P03".into(), MESSAGE.into());
        let mut frame = bytes::BytesMut::new();
        if ErrorResponse::from(info).encode(&mut frame).is_err() {
            return;
        }
        let Ok(mut stream) = TcpStream::from_std(std::net::TcpStream::from(socket)) else {
            return;
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&frame)).await;
        let _ = stream.shutdown().await;
    }
}
