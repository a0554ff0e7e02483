//! TasteDB: a recommendation database. Events, the catalog, models, feature views and vector
//! indexes live in RocksDB; queries run on Apache DataFusion; the [`Engine`] is the embedding
//! API. `docs/architecture.md` maps the modules: one folder per product feature (`models`,
//! `features`, `vectors`, `roles`), the engine that dispatches statements to them, and the
//! layers below (`catalog`, `storage`, `schema`, and the pure `ml` and `ann`).

pub mod ann;
pub mod archive;
pub mod background;
pub mod backups;
pub mod blocking;
pub mod catalog;
pub mod clock;
pub mod cluster;
pub mod engine;
pub mod error;
pub mod features;
pub mod filters;
pub mod http;
pub mod metrics;
pub mod ml;
pub mod models;
pub mod roles;
pub mod schema;
pub mod server;
pub mod sources;
pub mod sql;
pub mod storage;
pub mod vectors;

pub use engine::{CommandTag, Engine, EngineOptions, Outcome};
pub use error::{Error, Result};
