//! [`Stores`]: the object stores that archives, `archive('t')` and `COPY … TO` reach by URL.
//! `file://` is the server's file system; `s3://bucket/…` is an S3-compatible store made the
//! first time its bucket is named, configured from the environment as the AWS tools are
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT` for other
//! S3-compatible stores, `AWS_ALLOW_HTTP`).

use crate::error::{Error, Result};
use datafusion::execution::object_store::ObjectStoreRegistry;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use url::Url;

/// Object stores by scheme and bucket; DataFusion's registry for the engine's runtime.
#[derive(Debug, Default)]
pub struct Stores {
    stores: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl Stores {
    /// The store holding `url` and the path of `url` inside it; 22023 for what is not a
    /// `file://` or `s3://` URL.
    pub fn locate(&self, url: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
        let parsed = parse(url)?;
        let store = self.store(&parsed)?;
        let path = Path::from_url_path(parsed.path())
            .map_err(|e| Error::InvalidParameter(format!("\"{url}\": {e}")))?;
        Ok((store, path))
    }

    fn store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let key = key(url);
        if let Some(store) = self.read().get(&key) {
            return Ok(store.clone());
        }
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "file" => Arc::new(LocalFileSystem::new()),
            "s3" => Arc::new(
                AmazonS3Builder::from_env()
                    .with_url(url.as_str())
                    .build()
                    .map_err(|e| Error::InvalidParameter(format!("{url}: {e}")))?,
            ),
            other => return Err(unsupported(other)),
        };
        Ok(self.write().entry(key).or_insert(store).clone())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<dyn ObjectStore>>> {
        self.stores.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<dyn ObjectStore>>> {
        self.stores.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// `url` parsed; 22023 unless it is a `file://` or `s3://` URL.
pub fn parse(url: &str) -> Result<Url> {
    let parsed = Url::parse(url).map_err(|e| Error::InvalidParameter(format!("\"{url}\": {e}")))?;
    match parsed.scheme() {
        "file" | "s3" => Ok(parsed),
        other => Err(unsupported(other)),
    }
}

/// An object store's failure as a TasteDB error (58030, an I/O error).
pub fn storage_error(error: object_store::Error) -> Error {
    Error::Storage(format!("object store: {error}"))
}

fn unsupported(scheme: &str) -> Error {
    Error::InvalidParameter(format!(
        "object stores are reached by file:// or s3:// URLs, not {scheme}://"
    ))
}

/// A store's key: the scheme and the bucket (or host).
fn key(url: &Url) -> String {
    format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default())
}

impl ObjectStoreRegistry for Stores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.write().insert(key(url), store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        (self.write().remove(&key(url))).ok_or_else(|| {
            datafusion::error::DataFusionError::Execution(format!("no object store for {url}"))
        })
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.store(url)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_store_and_a_path_in_it() {
        let stores = Stores::default();
        let (_, path) = stores.locate("file:///tmp/archive/events").unwrap();
        assert_eq!(path.as_ref(), "tmp/archive/events");
        assert_eq!(
            stores
                .locate("http://example.com/x")
                .unwrap_err()
                .sqlstate(),
            "22023"
        );
        assert_eq!(stores.locate("not a url").unwrap_err().sqlstate(), "22023");
    }
}
