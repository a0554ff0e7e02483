//! Key layout of the one RocksDB keyspace. `docs/storage.md` describes it; keep both in step.
//!
//! | prefix | key after the prefix          | value                         |
//! |--------|-------------------------------|-------------------------------|
//! | `m`    | meta name (UTF-8)             | meta value (e.g. a counter)   |
//! | `c`    | table name (UTF-8)            | `TableDef` as JSON            |
//! | `d`    | table id (u64 BE) + row key   | encoded row (`row_codec`), or a block of rows (`row_blocks`) under its first row id in append-only tables |
//! | `u`    | user name (UTF-8)             | SCRAM salt and secret as JSON |
//! | `n`    | model name (UTF-8)            | `ModelRecord` as JSON         |
//! | `v`    | model name, 0, version (u32 BE) | `ModelVersion` as JSON      |
//! | `f`    | model name, 0, version (u32 BE) | `TrainedModel` bytes (`ml::model`) |
//! | `a`    | model name, 0, version (u32 BE) | the version's HNSW item index (`ann`) |
//! | `w`    | feature view name (UTF-8)     | `FeatureView` as JSON         |
//! | `o`    | feature view name, 0, entity key (`key_codec`) | latest feature row (`row_codec`) |
//! | `i`    | vector index name (UTF-8)     | `IndexDef` as JSON            |
//! | `h`    | vector index name (UTF-8)     | the index's graph, row keys and transform (postcard) |
//! | `g`    | object kind (`t`/`m`/`f`), object name | owner and privileges (`roles::grants`) as JSON |
//! | `q`    | sequence name (UTF-8)         | highest value handed out or cached (i64 BE) |
//! | `x`    | table id (u64 BE), index id (u32 BE), values (`index_entries`) [, row key] | row key |
//! | `l`    | named filter name (UTF-8)     | `Filter` as JSON (`filters`)  |
//! | `k`    | API key name (UTF-8)          | `ApiKey` as JSON, secret hashed (`roles::api_keys`) |
//! | `s`    | source name (UTF-8)           | `Source` as JSON (`sources`)  |
//! | `j`    | source name, 0, partition (u32 BE) | `PartitionOffset` as JSON: the next offset to read |
//! | `r`    | table name (UTF-8)            | `Archive` as JSON (`archive`) |
//! | `y`    | table name, 0, batch (u64 BE) | `Batch` as JSON: an archive's manifest entry |

const META: u8 = b'm';
const CATALOG: u8 = b'c';
const DATA: u8 = b'd';
const USER: u8 = b'u';
const MODEL: u8 = b'n';
const MODEL_VERSION: u8 = b'v';
const MODEL_DATA: u8 = b'f';
const MODEL_INDEX: u8 = b'a';
const FEATURE_VIEW: u8 = b'w';
const ONLINE_FEATURES: u8 = b'o';
const VECTOR_INDEX: u8 = b'i';
const VECTOR_GRAPH: u8 = b'h';
const ACL: u8 = b'g';
const VIEW: u8 = b'e';
const INDEX_ENTRY: u8 = b'x';
const SEQUENCE: u8 = b'q';
/// Prefix of named filters (`filters`).
pub const FILTER: u8 = b'l';
/// Prefix of API keys (`roles::api_keys`).
pub const API_KEY: u8 = b'k';
/// Prefix of experiments (`models::experiments`).
pub const EXPERIMENT: u8 = b'p';
/// Prefix of stream sources (`sources`).
pub const SOURCE: u8 = b's';
const SOURCE_OFFSET: u8 = b'j';
/// Prefix of tables' Parquet archives (`archive`).
pub const ARCHIVE: u8 = b'r';
const ARCHIVE_BATCH: u8 = b'y';

/// Key of batch `batch` of the manifest of table `name`'s archive; `archive_batch(name, None)`
/// is the prefix of every batch's.
pub fn archive_batch(name: &str, batch: Option<u64>) -> Vec<u8> {
    let mut key = prefixed(ARCHIVE_BATCH, name.as_bytes());
    key.push(0);
    if let Some(batch) = batch {
        key.extend_from_slice(&batch.to_be_bytes());
    }
    key
}

/// Key of the next offset to read of partition `partition` of source `name`;
/// `source_offset(name, None)` is the prefix of every partition's.
pub fn source_offset(name: &str, partition: Option<i32>) -> Vec<u8> {
    let mut key = prefixed(SOURCE_OFFSET, name.as_bytes());
    key.push(0);
    if let Some(partition) = partition {
        key.extend_from_slice(&(partition as u32).to_be_bytes());
    }
    key
}

/// Key of a vector index's definition; `vector_index("")` is the prefix of all of them.
pub fn vector_index(name: &str) -> Vec<u8> {
    prefixed(VECTOR_INDEX, name.as_bytes())
}

/// Key of a vector index's graph.
pub fn vector_graph(name: &str) -> Vec<u8> {
    prefixed(VECTOR_GRAPH, name.as_bytes())
}

/// Key of an object's owner and privileges; `rest` is the object's kind tag and name, and
/// `acl(&[])` is the prefix of all of them.
pub fn acl(rest: &[u8]) -> Vec<u8> {
    prefixed(ACL, rest)
}

/// Key of a meta entry.
pub fn meta(name: &str) -> Vec<u8> {
    prefixed(META, name.as_bytes())
}

/// The table of a row key or an index-entry key.
pub fn table_of(key: &[u8]) -> Option<u64> {
    match key.first() {
        Some(&DATA | &INDEX_ENTRY) => Some(u64::from_be_bytes(key.get(1..9)?.try_into().ok()?)),
        _ => None,
    }
}

/// Key of a table's catalog entry.
pub fn catalog(table: &str) -> Vec<u8> {
    prefixed(CATALOG, table.as_bytes())
}

/// First key of the catalog range.
pub fn catalog_prefix() -> Vec<u8> {
    vec![CATALOG]
}

/// Key of a wire-protocol user; `user("")` is the prefix of all of them.
pub fn user(name: &str) -> Vec<u8> {
    prefixed(USER, name.as_bytes())
}

/// Key of a model's registry record; `model("")` is the prefix of all of them.
pub fn model(name: &str) -> Vec<u8> {
    prefixed(MODEL, name.as_bytes())
}

/// Key of a model version's metadata.
pub fn model_version(name: &str, version: u32) -> Vec<u8> {
    versioned(MODEL_VERSION, name, version)
}

/// Key of a model version's trained parameters.
pub fn model_data(name: &str, version: u32) -> Vec<u8> {
    versioned(MODEL_DATA, name, version)
}

/// Key of a model version's HNSW item index.
pub fn model_index(name: &str, version: u32) -> Vec<u8> {
    versioned(MODEL_INDEX, name, version)
}

/// What a per-version key of a model holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionPart {
    /// `v`: the version's metadata.
    Metadata,
    /// `f`: the trained parameters.
    Data,
    /// `a`: the item index.
    Index,
}

/// The range `[start, end)` of every key of `part` of model `name`'s versions.
pub fn model_versions_range(name: &str, part: VersionPart) -> (Vec<u8>, Vec<u8>) {
    let prefix = match part {
        VersionPart::Metadata => MODEL_VERSION,
        VersionPart::Data => MODEL_DATA,
        VersionPart::Index => MODEL_INDEX,
    };
    let mut start = prefixed(prefix, name.as_bytes());
    start.push(0);
    let mut end = prefixed(prefix, name.as_bytes());
    end.push(1);
    (start, end)
}

fn versioned(prefix: u8, name: &str, version: u32) -> Vec<u8> {
    let mut key = prefixed(prefix, name.as_bytes());
    key.push(0);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

/// Key of a feature view's definition; `feature_view("")` is the prefix of all of them.
pub fn feature_view(name: &str) -> Vec<u8> {
    prefixed(FEATURE_VIEW, name.as_bytes())
}

/// Key of the online feature row of `entity_key` (a `key_codec` encoding) in view `view`.
pub fn online_row(view: &str, entity_key: &[u8]) -> Vec<u8> {
    let mut key = online_range(view).0;
    key.extend_from_slice(entity_key);
    key
}

/// The range `[start, end)` of every online row of view `view`.
pub fn online_range(view: &str) -> (Vec<u8>, Vec<u8>) {
    let mut start = prefixed(ONLINE_FEATURES, view.as_bytes());
    start.push(0);
    let mut end = prefixed(ONLINE_FEATURES, view.as_bytes());
    end.push(1);
    (start, end)
}

/// Key of the stored definition of view `name`.
pub fn view(name: &str) -> Vec<u8> {
    prefixed(VIEW, name.as_bytes())
}

/// Prefix of every stored view definition.
pub fn view_prefix() -> Vec<u8> {
    vec![VIEW]
}

/// Prefix of the entries of secondary index `index_id` of table `table_id`.
pub fn index_prefix(table_id: u64, index_id: u32) -> Vec<u8> {
    let mut key = prefixed(INDEX_ENTRY, &table_id.to_be_bytes());
    key.extend_from_slice(&index_id.to_be_bytes());
    key
}

/// The range `[start, end)` of the entries of every secondary index of table `table_id`.
pub fn table_indexes_range(table_id: u64) -> (Vec<u8>, Vec<u8>) {
    let start = prefixed(INDEX_ENTRY, &table_id.to_be_bytes());
    let end = prefix_end(&start);
    (start, end)
}

/// Key of sequence `name`.
pub fn sequence(name: &str) -> Vec<u8> {
    prefixed(SEQUENCE, name.as_bytes())
}

/// Prefix shared by every row of a table.
pub fn table_prefix(table_id: u64) -> Vec<u8> {
    prefixed(DATA, &table_id.to_be_bytes())
}

/// The first key past every row of a table (exclusive upper bound of its range).
pub fn table_end(table_id: u64) -> Vec<u8> {
    match table_id.checked_add(1) {
        Some(next) => table_prefix(next),
        None => vec![DATA + 1],
    }
}

/// Full key of one row: table prefix plus the row key (primary key or row id).
pub fn row(table_id: u64, row_key: &[u8]) -> Vec<u8> {
    let mut key = table_prefix(table_id);
    key.extend_from_slice(row_key);
    key
}

/// Row key of a table without primary key: a row id, big-endian so that ids sort in order.
pub fn row_id(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Reads the row id back from the full key of a table without primary key.
pub fn parse_row_id(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(9..17)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// The table id of a row's full key; `None` for keys that are not rows.
pub fn parse_row_table(key: &[u8]) -> Option<u64> {
    if key.first() != Some(&DATA) {
        return None;
    }
    let bytes: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// The first key after every key that starts with `prefix` (all 0xFF bytes: no end).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

fn prefixed(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + rest.len());
    key.push(prefix);
    key.extend_from_slice(rest);
    key
}
