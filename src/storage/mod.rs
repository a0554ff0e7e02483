//! Durable storage on RocksDB: the data directory, the key layout, the byte formats of rows and
//! keys, and reading and writing the rows of tables as Arrow batches.

mod key_codec;
pub mod keys;
pub mod reader;
mod row_codec;
mod store;
pub mod vector_values;
pub mod writer;

pub use key_codec::encode_key;
pub use row_codec::{ColumnValues, RowDecoder, encode_row};
pub use store::{FORMAT_VERSION, MARKER_FILE, RowKeys, RowsWritten, Store, WrittenBatch};
