//! Work of a statement that runs on a blocking thread (training, building graphs, writing):
//! when the statement is stopped (`statement_timeout`, a cancel, a dropped connection) its
//! future is dropped, but a blocking thread cannot be dropped. [`run`] tells the work instead,
//! through [`Stopped`], which the work asks between steps and then gives up: a write checks
//! it just before its commit, training between iterations.

use crate::error::{Error, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the statement that started a blocking work has been stopped.
#[derive(Debug, Clone, Default)]
pub struct Stopped(Arc<AtomicBool>);

impl Stopped {
    /// True once the statement has been stopped.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Stops the work (for work that runs for no statement, by whatever owns it).
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// 57014 once the statement has been stopped.
    pub fn check(&self) -> Result<()> {
        if self.is_set() {
            return Err(Error::QueryCanceled("its statement was stopped".into()));
        }
        Ok(())
    }
}

/// Sets the flag when the awaiting statement goes away, finished or not.
struct SetOnDrop(Stopped);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// Runs `work` on a blocking thread; if the awaiting future is dropped first, `work`'s
/// [`Stopped`] is set. `what` names the work in the error of a panic.
pub async fn run<T: Send + 'static>(
    what: &str,
    work: impl FnOnce(&Stopped) -> Result<T> + Send + 'static,
) -> Result<T> {
    let stopped = Stopped::default();
    let _set_on_drop = SetOnDrop(stopped.clone());
    tokio::task::spawn_blocking(move || work(&stopped))
        .await
        .map_err(|e| Error::Internal(format!("{what} failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn dropping_the_statement_tells_the_work() {
        let (seen, told) = std::sync::mpsc::channel();
        let work = run("test work", move |stopped: &Stopped| {
            while !stopped.is_set() {
                std::thread::sleep(Duration::from_millis(5));
            }
            seen.send(()).ok();
            stopped.check()
        });
        let cut = tokio::time::timeout(Duration::from_millis(50), work).await;
        assert!(cut.is_err());
        tokio::task::spawn_blocking(move || told.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .unwrap();
    }
}
