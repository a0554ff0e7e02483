//! `tastedb scheduler` and `tastedb executor`: a Ballista cluster for `tastedb.cluster`
//! (`docs/scale-out.md`), of the same version as this binary's client.

use std::net::SocketAddr;
use tastedb::cluster::processes::{self, ExecutorOptions, SchedulerOptions};
use tastedb::{Error, Result};

/// Runs a scheduler until SIGINT or SIGTERM.
pub async fn scheduler(options: SchedulerOptions) -> Result<()> {
    let stop = super::serve::shutdown_signal();
    let run = processes::run_scheduler(options, |addr: SocketAddr| {
        eprintln!(
            "TasteDB cluster scheduler listening on {addr} (SET tastedb.cluster = 'df://{addr}')"
        );
    });
    tokio::select! {
        ran = run => ran,
        _ = stop => {
            eprintln!("stopped");
            Ok(())
        }
    }
}

/// Runs an executor until SIGINT or SIGTERM (it handles them itself, telling its scheduler).
pub async fn executor(options: ExecutorOptions) -> Result<()> {
    eprintln!(
        "TasteDB cluster executor on {} for the scheduler at {}",
        options.listen, options.scheduler
    );
    processes::run_executor(options).await
}

/// The `host:port` of `--scheduler`, given as `df://host:port` or `host:port`.
pub fn scheduler_address(given: &str) -> Result<String> {
    if given.contains("://") {
        return tastedb::cluster::scheduler_address(given);
    }
    match given.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(given.to_string())
        }
        _ => Err(Error::InvalidParameter(format!(
            "--scheduler {given}: not df://host:port"
        ))),
    }
}
