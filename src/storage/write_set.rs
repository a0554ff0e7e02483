//! [`WriteSet`]: writes gathered by a statement and applied at once by `Store::write`.

use rocksdb::WriteBatch;

/// Puts and deletes applied atomically, and durably, by `Store::write`.
#[derive(Default)]
pub struct WriteSet {
    batch: WriteBatch,
}

impl WriteSet {
    /// Stores `value` under `key`.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.batch.put(key, value);
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.batch.delete(key);
    }

    /// Deletes every key from `from` (included) to `to` (excluded).
    pub fn delete_range<K: AsRef<[u8]>>(&mut self, from: K, to: K) {
        self.batch.delete_range(from, to);
    }

    pub(super) fn into_batch(self) -> WriteBatch {
        self.batch
    }
}
