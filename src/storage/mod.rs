//! Durable storage on RocksDB: the data directory, the key layout, the byte formats of rows and
//! keys, reading and writing the rows of tables as Arrow batches, and the state writers of a
//! table share. This is the only module that knows RocksDB: the rest of TasteDB reads through
//! [`Store`] and writes [`WriteSet`]s.

pub mod backup;
pub mod bulk_insert;
pub mod checkpoint;
mod commit_log;
pub mod index_entries;
mod key_codec;
pub mod keys;
pub mod modify;
mod named_records;
pub mod reader;
pub mod retention;
pub mod rewrite;
mod row_blocks;
mod row_codec;
mod row_locks;
mod scratch;
mod seen_keys;
mod segment;
mod staging;
mod store;
mod tables;
pub mod transaction;
pub mod vector_values;
mod write_set;
pub mod writer;

pub use key_codec::encode_key;
pub use named_records::{Named, NamedRecords};
pub use retention::{Expiry, Retentions};
pub use row_codec::{ColumnValues, RowDecoder, encode_row};
pub use staging::Staging;
pub use store::{
    FORMAT_VERSION, MARKER_FILE, RowKeys, RowsChanged, Scan, Store, TableChange, Watches,
    WrittenBatch,
};
pub use tables::{RowIdReservation, StoredTable};
pub use transaction::{Change, Isolation, Transaction};
pub use write_set::WriteSet;
