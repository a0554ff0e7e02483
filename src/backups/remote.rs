//! Checkpoints in an object store (`s3://bucket/prefix`), for read replicas on other machines.
//! The primary makes a checkpoint in its data directory (`outgoing-checkpoints`, hard links)
//! and uploads it, keeping only the newest there; a replica downloads the newest into a local checkpoint directory and serves
//! it from there. Under the prefix:
//! - `shared/<lineage>/<file>`: the table files (`*.sst`, `*.blob`), which RocksDB never
//!   changes once written, put once and listed by every checkpoint that holds them;
//! - `<name>/<path>`: the other files of checkpoint `name` (its manifest, options, log, marker);
//! - `checkpoints/<name>.json`: its listing, put last. A checkpoint exists for replicas only
//!   once its listing does; the newest [`KEPT`] are kept, with the files they list.
//!
//! RocksDB numbers files afresh only within one data directory's life: one restored from a
//! backup may number a new file as an old one was. So a lineage is the directory's identity
//! and the primary's run: files are shared between the checkpoints of one run, and a restarted
//! primary uploads its files once more.

use crate::archive::{Stores, storage_error};
use crate::error::{Error, Result};
use crate::storage::Store;
use crate::storage::checkpoint::{KEPT, checkpoints};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use tokio::io::AsyncWriteExt;

/// The folder of the listings, under the prefix.
const LISTINGS: &str = "checkpoints";
/// The folder of the table files, under the prefix.
const SHARED: &str = "shared";
/// The folder of a primary's data directory where its checkpoints are made before upload.
const OUTGOING: &str = "outgoing-checkpoints";
/// A downloaded checkpoint's listing, in its folder: which objects its files are.
const LISTING_FILE: &str = "checkpoint.json";

/// This process's run, for lineages.
static RUN: LazyLock<u64> = LazyLock::new(rand::random);
/// One upload at a time in this process: a prune must not remove the files an upload in
/// flight found already there.
static UPLOADING: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));

/// A checkpoint's files and the objects that hold them.
#[derive(Debug, Serialize, Deserialize)]
struct Listing {
    files: Vec<Listed>,
}

/// One file of a checkpoint.
#[derive(Debug, Serialize, Deserialize)]
struct Listed {
    /// Its path in the checkpoint, `/`-separated (`rocksdb/000012.sst`).
    path: String,
    /// The object holding it, under the prefix.
    object: String,
    /// Its size.
    bytes: u64,
}

/// The checkpoints under one object-store URL.
#[derive(Debug, Clone)]
pub struct RemoteCheckpoints {
    store: Arc<dyn ObjectStore>,
    root: ObjectPath,
    url: String,
}

impl RemoteCheckpoints {
    /// The checkpoints under `url`, reached through `stores`.
    pub fn at(stores: &Stores, url: &str) -> Result<RemoteCheckpoints> {
        let (store, root) = stores.locate(url)?;
        let url = url.trim_end_matches('/').to_string();
        Ok(RemoteCheckpoints { store, root, url })
    }

    /// Makes a checkpoint of `store` and uploads it; returns its URL. Once it is uploaded, the
    /// local checkpoints made before it are removed (their hard links would keep table files
    /// that compaction has dropped).
    pub async fn publish(&self, store: Arc<Store>) -> Result<String> {
        let _one = UPLOADING.lock().await;
        let lineage = format!("{}-{:016x}", store.identity()?, *RUN);
        let outgoing = store.dir().join(OUTGOING);
        let into = outgoing.clone();
        let local =
            crate::blocking::run("the checkpoint", move |_| store.checkpoint(&into)).await?;
        let url = self.upload(&local, &lineage).await?;
        for old in checkpoints(&outgoing)? {
            if old != local {
                std::fs::remove_dir_all(&old).map_err(|e| io("cannot remove", &old, e))?;
            }
        }
        Ok(url)
    }

    /// Names of the complete checkpoints, oldest first.
    pub async fn names(&self) -> Result<Vec<String>> {
        let listed: Vec<_> = self
            .store
            .list(Some(&self.object(LISTINGS)))
            .try_collect()
            .await
            .map_err(storage_error)?;
        let mut names: Vec<String> = listed
            .iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?.strip_suffix(".json")?;
                is_checkpoint_name(name).then(|| name.to_string())
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// Downloads checkpoint `name` into the local checkpoint directory `cache` (unless it is
    /// there) and returns its folder. Files that a checkpoint already there holds as the same
    /// objects are linked rather than downloaded; the newest [`KEPT`] are kept.
    pub async fn download(&self, name: &str, cache: &Path) -> Result<PathBuf> {
        let target = cache.join(name);
        if target.is_dir() {
            return Ok(target);
        }
        let listing = self.listing(name).await?;
        let have = downloaded_objects(cache)?;
        remove_partial_downloads(cache)?;
        let partial = cache.join(format!("{name}.partial"));
        for file in &listing.files {
            let to = partial.join(relative_path(&file.path)?);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io("cannot create", parent, e))?;
            }
            match have.get(&file.object) {
                Some(from) if size_of(from) == Some(file.bytes) => std::fs::hard_link(from, &to)
                    .or_else(|_| std::fs::copy(from, &to).map(|_| ()))
                    .map_err(|e| io("cannot link", &to, e))?,
                _ => self.get(&file.object, &to).await?,
            }
            if size_of(&to) != Some(file.bytes) {
                return Err(Error::Corrupt(format!(
                    "{}/{}: {} bytes listed, {:?} downloaded",
                    self.url,
                    file.object,
                    file.bytes,
                    size_of(&to)
                )));
            }
        }
        let listed = serde_json::to_vec(&listing)
            .map_err(|e| Error::Internal(format!("checkpoint listing as JSON: {e}")))?;
        let listing_file = partial.join(LISTING_FILE);
        std::fs::write(&listing_file, listed).map_err(|e| io("cannot write", &listing_file, e))?;
        std::fs::rename(&partial, &target).map_err(|e| io("cannot rename", &partial, e))?;
        let all = checkpoints(cache)?;
        for old in all.iter().take(all.len().saturating_sub(KEPT)) {
            std::fs::remove_dir_all(old).map_err(|e| io("cannot remove", old, e))?;
        }
        Ok(target)
    }

    /// Uploads the checkpoint in `local` (its own files, and the table files not yet there:
    /// those the newest listing names are, the others are asked of the store), then its
    /// listing; then prunes to the newest [`KEPT`].
    async fn upload(&self, local: &Path, lineage: &str) -> Result<String> {
        let name = local
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| is_checkpoint_name(n))
            .ok_or_else(|| Error::Internal(format!("{} is not a checkpoint", local.display())))?
            .to_string();
        let url = format!("{}/{name}", self.url);
        let listing_object = self.object(&format!("{LISTINGS}/{name}.json"));
        if self.size(&listing_object).await?.is_some() {
            return Ok(url);
        }
        // what the newest checkpoint lists is there: asked of the store only for the rest
        let uploaded: HashMap<String, u64> = match self.names().await?.pop() {
            Some(newest) => (self.listing(&newest).await?.files.into_iter())
                .map(|file| (file.object, file.bytes))
                .collect(),
            None => HashMap::new(),
        };
        let mut files = Vec::new();
        for (path, bytes) in files_under(local)? {
            // a checkpoint's own files are small and always put; a shared one may be there
            let (object, shared) = match path.rsplit_once('/') {
                Some((_, file)) if file.ends_with(".sst") || file.ends_with(".blob") => {
                    (format!("{SHARED}/{lineage}/{file}"), true)
                }
                _ => (format!("{name}/{path}"), false),
            };
            let there = shared
                && (uploaded.get(&object) == Some(&bytes)
                    || self.size(&self.object(&object)).await? == Some(bytes));
            if !there {
                self.put(&local.join(&path), &object).await?;
            }
            files.push(Listed {
                path,
                object,
                bytes,
            });
        }
        let listing = serde_json::to_vec(&Listing { files })
            .map_err(|e| Error::Internal(format!("checkpoint listing as JSON: {e}")))?;
        self.store
            .put(&listing_object, PutPayload::from(listing))
            .await
            .map_err(storage_error)?;
        self.prune().await?;
        Ok(url)
    }

    /// Removes the checkpoints before the newest [`KEPT`]: their listings first, so that no
    /// replica starts on them, then their own files, then table files no listing holds.
    async fn prune(&self) -> Result<()> {
        let names = self.names().await?;
        let (old, kept) = names.split_at(names.len().saturating_sub(KEPT));
        if old.is_empty() {
            return Ok(());
        }
        for name in old {
            self.delete(&self.object(&format!("{LISTINGS}/{name}.json")))
                .await?;
            self.delete_under(&self.object(name), |_| true).await?;
        }
        let mut listed = HashSet::new();
        for name in kept {
            listed.extend(
                self.listing(name)
                    .await?
                    .files
                    .into_iter()
                    .map(|f| f.object),
            );
        }
        let root = self.root.as_ref().to_string();
        self.delete_under(&self.object(SHARED), |location| {
            let relative = location
                .strip_prefix(root.as_str())
                .unwrap_or(location)
                .trim_start_matches('/');
            !listed.contains(relative)
        })
        .await
    }

    async fn listing(&self, name: &str) -> Result<Listing> {
        let object = self.object(&format!("{LISTINGS}/{name}.json"));
        let bytes = self
            .store
            .get(&object)
            .await
            .map_err(storage_error)?
            .bytes()
            .await
            .map_err(storage_error)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Corrupt(format!("checkpoint listing {}/{object}: {e}", self.url)))
    }

    /// The size of `object`, or `None` when there is none.
    async fn size(&self, object: &ObjectPath) -> Result<Option<u64>> {
        match self.store.head(object).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// Puts the file `from` as `object`, in parts when it is large.
    async fn put(&self, from: &Path, object: &str) -> Result<()> {
        let mut file = tokio::fs::File::open(from)
            .await
            .map_err(|e| io("cannot read", from, e))?;
        let mut writer =
            object_store::buffered::BufWriter::new(self.store.clone(), self.object(object));
        let copied = tokio::io::copy(&mut file, &mut writer).await;
        if let Err(e) = copied {
            let _ = writer.abort().await;
            return Err(Error::Storage(format!("uploading {}: {e}", from.display())));
        }
        writer
            .shutdown()
            .await
            .map_err(|e| Error::Storage(format!("uploading {}: {e}", from.display())))
    }

    /// Writes `object` to the file `to`, and syncs it.
    async fn get(&self, object: &str, to: &Path) -> Result<()> {
        let mut chunks = self
            .store
            .get(&self.object(object))
            .await
            .map_err(storage_error)?
            .into_stream();
        let mut file = tokio::fs::File::create(to)
            .await
            .map_err(|e| io("cannot create", to, e))?;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(storage_error)?;
            file.write_all(&chunk)
                .await
                .map_err(|e| io("cannot write", to, e))?;
        }
        file.sync_all().await.map_err(|e| io("cannot sync", to, e))
    }

    async fn delete(&self, object: &ObjectPath) -> Result<()> {
        match self.store.delete(object).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// Deletes the objects under `prefix` whose location `chosen` accepts.
    async fn delete_under(&self, prefix: &ObjectPath, chosen: impl Fn(&str) -> bool) -> Result<()> {
        let found: Vec<_> = self
            .store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(storage_error)?;
        for meta in found {
            if chosen(meta.location.as_ref()) {
                self.delete(&meta.location).await?;
            }
        }
        Ok(())
    }

    /// `relative` (`/`-separated) under the prefix.
    fn object(&self, relative: &str) -> ObjectPath {
        relative
            .split('/')
            .filter(|s| !s.is_empty())
            .fold(self.root.clone(), |path, segment| path.join(segment))
    }
}

impl std::fmt::Display for RemoteCheckpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

/// Whether `name` is a checkpoint's: its sequence number in 20 digits.
fn is_checkpoint_name(name: &str) -> bool {
    name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit())
}

/// The files under `dir`, `/`-separated relative paths with their sizes, sorted.
fn files_under(dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut found = Vec::new();
    let mut folders = vec![(dir.to_path_buf(), String::new())];
    while let Some((folder, prefix)) = folders.pop() {
        let entries = std::fs::read_dir(&folder).map_err(|e| io("cannot read", &folder, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io("cannot read", &folder, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{prefix}{name}");
            let meta = entry
                .metadata()
                .map_err(|e| io("cannot read", &entry.path(), e))?;
            if meta.is_dir() {
                folders.push((entry.path(), format!("{path}/")));
            } else {
                found.push((path, meta.len()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// A listed path as a relative path; a listing that would write outside its checkpoint's
/// folder is corrupt.
fn relative_path(path: &str) -> Result<PathBuf> {
    let segments: Vec<&str> = path.split('/').collect();
    let safe = segments
        .iter()
        .all(|s| !s.is_empty() && *s != "." && *s != ".." && !s.contains('\\'));
    if !safe {
        return Err(Error::Corrupt(format!(
            "checkpoint listing names the path {path:?}"
        )));
    }
    Ok(segments.iter().collect())
}

/// The objects that the checkpoints downloaded into `cache` hold, and where.
fn downloaded_objects(cache: &Path) -> Result<HashMap<String, PathBuf>> {
    let mut have = HashMap::new();
    for checkpoint in checkpoints(cache)? {
        let Ok(text) = std::fs::read(checkpoint.join(LISTING_FILE)) else {
            continue;
        };
        let Ok(listing) = serde_json::from_slice::<Listing>(&text) else {
            continue;
        };
        for file in listing.files {
            if let Ok(path) = relative_path(&file.path) {
                have.insert(file.object, checkpoint.join(path));
            }
        }
    }
    Ok(have)
}

/// Removes the downloads into `cache` that were cut short.
fn remove_partial_downloads(cache: &Path) -> Result<()> {
    let entries = std::fs::read_dir(cache).map_err(|e| io("cannot read", cache, e))?;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().ends_with(".partial") {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(|e| io("cannot remove", &path, e))?;
        }
    }
    Ok(())
}

fn size_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

fn io(what: &str, path: &Path, error: std::io::Error) -> Error {
    Error::Storage(format!("{what} {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_paths_stay_inside_the_checkpoint() {
        assert_eq!(
            relative_path("rocksdb/000012.sst").unwrap(),
            PathBuf::from("rocksdb").join("000012.sst")
        );
        for bad in [
            "../x",
            "rocksdb/../../x",
            "/etc/passwd",
            "a//b",
            "",
            "a\\..\\b",
        ] {
            assert_eq!(relative_path(bad).unwrap_err().sqlstate(), "XX001", "{bad}");
        }
    }
}
