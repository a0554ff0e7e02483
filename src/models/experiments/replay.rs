//! `EVALUATE MODEL recs [VERSION 4] ON IMPRESSIONS OF homepage`: how a version would have done
//! on the traffic an experiment logged, without showing it to anyone (off-policy evaluation).
//!
//! For each logged request (a user and the list shown, each item with its propensity `p` and
//! whether a success followed it, `c`), the version ranks the user's list of the same length
//! as it was trained (the user's later events are not folded in: they include the outcomes
//! being predicted). With `w = 1/p` for each shown item the version's list also holds:
//!
//! - `ips` = Σ w·c / requests: the expected successes per request under the version
//!   (item-level inverse propensity scoring);
//! - `snips` = Σ w·c / Σ w × the mean list length: self-normalised, lower variance, slightly
//!   biased for few requests;
//! - `hit_rate`: the fraction of logged successes whose item the version's list holds;
//! - `logged`: successes per request of the lists actually shown, to compare with.
//!
//! IPS is unbiased when every item the version would show had a chance of being shown (p > 0)
//! and a success depends on the item and user, not on the rest of the list or the position.
//! With deterministic top-k arms, the only randomness is the split: an item that no arm shows
//! to a user has p = 0 and adds nothing, so the estimate is low by the value of the version's
//! items outside every arm's list (`matched` over the version's list slots says how much of it
//! was covered).

use crate::engine::Context;
use crate::error::{Error, Result};
use crate::models::experiments::results::judged_impressions;
use crate::models::registry::ModelVersion;
use crate::roles::{Object, Privilege};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The row `EVALUATE … ON IMPRESSIONS` returns.
pub fn replay_schema() -> SchemaRef {
    let count = |name: &str| Field::new(name, DataType::Int64, false);
    let value = |name: &str| Field::new(name, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        count("version"),
        Field::new("experiment", DataType::Utf8, false),
        count("requests"),
        count("impressions"),
        count("slots"),
        count("matched"),
        value("logged"),
        value("ips"),
        value("snips"),
        value("hit_rate"),
    ]))
}

/// One logged request: the user and (item, propensity, success) in rank order.
struct Request {
    user: String,
    shown: Vec<(String, f64, bool)>,
}

/// Replays `version` on the impressions of `experiment` (see the module's documentation).
pub async fn replay(
    cx: &Context<'_>,
    version: &ModelVersion,
    experiment: &str,
) -> Result<RecordBatch> {
    let engine = cx.engine;
    let logged = engine.experiments().get(experiment).ok_or_else(|| {
        Error::UndefinedObject(format!("experiment \"{experiment}\" does not exist"))
    })?;
    engine
        .users()
        .check(cx.actor, &Object::model(&logged.model), Privilege::Select)?;
    engine.impressions().flush().await?;
    let judged = judged_impressions(&logged, "rank, propensity");
    let sql = format!(
        "{judged} SELECT request_id, user_id, item_id, propensity, success FROM judged \
         ORDER BY request_id, rank"
    );
    let requests = requests(&engine.sql(&sql).await?)?;
    let trained = engine.models().pinned(
        &version.model,
        &crate::models::Pin::Version(version.version),
    )?;
    let trained = trained.1;
    let longest = requests.iter().map(|r| r.shown.len()).max().unwrap_or(0);
    let mut lists: HashMap<&str, Vec<&str>> = HashMap::new();
    for request in &requests {
        lists.entry(&request.user).or_insert_with(|| {
            let ranked = trained.recommend(trained.user_index(&request.user), longest);
            ranked
                .iter()
                .map(|&(item, _)| trained.item_ids[item].as_str())
                .collect()
        });
    }
    let mut totals = Totals::default();
    for request in &requests {
        let list = &lists[request.user.as_str()];
        let target: HashSet<&str> = list.iter().take(request.shown.len()).copied().collect();
        totals.slots += target.len() as i64;
        for (item, propensity, success) in &request.shown {
            totals.impressions += 1;
            let held = target.contains(item.as_str());
            if *success {
                totals.successes += 1;
                totals.successes_held += i64::from(held);
            }
            if held && *propensity > 0.0 {
                let weight = 1.0 / propensity;
                totals.matched += 1;
                totals.weights += weight;
                totals.weighted_successes += weight * f64::from(u8::from(*success));
            }
        }
    }
    let n = requests.len() as f64;
    let ratio = |num: f64, den: f64| (den > 0.0).then(|| num / den);
    let mean_list = ratio(totals.slots as f64, n).unwrap_or(0.0);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![version.model.clone()])),
        Arc::new(Int64Array::from(vec![i64::from(version.version)])),
        Arc::new(StringArray::from(vec![logged.name.clone()])),
        Arc::new(Int64Array::from(vec![requests.len() as i64])),
        Arc::new(Int64Array::from(vec![totals.impressions])),
        Arc::new(Int64Array::from(vec![totals.slots])),
        Arc::new(Int64Array::from(vec![totals.matched])),
        Arc::new(Float64Array::from(vec![ratio(totals.successes as f64, n)])),
        Arc::new(Float64Array::from(vec![ratio(
            totals.weighted_successes,
            n,
        )])),
        Arc::new(Float64Array::from(vec![
            ratio(totals.weighted_successes, totals.weights).map(|v| v * mean_list),
        ])),
        Arc::new(Float64Array::from(vec![ratio(
            totals.successes_held as f64,
            totals.successes as f64,
        )])),
    ];
    Ok(RecordBatch::try_new(replay_schema(), columns)?)
}

#[derive(Default)]
struct Totals {
    impressions: i64,
    /// Slots of the version's lists, one list per request.
    slots: i64,
    /// Shown items the version's list holds.
    matched: i64,
    successes: i64,
    /// Successes whose item the version's list holds.
    successes_held: i64,
    weights: f64,
    weighted_successes: f64,
}

/// The judged impressions, ordered by request and rank, as requests.
fn requests(batches: &[RecordBatch]) -> Result<Vec<Request>> {
    let mut requests: Vec<Request> = Vec::new();
    let mut current: Option<String> = None;
    for batch in batches {
        let text = |i: usize| cast(batch.column(i), &DataType::Utf8);
        let (ids, users, items) = (text(0)?, text(1)?, text(2)?);
        let (ids, users, items) = (
            ids.as_string::<i32>(),
            users.as_string::<i32>(),
            items.as_string::<i32>(),
        );
        let propensities = batch.column(3).as_primitive::<Float64Type>();
        let successes = batch.column(4).as_boolean();
        for row in 0..batch.num_rows() {
            if current.as_deref() != Some(ids.value(row)) {
                current = Some(ids.value(row).to_string());
                requests.push(Request {
                    user: users.value(row).to_string(),
                    shown: Vec::new(),
                });
            }
            if let Some(request) = requests.last_mut() {
                let propensity = match propensities.is_null(row) {
                    true => 0.0,
                    false => propensities.value(row),
                };
                let item = items.value(row).to_string();
                request.shown.push((item, propensity, successes.value(row)));
            }
        }
    }
    Ok(requests)
}
