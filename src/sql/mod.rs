//! SQL plumbing shared by every feature: COPY parsing and loading, table definitions from
//! `CREATE TABLE`, identifier rules, table-function arguments (constants, `$n` parameters,
//! queries planned ahead), notices, the `tastedb.*` settings and the functions TasteDB adds
//! for Postgres clients.

pub mod arguments;
mod catalog_functions;
pub mod config;
mod copy_binary;
pub mod copy_from;
mod copy_text;
pub mod copy_to_file;
pub mod create_table;
pub mod defaults;
pub mod execution_table;
mod expand_array;
mod functions;
pub mod insert_values;
pub mod json_rows;
pub mod names;
pub mod notices;
pub mod parser;
pub mod precedence;
pub mod query_arguments;
pub mod timeouts;
pub mod words;

pub(crate) use functions::register as register_functions;

pub use catalog_functions::default_setting;
