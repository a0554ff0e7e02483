//! The integration tests, compiled into one binary (DataFusion's `core_integration.rs`
//! pattern): every test binary links DataFusion and RocksDB again, so one binary builds and
//! links once. Each module tests one area through public interfaces only.

mod archive;
mod backup;
mod bi_tools;
mod blocks;
mod bulk_ingest;
mod cancel;
mod cli;
mod cluster;
mod common;
mod crash;
mod disk_full;
mod engine;
mod experiments;
mod fast_path;
mod features;
mod freshness;
mod fuzz;
mod http;
mod memory;
mod model_check;
mod models;
mod privileges;
mod psql;
mod real_clients;
mod replica;
mod retraining;
mod roles;
mod server;
mod side_by_side;
mod sources;
mod sources_broker;
mod sqllogic;
mod transactions;
mod vectors;
mod wire_protocol;
