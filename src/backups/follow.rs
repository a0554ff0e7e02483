//! A read replica following a checkpoint directory (`tastedb serve --read-only --follow DIR`):
//! it serves the newest checkpoint there, and when a newer one appears it opens it, loads its
//! active models, and makes it the current engine. Connections stay; each statement runs on the
//! engine current when it starts, and an engine closes when its last statement ends.

use crate::blocking;
use crate::engine::CurrentEngine;
use crate::error::{Error, Result};
use crate::storage::checkpoint::checkpoints;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The newest complete checkpoint in the checkpoint directory `dir`, if it holds one.
pub fn newest_checkpoint(dir: &Path) -> Result<Option<PathBuf>> {
    Ok(checkpoints(dir)?.pop())
}

/// Waits until the checkpoint directory `dir` holds a checkpoint, looking every `every`, and
/// returns the newest; a directory that does not exist is an error (a mistyped name would
/// otherwise wait for ever).
pub async fn first_checkpoint(dir: &Path, every: Duration) -> Result<PathBuf> {
    if !dir.is_dir() {
        return Err(Error::InvalidParameter(format!(
            "--follow {}: no such directory (the primary's --checkpoint-to)",
            dir.display()
        )));
    }
    let mut told = false;
    loop {
        if let Some(newest) = newest_checkpoint(dir)? {
            return Ok(newest);
        }
        if !told {
            tracing::warn!("waiting for the first checkpoint in {}", dir.display());
            told = true;
        }
        tokio::time::sleep(every).await;
    }
}

/// Looks in `dir` every `every` and moves `current` to the newest checkpoint when it is newer
/// than the one served, for as long as the future runs. A checkpoint that cannot be opened is
/// logged and tried again at the next look.
pub async fn follow(current: CurrentEngine, dir: PathBuf, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = move_to_newest(&current, &dir).await {
            tracing::warn!("following {}: {error}", dir.display());
        }
    }
}

/// Opens the newest checkpoint in `dir` and serves it, when it is not the one served.
async fn move_to_newest(current: &CurrentEngine, dir: &Path) -> Result<()> {
    let Some(newest) = newest_checkpoint(dir)? else {
        return Ok(());
    };
    let serving = current.get();
    let served = serving.catalog().store().dir().to_path_buf();
    // names are zero-padded sequence numbers: the greater is the newer
    if newest.file_name() <= served.file_name() {
        return Ok(());
    }
    let path = newest.clone();
    let next = blocking::run("opening a checkpoint", move |_| {
        serving.open_replacement(&path)
    })
    .await?;
    crate::models::warm(next.clone()).await;
    current.replace(next);
    tracing::info!(checkpoint = %newest.display(), "serving a newer checkpoint");
    Ok(())
}
