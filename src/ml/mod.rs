//! In-engine training: interaction matrices, the algorithms, and ranking metrics. Nothing here
//! knows SQL or storage; `sql::models` feeds it rows and `catalog::models` keeps its results.

pub mod als;
pub mod bpr;
pub mod interactions;
pub mod item_item;
pub mod metrics;
pub mod model;
pub mod options;
pub mod popularity;
pub mod train;

pub use interactions::{Interactions, Split};
pub use metrics::Metrics;
pub use model::{Scorer, TrainedModel};
pub use options::{Algorithm, TrainOptions};
pub use train::{Progress, TrainOutcome, train};
