//! `statement_timeout`: a session's statement that runs longer than the session's setting is
//! stopped with `57014 canceling statement due to statement timeout`, while it plans, while it
//! writes and while its rows stream to the client; the connection goes on. A write that is
//! stopped writes nothing: each statement commits in one write at its end.

use crate::error::{Error, Result};
use crate::sql::timeouts;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use futures::Stream;
use pgwire::api::ClientInfo;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The setting's name.
pub const SETTING: &str = timeouts::STATEMENT_TIMEOUT;

/// A `statement_timeout` value: a duration, or `None` when 0 turns it off; 22023 otherwise.
pub fn parse(value: &str) -> Result<Option<Duration>> {
    timeouts::parse(SETTING, value)
}

/// When a statement of `client`'s session that starts now must have finished, if ever.
pub fn deadline<C: ClientInfo>(client: &C) -> Result<Option<Instant>> {
    let setting = client.metadata().get(SETTING).cloned();
    let timeout = match setting {
        Some(value) => parse(&value)?,
        None => None,
    };
    Ok(timeout.map(|t| Instant::now() + t))
}

fn canceled() -> Error {
    Error::QueryCanceled("statement timeout".into())
}

/// `run`, unless `deadline` passes first: then it is dropped (stopping its work) and the
/// result is 57014.
pub async fn within<T>(
    deadline: Option<Instant>,
    run: impl Future<Output = Result<T>>,
) -> Result<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, run)
            .await
            .unwrap_or_else(|_| Err(canceled())),
        None => run.await,
    }
}

/// `stream`, which fails with 57014 (and stops) once `deadline` passes.
pub fn until(
    deadline: Option<Instant>,
    stream: SendableRecordBatchStream,
) -> SendableRecordBatchStream {
    match deadline {
        Some(deadline) => Box::pin(Deadline {
            schema: stream.schema(),
            inner: Some(stream),
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
        }),
        None => stream,
    }
}

struct Deadline {
    schema: SchemaRef,
    /// `None` once the deadline has passed: the plan is dropped, which stops it.
    inner: Option<SendableRecordBatchStream>,
    sleep: Pin<Box<Sleep>>,
}

impl Stream for Deadline {
    type Item = datafusion::common::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.inner.is_none() {
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.inner = None;
            return Poll::Ready(Some(Err(canceled().into_datafusion())));
        }
        match self.inner.as_mut() {
            Some(inner) => inner.as_mut().poll_next(cx),
            None => Poll::Ready(None),
        }
    }
}

impl RecordBatchStream for Deadline {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_as_postgres_reads_them() {
        assert_eq!(parse("0").unwrap(), None);
        assert_eq!(parse("1500").unwrap(), Some(Duration::from_millis(1500)));
        assert_eq!(parse("2s").unwrap(), Some(Duration::from_secs(2)));
        assert_eq!(parse(" 1 min").unwrap(), Some(Duration::from_secs(60)));
        assert_eq!(parse("250ms").unwrap(), Some(Duration::from_millis(250)));
        for bad in ["abc", "-1", "5 weeks", "", "1e99"] {
            assert_eq!(parse(bad).unwrap_err().sqlstate(), "22023", "{bad}");
        }
    }
}
