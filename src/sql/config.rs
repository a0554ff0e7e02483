//! TasteDB's settings, as a DataFusion config extension: `SET tastedb.ann_threshold = 5000`
//! and `SHOW tastedb.ann_threshold` work like DataFusion's own settings, engine-wide.

use datafusion::common::config::ConfigExtension;
use datafusion::common::extensions_options;

extensions_options! {
    /// Settings of serving (`tastedb.*`).
    pub struct TasteConfig {
        /// `recommend` and `similar_items` use a model's HNSW index when it has more items
        /// than this; exact scoring otherwise.
        pub ann_threshold: usize, default = 10_000
        /// Seconds a cached `recommend` answer is served; 0 turns the cache off.
        pub cache_ttl_seconds: u64, default = 300
        /// Cached `recommend` answers kept at most; the least recently used go first.
        pub cache_max_entries: usize, default = 100_000
        /// Prepared statements that read or write one row by primary key (and INSERTs of one
        /// row) run without planning at each execution; `false` plans every execution.
        pub fast_path: bool, default = true
        /// Megabytes of encoded rows a statement (COPY, INSERT … SELECT) holds in memory
        /// before it stages them in files inside the data directory, published all at once
        /// at its commit (tables without primary key or unique index, outside transaction
        /// blocks).
        pub write_buffer_mb: usize, default = 64
        /// The Ballista cluster (`df://host:50050`) that queries over archives run on
        /// (`docs/scale-out.md`); empty: everything runs here. Superusers only.
        pub cluster: String, default = String::new()
        /// Seconds a plan may run on the cluster before it is stopped (57014) and its job
        /// cancelled: a cluster without executors queues jobs for ever. 0: no limit.
        pub cluster_timeout_seconds: u64, default = 600
    }
}

impl ConfigExtension for TasteConfig {
    const PREFIX: &'static str = "tastedb";
}
