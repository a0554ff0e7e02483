//! Where a source stands in each partition: the next offset to read, stored under
//! `keys::source_offset` and written in the same atomic write as the rows read before it.

use crate::error::Result;
use crate::storage::{Store, keys};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The stored position in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOffset {
    /// The partition.
    pub partition: i32,
    /// The offset of the next message to read.
    pub next: i64,
}

/// The stored next offset of every partition of the source `name`.
pub fn load(store: &Store, name: &str) -> Result<BTreeMap<i32, i64>> {
    let records: Vec<PartitionOffset> =
        store.records(&keys::source_offset(name, None), "source offset")?;
    Ok(records.into_iter().map(|r| (r.partition, r.next)).collect())
}

/// The key and value that store `next` as the next offset of `partition`.
pub fn entry(name: &str, partition: i32, next: i64) -> (Vec<u8>, Vec<u8>) {
    let value = PartitionOffset { partition, next };
    (
        keys::source_offset(name, Some(partition)),
        serde_json::to_vec(&value).unwrap_or_default(),
    )
}
