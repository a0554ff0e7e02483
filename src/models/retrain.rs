//! Retraining on policy (see [`crate::models::policy`]): [`run_policies`] looks at every
//! model's policy twice a second and, when a run is due, trains a new version from the newest
//! version's algorithm, source and options, as the role that set the policy. Runs are one at
//! a time; serving goes on from the active version meanwhile. The new version records its
//! trigger and whether it was promoted and why (`tastedb_model_versions`); a failed run is
//! logged and retried after 1, 2, 4, … seconds (at most ten minutes), shown meanwhile in
//! `tastedb_models`. The schedule is the stored policy and the versions' creation times and
//! row-id watermarks, so it survives a restart.

use crate::engine::{Context, Engine};
use crate::error::Result;
use crate::models::parser::{TrainModel, TrainSource};
use crate::models::policy::Trigger;
use crate::models::registry::{ModelEntry, ModelVersion};
use crate::models::statements::{Start, train_model};
use crate::roles::Actor;
use crate::sql::notices::Notices;
use crate::sql::parser::parse_query;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the policies are looked at.
const TICK: Duration = Duration::from_millis(500);
/// The longest wait after failed runs.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Runs the retraining policies of `engine`'s models until the future is dropped.
pub async fn run_policies(engine: Engine) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        for entry in engine.models().models() {
            if let Some((newest, trigger)) = due(&engine, &entry) {
                retrain(&engine, &entry, &newest, trigger).await;
            }
        }
    }
}

/// The newest version of `entry` and why a run is due, if one is.
fn due(engine: &Engine, entry: &ModelEntry) -> Option<(ModelVersion, Trigger)> {
    let policy = &entry.record.policy;
    if !policy.is_scheduled() {
        return None;
    }
    let registry = engine.models();
    if registry
        .retrain_failure(&entry.record.name)
        .is_some_and(|f| f.retry_at > Instant::now())
    {
        return None;
    }
    let newest = entry.versions.last()?.clone();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let age = Duration::from_micros(now.saturating_sub(newest.created_micros).max(0) as u64);
    let mut new_rows = Some(0u64);
    for (table, watermark) in &newest.depends_on.watermarks {
        let written = engine
            .catalog()
            .get(table)
            .map(|t| t.written_row_ids().saturating_sub(*watermark));
        new_rows = new_rows.zip(written).map(|(a, b)| a + b);
    }
    if newest.depends_on.watermarks.is_empty() {
        new_rows = None;
    }
    let trigger = policy.due(age, new_rows)?;
    Some((newest, trigger))
}

/// Trains a new version of `entry`'s model like `newest`, and records how it ended.
async fn retrain(engine: &Engine, entry: &ModelEntry, newest: &ModelVersion, trigger: Trigger) {
    let name = &entry.record.name;
    let policy = &entry.record.policy;
    let reason = match &trigger {
        Trigger::Time => format!(
            "retrain_every: version {} is older than {}",
            newest.version,
            policy.every_text().unwrap_or_default()
        ),
        Trigger::Events(rows) => format!(
            "retrain_after_events: {rows} rows written since version {}",
            newest.version
        ),
    };
    tracing::info!(model = %name, "retraining ({reason})");
    let actor = match &policy.run_as {
        Some(role) => Actor::Role(role.clone()),
        None => Actor::Embedder,
    };
    let notices = Notices::tracing();
    let cx = Context {
        engine,
        actor: &actor,
        notices: &notices,
    };
    let run = async {
        let statement = like(name, newest)?;
        let start = Start::Policy {
            trigger: reason,
            policy,
        };
        train_model(&cx, &statement, start).await
    };
    let outcome = match run.await {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(model = %name, error = %e, "retraining failed; it is retried later");
            Err(e.to_string())
        }
    };
    engine.models().retrain_ended(name, outcome, backoff);
}

/// The TRAIN MODEL that trains `name` again as `version` was trained.
fn like(name: &str, version: &ModelVersion) -> Result<TrainModel> {
    let source = match version
        .source
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
    {
        Some(query) => TrainSource::Query(parse_query(query)?),
        None => TrainSource::Table(version.source.clone()),
    };
    Ok(TrainModel {
        name: name.to_string(),
        algorithm: version.algorithm.clone(),
        source,
        options: version
            .params
            .iter()
            .filter(|(option, _)| option.as_str() != "activate")
            .map(|(option, value)| (option.clone(), value.clone()))
            .collect(),
        lists: Vec::new(),
    })
}

/// The wait after `failures` failed runs in a row: 1 s, doubling, at most [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    let seconds = 1u64 << failures.saturating_sub(1).min(20);
    Duration::from_secs(seconds).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_runs_wait_longer_and_longer() {
        let waits: Vec<u64> = [1, 2, 3, 10, 40].map(|n| backoff(n).as_secs()).to_vec();
        assert_eq!(waits, [1, 2, 4, 512, 600]);
    }
}
