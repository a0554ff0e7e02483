//! Models: training statements (`TRAIN MODEL`, `DROP`/`SHOW`/`EVALUATE`/`ALTER MODEL`), the
//! registry of versions and their aliases, serving (`recommend`, `similar_items`, `predict`,
//! `recommend_items`) with its prediction cache and item graphs, and experiments between
//! versions with their impression log. The algorithms themselves are
//! in `crate::ml`, pure of SQL and storage.

pub mod cache;
mod events;
pub mod experiments;
mod explain;
mod graphs;
pub mod item_index;
mod live;
mod new_items;
mod parser;
mod policy;
mod ranking;
pub mod ranking_table;
mod recommend;
mod recommend_items;
pub mod registry;
mod retrain;
mod search;
mod statements;
mod system_tables;
mod warm;

pub use experiments::Experiments;
pub use experiments::impressions::ImpressionLog;
pub use parser::{ModelStatement, TrainModel, TrainSource};
pub use ranking_table::{
    RANKING_SIGNATURES, Ranked, Serving, ServingCache, ServingLive, serving_stamp,
};
pub use recommend::register_functions;
pub use registry::{ModelRegistry, ModelVersion, Pin};
pub use retrain::run_policies;
pub use warm::warm;

use crate::engine::{Command, Family, FunctionObject};
use crate::roles::ObjectKind;
use std::sync::Arc;

/// The model statements.
pub const STATEMENTS: Family = Family {
    name: "models",
    parse: |parser| Ok(parser::model_statement(parser)?.map(|s| Arc::new(s) as Arc<dyn Command>)),
};

/// The serving functions, which read the model their first argument names (SELECT on it;
/// `model@alias` and an experiment's name stand for the model).
pub const FUNCTION_OBJECTS: &[FunctionObject] = &[
    FunctionObject {
        function: "recommend",
        kind: ObjectKind::Model,
    },
    FunctionObject {
        function: "similar_items",
        kind: ObjectKind::Model,
    },
    FunctionObject {
        function: "predict",
        kind: ObjectKind::Model,
    },
    FunctionObject {
        function: "recommend_items",
        kind: ObjectKind::Model,
    },
    FunctionObject {
        function: "explain_recommendation",
        kind: ObjectKind::Model,
    },
    FunctionObject {
        function: "experiment_results",
        kind: ObjectKind::Model,
    },
    FunctionObject {
        function: "experiment_arm",
        kind: ObjectKind::Model,
    },
];
