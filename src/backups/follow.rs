//! A read replica following checkpoints (`tastedb serve --read-only --follow DIR_OR_URL`): it
//! serves the newest checkpoint, and when a newer one appears it opens it, loads its active
//! models, and makes it the current engine. Connections stay; each statement runs on the
//! engine current when it starts, and an engine closes when its last statement ends.
//! Checkpoints in an object store are downloaded into a local checkpoint directory first.

use super::{CheckpointPlace, RemoteCheckpoints};
use crate::archive::Stores;
use crate::blocking;
use crate::engine::CurrentEngine;
use crate::error::{Error, Result};
use crate::storage::MARKER_FILE;
use crate::storage::checkpoint::checkpoints;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a replica follows: a checkpoint directory, or the checkpoints under an object-store
/// URL with the local checkpoint directory they are downloaded into.
#[derive(Debug, Clone)]
pub struct Followed {
    /// The checkpoint directory served from.
    local: PathBuf,
    /// Where its checkpoints come from, when they are downloaded.
    remote: Option<RemoteCheckpoints>,
}

impl Followed {
    /// Follows `place`. Checkpoints in an object store are downloaded into `downloads`
    /// (created when missing), which must not hold a data directory. A checkpoint directory
    /// that does not exist is an error (a mistyped name would otherwise wait for ever).
    pub fn new(place: &CheckpointPlace, downloads: &Path) -> Result<Followed> {
        match place {
            CheckpointPlace::Directory(dir) if !dir.is_dir() => {
                Err(Error::InvalidParameter(format!(
                    "--follow {}: no such directory (the primary's --checkpoint-to)",
                    dir.display()
                )))
            }
            CheckpointPlace::Directory(dir) => Ok(Followed {
                local: dir.clone(),
                remote: None,
            }),
            CheckpointPlace::ObjectStore(url) => {
                if downloads.join(MARKER_FILE).exists() {
                    return Err(Error::InvalidParameter(format!(
                        "--data {} holds a data directory; a replica following {url} downloads \
                         checkpoints into a directory of their own",
                        downloads.display()
                    )));
                }
                std::fs::create_dir_all(downloads).map_err(|e| {
                    Error::Storage(format!("cannot create {}: {e}", downloads.display()))
                })?;
                Ok(Followed {
                    local: downloads.to_path_buf(),
                    remote: Some(RemoteCheckpoints::at(&Stores::default(), url)?),
                })
            }
        }
    }

    /// The newest complete checkpoint, downloaded first when it is in an object store.
    async fn newest(&self) -> Result<Option<PathBuf>> {
        if let Some(remote) = &self.remote
            && let Some(name) = remote.names().await?.pop()
        {
            return remote.download(&name, &self.local).await.map(Some);
        }
        Ok(checkpoints(&self.local)?.pop())
    }
}

impl std::fmt::Display for Followed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.remote {
            Some(remote) => write!(f, "{remote}"),
            None => write!(f, "{}", self.local.display()),
        }
    }
}

/// Waits until `followed` has a checkpoint, looking every `every`, and returns the newest.
pub async fn first_checkpoint(followed: &Followed, every: Duration) -> Result<PathBuf> {
    let mut told = false;
    loop {
        if let Some(newest) = followed.newest().await? {
            return Ok(newest);
        }
        if !told {
            tracing::warn!("waiting for the first checkpoint in {followed}");
            told = true;
        }
        tokio::time::sleep(every).await;
    }
}

/// Looks at `followed` every `every` and moves `current` to the newest checkpoint when it is
/// newer than the one served, for as long as the future runs. A checkpoint that cannot be
/// fetched or opened is logged and tried again at the next look.
pub async fn follow(current: CurrentEngine, followed: Followed, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = move_to_newest(&current, &followed).await {
            tracing::warn!("following {followed}: {error}");
        }
    }
}

/// Opens the newest checkpoint of `followed` and serves it, when it is not the one served.
async fn move_to_newest(current: &CurrentEngine, followed: &Followed) -> Result<()> {
    let Some(newest) = followed.newest().await? else {
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
