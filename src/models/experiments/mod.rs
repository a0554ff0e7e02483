//! Experiments (`experiments.md`): `CREATE EXPERIMENT homepage ON MODEL recs (champion 90,
//! challenger 10)` splits the users of `recommend('homepage', user, k)` between aliases of a
//! model by a hash of their id, so that a user always gets the same arm; every answer served
//! through a running experiment is logged in `tastedb_impressions` ([`impressions`]) with the
//! probability that each shown item had of being shown, and `experiment_results('homepage')`
//! ([`results`]) joins those impressions to the events that followed them. `STOP EXPERIMENT`
//! and `PROMOTE EXPERIMENT … ARM a` end it; then the name serves the model's active version.

pub mod impressions;
mod parser;
pub mod replay;
mod results;
mod statements;

pub use parser::{ExperimentStatement, experiment_statement};
pub use results::register_functions;

use crate::catalog::system_tables::{SystemTables, timestamp_type};
use crate::engine::{Command, Family};
use crate::error::Result;
use crate::models::registry::{ACTIVE, Pin};
use crate::storage::{Named, NamedRecords, Store, keys};
use datafusion::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// CREATE, DROP, STOP and PROMOTE EXPERIMENT.
pub const STATEMENTS: Family = Family {
    name: "experiments",
    parse: |parser| Ok(experiment_statement(parser)?.map(|s| Arc::new(s) as Arc<dyn Command>)),
};

/// One arm: an alias of the model and its share of the users, as a weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    /// The alias it serves (`active`: the active version).
    pub alias: String,
    /// Its weight; its share is the weight over the sum of the arms' weights.
    pub weight: u32,
}

/// Where an experiment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Splitting users between its arms and logging impressions.
    Running,
    /// Ended by STOP EXPERIMENT.
    Stopped,
    /// Ended by PROMOTE EXPERIMENT: an arm's version became the active one.
    Promoted,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Stopped => "stopped",
            State::Promoted => "promoted",
        }
    }
}

/// The events an experiment's results count: a table and its columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The table (the model's source table unless `events` is given).
    pub table: String,
    /// Its column of user ids.
    pub user_column: String,
    /// Its column of item ids.
    pub item_column: String,
    /// Its column of event times.
    pub time_column: String,
    /// Its column of event types, if it has one.
    pub event_column: Option<String>,
}

/// An experiment as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// Its name, which `recommend` takes in place of a model's.
    pub name: String,
    /// The model whose aliases it serves.
    pub model: String,
    /// The arms, in the order written; the first is the control that results compare to.
    pub arms: Vec<Arm>,
    /// What the user ids are hashed with (the experiment's name unless `SALT` is given).
    pub salt: String,
    /// How long after an impression an event counts as its outcome, in microseconds.
    pub window_micros: i64,
    /// That window as written.
    pub window: String,
    /// The event type that counts as a success (`None`: any event of the user on the item).
    pub success: Option<String>,
    /// Where the events that follow impressions are.
    pub outcome: Outcome,
    /// Where it stands.
    pub state: State,
    /// The arm PROMOTE made active.
    pub promoted: Option<String>,
    /// The role that created it (`None`: the embedding program).
    pub owner: Option<String>,
    /// Creation time, microseconds since the Unix epoch.
    pub created_micros: i64,
    /// When STOP or PROMOTE ended it.
    pub ended_micros: Option<i64>,
}

impl Named for Experiment {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Experiment {
    /// The arm of `user`: the same for the same user, salt and weights, and each arm's share
    /// of the users in the long run (the first 8 bytes of SHA-256(salt, 0, user) scaled to the
    /// sum of the weights).
    pub fn arm_for(&self, user: &str) -> &Arm {
        let total: u64 = self.arms.iter().map(|a| u64::from(a.weight)).sum();
        let mut input = Vec::with_capacity(self.salt.len() + 1 + user.len());
        input.extend_from_slice(self.salt.as_bytes());
        input.push(0);
        input.extend_from_slice(user.as_bytes());
        let digest = ring::digest::digest(&ring::digest::SHA256, &input);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_ref()[..8]);
        let point = ((u128::from(u64::from_be_bytes(first)) * u128::from(total)) >> 64) as u64;
        let mut below = 0;
        for arm in &self.arms {
            below += u64::from(arm.weight);
            if point < below {
                return arm;
            }
        }
        // weights are positive, so the loop returns; the last arm otherwise
        &self.arms[self.arms.len() - 1]
    }

    /// The arm that serves `user` while the experiment runs; `None` once it has ended (its
    /// name then serves the model's active version).
    pub fn arm_serving(&self, user: &str) -> Option<&Arm> {
        (self.state == State::Running).then(|| self.arm_for(user))
    }

    /// The share of users an arm gets.
    pub fn share(&self, arm: &Arm) -> f64 {
        let total: u32 = self.arms.iter().map(|a| a.weight).sum();
        f64::from(arm.weight) / f64::from(total.max(1))
    }

    /// The version an arm serves.
    pub fn pin(arm: &Arm) -> Pin {
        match arm.alias.as_str() {
            ACTIVE => Pin::Active,
            alias => Pin::Alias(alias.to_string()),
        }
    }

    fn arms_text(&self) -> String {
        let arms: Vec<String> = (self.arms.iter())
            .map(|a| format!("{} {}", a.alias, a.weight))
            .collect();
        arms.join(", ")
    }
}

/// Every experiment of a data directory.
#[derive(Debug)]
pub struct Experiments {
    records: NamedRecords<Experiment>,
}

impl Experiments {
    /// The experiments stored in `store`.
    pub fn load(store: Arc<Store>) -> Result<Experiments> {
        Ok(Experiments {
            records: NamedRecords::load(store, keys::EXPERIMENT, "experiment")?,
        })
    }

    /// The experiment `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<Experiment> {
        self.records.get(name)
    }

    /// The experiment `name`, shared (what serving reads on every request).
    pub fn shared(&self, name: &str) -> Option<Arc<Experiment>> {
        self.records.shared(name)
    }

    /// The running experiments on `model`.
    pub fn running_on(&self, model: &str) -> Vec<Experiment> {
        let all = self.records.list().into_iter();
        all.filter(|e| e.model == model && e.state == State::Running)
            .collect()
    }

    /// Every experiment on `model`.
    pub fn on_model(&self, model: &str) -> Vec<Experiment> {
        let all = self.records.list().into_iter();
        all.filter(|e| e.model == model).collect()
    }

    fn rows(&self) -> Result<RecordBatch> {
        let list = self.records.list();
        let text = |f: fn(&Experiment) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from_iter(list.iter().map(f)))
        };
        let columns: Vec<ArrayRef> = vec![
            text(|e| Some(e.name.clone())),
            text(|e| Some(e.model.clone())),
            text(|e| Some(e.arms_text())),
            text(|e| Some(e.state.word().to_string())),
            text(|e| e.promoted.clone()),
            text(|e| Some(e.window.clone())),
            text(|e| e.success.clone()),
            text(|e| Some(e.outcome.table.clone())),
            Arc::new(Float64Array::from_iter_values(
                list.iter().map(|e| e.share(&e.arms[0])),
            )),
            text(|e| e.owner.clone()),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                list.iter().map(|e| e.created_micros),
            )),
            Arc::new(TimestampMicrosecondArray::from_iter(
                list.iter().map(|e| e.ended_micros),
            )),
        ];
        let nullable = |name: &str, data_type: DataType| Field::new(name, data_type, true);
        let schema = Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("model", DataType::Utf8, false),
            Field::new("arms", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
            nullable("promoted_arm", DataType::Utf8),
            Field::new("window", DataType::Utf8, false),
            nullable("success", DataType::Utf8),
            Field::new("events", DataType::Utf8, false),
            Field::new("control_share", DataType::Float64, false),
            nullable("owner", DataType::Utf8),
            Field::new("created_at", timestamp_type(), false),
            nullable("ended_at", timestamp_type()),
        ]);
        Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
    }
}

impl SystemTables for Experiments {
    fn names(&self) -> &'static [&'static str] {
        &["tastedb_experiments"]
    }

    fn rows(&self, name: &str) -> Option<Result<RecordBatch>> {
        (name == "tastedb_experiments").then(|| Experiments::rows(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(arms: &[(&str, u32)], salt: &str) -> Experiment {
        Experiment {
            name: "homepage".into(),
            model: "recs".into(),
            arms: (arms.iter())
                .map(|(alias, weight)| Arm {
                    alias: alias.to_string(),
                    weight: *weight,
                })
                .collect(),
            salt: salt.into(),
            window_micros: 3_600_000_000,
            window: "1 hour".into(),
            success: None,
            outcome: Outcome {
                table: "events".into(),
                user_column: "user_id".into(),
                item_column: "item_id".into(),
                time_column: "ts".into(),
                event_column: None,
            },
            state: State::Running,
            promoted: None,
            owner: None,
            created_micros: 0,
            ended_micros: None,
        }
    }

    #[test]
    fn ten_thousand_users_split_ninety_ten_within_two_percent_and_always_alike() {
        let split = experiment(&[("champion", 90), ("challenger", 10)], "homepage");
        let users: Vec<String> = (0..10_000).map(|u| format!("user_{u}")).collect();
        let arms: Vec<&str> = (users.iter())
            .map(|u| split.arm_for(u).alias.as_str())
            .collect();
        let challenger = arms.iter().filter(|a| **a == "challenger").count();
        let share = challenger as f64 / users.len() as f64;
        assert!((share - 0.10).abs() <= 0.02, "challenger share {share}");
        // the same user, the same arm, every time and from another copy of the record
        let again = split.clone();
        assert!((users.iter()).all(|u| again.arm_for(u).alias == split.arm_for(u).alias));
        // another salt is another split, with the same proportions
        let resalted = experiment(&[("champion", 90), ("challenger", 10)], "other");
        let moved = (users.iter())
            .filter(|u| resalted.arm_for(u).alias != split.arm_for(u).alias)
            .count();
        assert!(moved > 500, "{moved} users changed arm with the salt");
        assert_eq!(split.share(&split.arms[1]), 0.1);
    }
}
