//! One run's files: the rows with row ids in a range, read from storage in one snapshot, split
//! by partition directory and encoded as one Parquet file per directory; then put, staged, in
//! the object store, and moved to their places once the run is committed.

use crate::archive::manifest::ArchivedFile;
use crate::archive::partition::{self, Level};
use crate::archive::stores::storage_error;
use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::storage::{Store, reader};
use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::collections::BTreeMap;
use std::ops::Range;

/// The directory, under an archive's root, of files written but not yet committed. Their names
/// do not end in `.parquet`, so no reader of the archive lists them.
const STAGING: &str = "_staging";

/// A file of a run, encoded and not yet put.
pub struct Encoded {
    /// Its manifest entry.
    pub file: ArchivedFile,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Reads the rows of `table` with row ids in `ids` and encodes them as the files of batch
/// `batch`, one per partition directory.
pub fn encode(
    store: &Store,
    table: &TableDef,
    levels: &[Level],
    ids: Range<u64>,
    batch: u64,
) -> Result<Vec<Encoded>> {
    let schema = table.input_schema();
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writers: BTreeMap<String, (ArrowWriter<Vec<u8>>, u64)> = BTreeMap::new();
    let mut write = |directory: String, rows: RecordBatch| -> Result<()> {
        let (writer, count) = match writers.entry(directory) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => entry.insert((
                ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties.clone()))
                    .map_err(parquet)?,
                0,
            )),
        };
        *count += rows.num_rows() as u64;
        writer.write(&rows).map_err(parquet)
    };
    let all: Vec<usize> = (0..table.columns.len()).collect();
    reader::scan_row_ids(store, table, ids, &all, |_, rows| {
        if levels.is_empty() {
            return write(String::new(), rows);
        }
        let directories = partition::directories(levels, table, &rows)?;
        let mut groups: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for (row, directory) in directories.iter().enumerate() {
            groups.entry(directory).or_default().push(row as u32);
        }
        for (directory, indices) in groups {
            let part = take_record_batch(&rows, &UInt32Array::from(indices))?;
            write(directory.to_string(), part)?;
        }
        Ok(())
    })?;
    let mut files = Vec::with_capacity(writers.len());
    for (n, (directory, (writer, rows))) in writers.into_iter().enumerate() {
        let bytes = writer.into_inner().map_err(parquet)?;
        let name = format!("part-{batch:012}-{n:04}.parquet");
        let path = match directory.is_empty() {
            true => name,
            false => format!("{directory}/{name}"),
        };
        files.push(Encoded {
            file: ArchivedFile {
                path,
                staged: format!("{STAGING}/{batch:012}-{n:04}.parquet.staged"),
                rows,
                bytes: bytes.len() as u64,
            },
            bytes,
        });
    }
    Ok(files)
}

/// `relative` (segments separated by `/`) under `root`.
fn under(root: &Path, relative: &str) -> Path {
    relative
        .split('/')
        .filter(|s| !s.is_empty())
        .fold(root.clone(), |path, segment| path.join(segment))
}

/// Puts each file at its staged path.
pub async fn stage(store: &dyn ObjectStore, root: &Path, files: Vec<Encoded>) -> Result<()> {
    for encoded in files {
        let path = under(root, &encoded.file.staged);
        store
            .put(&path, PutPayload::from(encoded.bytes))
            .await
            .map_err(storage_error)?;
    }
    Ok(())
}

/// Moves the committed `files` from their staged paths to their places; a file already moved
/// (a move finished before a crash) is left as it is.
pub async fn publish(store: &dyn ObjectStore, root: &Path, files: &[ArchivedFile]) -> Result<()> {
    for file in files {
        let from = under(root, &file.staged);
        let to = under(root, &file.path);
        match store.rename(&from, &to).await {
            Ok(()) => {}
            Err(object_store::Error::NotFound { .. }) => {
                store.head(&to).await.map_err(|e| {
                    Error::Storage(format!(
                        "archived file {to} is neither staged nor in its place: {e}"
                    ))
                })?;
            }
            Err(e) => return Err(storage_error(e)),
        }
    }
    Ok(())
}

/// Removes every staged file under `root` (those of runs that were never committed).
pub async fn clear_staging(store: &dyn ObjectStore, root: &Path) -> Result<()> {
    use futures::TryStreamExt;
    let staging = root.clone().join(STAGING);
    let staged: Vec<_> = store
        .list(Some(&staging))
        .try_collect()
        .await
        .map_err(storage_error)?;
    for meta in staged {
        match store.delete(&meta.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(storage_error(e)),
        }
    }
    Ok(())
}

/// A Parquet encoder's failure as a TasteDB error.
fn parquet(error: datafusion::parquet::errors::ParquetError) -> Error {
    Error::from(datafusion::error::DataFusionError::from(error))
}
