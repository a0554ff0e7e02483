//! Messages a running statement sends besides its result: Postgres' NOTICE (a skipped
//! `IF EXISTS`, a cold-start fallback, training progress). Over the wire they reach the client
//! as NoticeResponse while the statement runs; in embedded use they become tracing events.

use tokio::sync::mpsc;

/// One message for the client of a running statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// SQLSTATE of the notice (`00000` for plain information).
    pub code: &'static str,
    /// The message text.
    pub message: String,
}

impl Notice {
    /// A plain notice (SQLSTATE `00000`).
    pub fn info(message: impl Into<String>) -> Notice {
        Notice::with_code("00000", message)
    }

    /// A notice with the SQLSTATE `code`.
    pub fn with_code(code: &'static str, message: impl Into<String>) -> Notice {
        Notice {
            code,
            message: message.into(),
        }
    }
}

/// Where a statement sends its notices: a client connection's channel, or tracing.
#[derive(Debug, Clone, Default)]
pub struct Notices {
    client: Option<mpsc::UnboundedSender<Notice>>,
}

impl Notices {
    /// Notices that become tracing events (embedded use).
    pub fn tracing() -> Notices {
        Notices::default()
    }

    /// Notices for a client: the receiver gets them in the order they are sent.
    pub fn channel() -> (Notices, mpsc::UnboundedReceiver<Notice>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (
            Notices {
                client: Some(sender),
            },
            receiver,
        )
    }

    /// Sends `notice` to the client, or logs it when there is none (or it has gone).
    pub fn send(&self, notice: Notice) {
        let undelivered = match &self.client {
            Some(client) => client.send(notice).err().map(|e| e.0),
            None => Some(notice),
        };
        if let Some(notice) = undelivered {
            tracing::info!(code = notice.code, "{}", notice.message);
        }
    }
}
