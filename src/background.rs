//! [`Background`]: work on a thread of its own that runs until it is told to stop — a Kafka
//! source's consumer, an archive's batches. Dropping the handle stops the work and waits for the
//! thread; the work sees the request through its [`Stop`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running background thread; dropping it stops the work and waits for it to end.
#[derive(Debug)]
pub struct Background {
    stop: Stop,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Runs `work` on a thread named `name`, handing it the [`Stop`] it is to watch.
    pub fn spawn(name: String, work: impl FnOnce(Stop) + Send + 'static) -> Background {
        let stop = Stop::default();
        let watched = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || work(watched))
            .ok();
        Background { stop, thread }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.0.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // the thread itself may drop the last engine, and with it its own handle
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// Whether a background thread has been told to stop.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// True once the thread's handle was dropped.
    pub fn stopped(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Sleeps `pause`, waking early (within 20 ms) when told to stop.
    pub fn sleep(&self, pause: Duration) {
        let until = Instant::now() + pause;
        while !self.stopped() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20).min(pause));
        }
    }

    /// Runs `attempt` again and again until it succeeds or the thread is told to stop: after
    /// each failure `failed` is told the error, then the thread pauses, `first` at first and
    /// twice as long each time after, up to `most`.
    pub fn retry<E>(
        &self,
        (first, most): (Duration, Duration),
        mut attempt: impl FnMut() -> Result<(), E>,
        mut failed: impl FnMut(E),
    ) {
        let mut pause = first;
        while !self.stopped() {
            match attempt() {
                Ok(()) => return,
                Err(error) => {
                    failed(error);
                    self.sleep(pause);
                    pause = (pause * 2).min(most);
                }
            }
        }
    }
}
