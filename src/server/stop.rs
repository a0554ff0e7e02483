//! Stopping a running statement: when the session's `statement_timeout` passes (`57014
//! canceling statement due to statement timeout`) or when it is cancelled by a CancelRequest
//! or `pg_cancel_backend` (`57014 canceling statement due to user request`). Either stops it
//! while it plans, while it writes and while its rows stream to the client; the connection
//! goes on. A write that is stopped before its commit writes nothing: each statement
//! commits in one write at its end.
//!
//! A statement that panics (a bug, in TasteDB or a library) stops here too: the panic is
//! caught, the statement fails with `XX000` and the session and every other one go on.

use crate::engine::Running;
use crate::error::{Error, Result};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use futures::{FutureExt, Stream};
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

/// What stops one statement: its deadline, and its place among the running statements.
#[derive(Debug, Clone)]
pub struct Stop {
    deadline: Option<Instant>,
    running: Arc<Running>,
}

impl Stop {
    /// A statement that must end by `deadline` (if any) and stops when `running` is cancelled.
    pub fn new(deadline: Option<Instant>, running: Running) -> Self {
        Stop {
            deadline,
            running: Arc::new(running),
        }
    }

    /// The error the statement stops with, once it is stopped.
    pub fn stopped(&self) -> Option<Error> {
        if self.running.cancelled().is_cancelled() {
            Some(cancelled())
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(timed_out())
        } else {
            None
        }
    }

    /// `run`, unless the statement is stopped first: then it is dropped (stopping its work)
    /// and the result is 57014.
    pub async fn within<T>(&self, run: impl Future<Output = Result<T>>) -> Result<T> {
        let deadline = async {
            match self.deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        let run = AssertUnwindSafe(run).catch_unwind();
        tokio::select! {
            result = run => result.unwrap_or_else(|panic| Err(panicked(panic.as_ref()))),
            () = deadline => Err(timed_out()),
            () = self.running.cancelled().cancelled() => Err(cancelled()),
        }
    }

    /// `stream`, which fails with 57014 (and stops) once the statement is stopped. The
    /// statement counts as running until the stream is dropped.
    pub fn until(&self, stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
        Box::pin(Stopping {
            schema: stream.schema(),
            inner: Some(stream),
            sleep: self.deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            cancelled: Box::pin(self.running.cancelled().clone().cancelled_owned()),
            _running: self.running.clone(),
        })
    }
}

/// The error of a statement that panicked; the panic itself was logged by the panic hook.
pub fn panicked(payload: &(dyn Any + Send)) -> Error {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    Error::Internal(format!("the statement failed unexpectedly: {message}"))
}

fn timed_out() -> Error {
    Error::QueryCanceled("statement timeout".into())
}

fn cancelled() -> Error {
    Error::QueryCanceled("user request".into())
}

struct Stopping {
    schema: SchemaRef,
    /// `None` once stopped: the plan is dropped, which stops it.
    inner: Option<SendableRecordBatchStream>,
    sleep: Option<Pin<Box<Sleep>>>,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    _running: Arc<Running>,
}

impl Stream for Stopping {
    type Item = datafusion::common::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.inner.is_none() {
            return Poll::Ready(None);
        }
        let stopped = if self.cancelled.as_mut().poll(cx).is_ready() {
            Some(cancelled())
        } else if let Some(sleep) = self.sleep.as_mut()
            && sleep.as_mut().poll(cx).is_ready()
        {
            Some(timed_out())
        } else {
            None
        };
        if let Some(error) = stopped {
            self.inner = None;
            return Poll::Ready(Some(Err(error.into_datafusion())));
        }
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll_next(cx))) {
            Ok(polled) => polled,
            Err(panic) => {
                self.inner = None;
                Poll::Ready(Some(Err(panicked(panic.as_ref()).into_datafusion())))
            }
        }
    }
}

impl RecordBatchStream for Stopping {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Activity, Connection};
    use datafusion::arrow::datatypes::Schema;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use futures::StreamExt;
    use std::time::Duration;

    fn stop(activity: &Arc<Activity>, deadline: Option<Duration>) -> Stop {
        Stop::new(
            deadline.map(|d| Instant::now() + d),
            activity.begin(7, "SELECT"),
        )
    }

    #[tokio::test]
    async fn a_panic_is_answered_as_xx000() {
        let activity = Arc::new(Activity::default());
        let stop = stop(&activity, None);
        let failed = stop
            .within(async { panic!("boom") as Result<()> })
            .await
            .unwrap_err();
        assert_eq!(failed.sqlstate(), "XX000");
        assert!(failed.to_string().contains("boom"), "{failed}");
        let panicking = futures::stream::poll_fn(
            |_| -> Poll<Option<datafusion::common::Result<RecordBatch>>> {
                panic!("boom in a stream")
            },
        );
        let stream: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(
            Arc::new(Schema::empty()),
            panicking,
        ));
        let mut stopped = stop.until(stream);
        let first = stopped.next().await.unwrap().unwrap_err();
        assert_eq!(crate::error::Error::from(first).sqlstate(), "XX000");
        assert!(stopped.next().await.is_none());
    }

    #[tokio::test]
    async fn a_timeout_and_a_cancel_stop_with_57014_and_their_reason() {
        let activity = Arc::new(Activity::default());
        let timed = stop(&activity, Some(Duration::from_millis(20)))
            .within(std::future::pending::<Result<()>>())
            .await
            .unwrap_err();
        assert_eq!(
            timed.to_string(),
            "canceling statement due to statement timeout"
        );
        let _connected = activity.connect(Connection {
            pid: 7,
            secret: vec![1, 2, 3, 4],
            role: "bob".into(),
            client_addr: "127.0.0.1".into(),
            application_name: String::new(),
            end: tokio_util::sync::CancellationToken::new(),
        });
        let running = stop(&activity, None);
        assert!(!activity.cancel(7, Some(&[9, 9, 9, 9])), "wrong key");
        assert!(running.stopped().is_none());
        assert!(activity.cancel(7, Some(&[1, 2, 3, 4])));
        let cancelled = running
            .within(std::future::pending::<Result<()>>())
            .await
            .unwrap_err();
        assert_eq!(
            cancelled.to_string(),
            "canceling statement due to user request"
        );
        assert_eq!(cancelled.sqlstate(), "57014");
    }
}
