//! The SQL surface: TasteDB's parser extension over DataFusion's, and the statements TasteDB
//! runs itself (CREATE/DROP TABLE of stored tables, COPY FROM).

pub mod config;
pub mod copy_from;
mod copy_text;
mod create_table;
pub(crate) mod execute;
mod feature_parser;
pub(crate) mod features;
mod functions;
mod index_statements;
mod insert_values;
mod model_parser;
mod models;
pub mod names;
pub mod nearest;
pub mod notices;
pub mod parser;
mod query_arguments;
mod ranking;
pub(crate) mod ranking_table;
pub mod recommend;
mod recommend_items;
mod words;

pub(crate) use functions::register as register_functions;
