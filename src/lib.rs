//! TasteDB: a recommendation database. Events, catalog and (later) models live in RocksDB;
//! queries run on Apache DataFusion; the [`Engine`] is the embedding API.

pub mod ann;
pub mod cache;
pub mod catalog;
mod engine;
pub mod error;
pub mod features;
pub mod ml;
pub mod server;
pub mod sql;
pub mod storage;

pub use engine::Engine;
pub use error::{Error, Result};
