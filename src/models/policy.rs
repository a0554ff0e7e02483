//! A model's retraining policy, set by `ALTER MODEL name SET (retrain_every = '1 hour',
//! retrain_after_events = 100000, promote = 'if_better', promote_metric = 'ndcg_at_k',
//! tolerance = 0.005)` and removed option by option with `ALTER MODEL name RESET (…)`; stored
//! with the model's record. [`crate::models::retrain`] runs it; this module says what it
//! means: when a run is due and whether its version is promoted.

use crate::error::{Error, Result};
use crate::ml::Metrics;
use datafusion::arrow::compute::kernels::cast_utils::{
    IntervalParseConfig, IntervalUnit, parse_interval_month_day_nano_config,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Which retrained versions become active.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Promote {
    /// Every one.
    #[default]
    Always,
    /// One whose holdout metric is at least the active version's minus the tolerance.
    IfBetter,
    /// None: an operator promotes with `ALTER MODEL … SET ACTIVE VERSION`.
    Manual,
}

impl Promote {
    fn parse(text: &str) -> Result<Promote> {
        match text.to_ascii_lowercase().as_str() {
            "always" => Ok(Promote::Always),
            "if_better" => Ok(Promote::IfBetter),
            "manual" => Ok(Promote::Manual),
            other => Err(Error::InvalidParameter(format!(
                "promote must be always, if_better or manual, not \"{other}\""
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Promote::Always => "always",
            Promote::IfBetter => "if_better",
            Promote::Manual => "manual",
        }
    }
}

/// The holdout metrics `promote_metric` may name (each is better when higher).
pub(crate) const METRICS: [&str; 5] = [
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
    "map_at_k",
    "coverage",
];

/// When a model is retrained and what happens to the new version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainPolicy {
    /// Retrain when the newest version is this old (milliseconds).
    pub every_millis: Option<u64>,
    /// Retrain when this many rows were written to the source since the newest version.
    pub after_events: Option<u64>,
    /// Which new versions become active.
    pub promote: Promote,
    /// The holdout metric `if_better` compares.
    pub metric: String,
    /// How much worse than the active version a new one may be and still be promoted.
    pub tolerance: f64,
    /// The role that set the policy: runs train as it (`None`: the embedding program).
    pub run_as: Option<String>,
}

impl Default for RetrainPolicy {
    fn default() -> Self {
        RetrainPolicy {
            every_millis: None,
            after_events: None,
            promote: Promote::Always,
            metric: METRICS[0].to_string(),
            tolerance: 0.0,
            run_as: None,
        }
    }
}

/// Why a run is due.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// The newest version is older than `retrain_every`.
    Time,
    /// This many rows were written since the newest version.
    Events(u64),
}

impl RetrainPolicy {
    /// The policy with `options` (name, value as text) set.
    pub fn set(&self, options: &[(String, String)]) -> Result<RetrainPolicy> {
        let mut policy = self.clone();
        for (name, value) in options {
            match name.as_str() {
                "retrain_every" => policy.every_millis = interval_millis("retrain_every", value)?,
                "retrain_after_events" => {
                    policy.after_events = match value.trim().parse::<u64>() {
                        Ok(0) => None,
                        Ok(n) => Some(n),
                        Err(_) => {
                            return Err(Error::InvalidParameter(format!(
                                "retrain_after_events must be a non-negative integer, not \
                                 \"{value}\""
                            )));
                        }
                    }
                }
                "promote" => policy.promote = Promote::parse(value)?,
                "promote_metric" => {
                    let metric = value.to_ascii_lowercase();
                    if !METRICS.contains(&metric.as_str()) {
                        return Err(Error::InvalidParameter(format!(
                            "promote_metric must be one of {}, not \"{value}\"",
                            METRICS.join(", ")
                        )));
                    }
                    policy.metric = metric;
                }
                "tolerance" => {
                    policy.tolerance = match value.trim().parse::<f64>() {
                        Ok(t) if t.is_finite() && t >= 0.0 => t,
                        _ => {
                            return Err(Error::InvalidParameter(format!(
                                "tolerance must be a non-negative number, not \"{value}\""
                            )));
                        }
                    }
                }
                other => return Err(unknown(other)),
            }
        }
        Ok(policy)
    }

    /// The policy with `names` back at their defaults.
    pub fn reset(&self, names: &[String]) -> Result<RetrainPolicy> {
        let mut policy = self.clone();
        let default = RetrainPolicy::default();
        for name in names {
            match name.as_str() {
                "retrain_every" => policy.every_millis = None,
                "retrain_after_events" => policy.after_events = None,
                "promote" => policy.promote = default.promote,
                "promote_metric" => policy.metric = default.metric.clone(),
                "tolerance" => policy.tolerance = default.tolerance,
                other => return Err(unknown(other)),
            }
        }
        Ok(policy)
    }

    /// Whether anything makes runs happen.
    pub fn is_scheduled(&self) -> bool {
        self.every_millis.is_some() || self.after_events.is_some()
    }

    /// Why a run is due, given the newest version's age and the rows written since it
    /// (`None` when the source does not count them).
    pub fn due(&self, age: Duration, new_rows: Option<u64>) -> Option<Trigger> {
        if let (Some(after), Some(rows)) = (self.after_events, new_rows)
            && rows >= after
        {
            return Some(Trigger::Events(rows));
        }
        match self.every_millis {
            Some(every) if age >= Duration::from_millis(every) => Some(Trigger::Time),
            _ => None,
        }
    }

    /// Whether a new version with holdout `metrics` is promoted over the active version's
    /// (`active`: its number and metrics), and why, in words.
    pub fn decide(
        &self,
        metrics: Option<&Metrics>,
        active: Option<(u32, Option<&Metrics>)>,
    ) -> (bool, String) {
        match self.promote {
            Promote::Always => (true, "promoted: promote = always".into()),
            Promote::Manual => (false, "not promoted: promote = manual".into()),
            Promote::IfBetter => {
                let Some((number, active)) = active else {
                    return (true, "promoted: no version was active".into());
                };
                let metric = &self.metric;
                let (Some(new), Some(old)) = (
                    metrics.map(|m| metric_value(m, metric)),
                    active.map(|m| metric_value(m, metric)),
                ) else {
                    return (
                        false,
                        format!(
                            "not promoted: {metric} cannot be compared (a version without \
                             holdout metrics)"
                        ),
                    );
                };
                let tolerance = self.tolerance;
                if new >= old - tolerance {
                    let reason = format!(
                        "promoted: {metric} {new:.4} >= {old:.4} of version {number} - {tolerance}"
                    );
                    (true, reason)
                } else {
                    let reason = format!(
                        "not promoted: {metric} {new:.4} < {old:.4} of version {number} - \
                         {tolerance}"
                    );
                    (false, reason)
                }
            }
        }
    }

    /// `retrain_every` in words ("1 hour 30 minutes").
    pub fn every_text(&self) -> Option<String> {
        self.every_millis.map(interval_text)
    }

    /// The policy in words, for `tastedb_models` (`None` when nothing is scheduled).
    pub fn describe(&self) -> Option<String> {
        if !self.is_scheduled() {
            return None;
        }
        let mut parts = Vec::new();
        if let Some(every) = self.every_millis {
            parts.push(format!("retrain_every = '{}'", interval_text(every)));
        }
        if let Some(after) = self.after_events {
            parts.push(format!("retrain_after_events = {after}"));
        }
        parts.push(format!("promote = '{}'", self.promote.name()));
        if self.promote == Promote::IfBetter {
            parts.push(format!("promote_metric = '{}'", self.metric));
            parts.push(format!("tolerance = {}", self.tolerance));
        }
        Some(parts.join(", "))
    }
}

/// The value of holdout metric `name` (one of [`METRICS`]).
pub(crate) fn metric_value(metrics: &Metrics, name: &str) -> f64 {
    match name {
        "precision_at_k" => metrics.precision,
        "recall_at_k" => metrics.recall,
        "map_at_k" => metrics.map,
        "coverage" => metrics.coverage,
        _ => metrics.ndcg,
    }
}

/// The interval `option` is set to, as PostgreSQL writes them ('1 hour', '90 minutes', '1
/// day 2 hours'; a bare number is seconds), in milliseconds; `None` for zero.
pub(crate) fn interval_millis(option: &str, text: &str) -> Result<Option<u64>> {
    let invalid = || {
        Error::InvalidParameter(format!(
            "{option} must be an interval such as '1 hour' or '30 seconds', not \"{text}\""
        ))
    };
    let interval =
        parse_interval_month_day_nano_config(text, IntervalParseConfig::new(IntervalUnit::Second))
            .map_err(|_| invalid())?;
    if interval.months != 0 || interval.days < 0 || interval.nanoseconds < 0 {
        return Err(invalid());
    }
    let millis = i64::from(interval.days) * 86_400_000 + interval.nanoseconds / 1_000_000;
    Ok((millis > 0).then_some(millis as u64))
}

/// `millis` as PostgreSQL prints an interval's parts ("1 day 02:30:00.5" is written here
/// "1 day 2 hours 30 minutes 0.5 seconds").
fn interval_text(millis: u64) -> String {
    let units = [(86_400_000, "day"), (3_600_000, "hour"), (60_000, "minute")];
    let mut rest = millis;
    let mut parts = Vec::new();
    for (size, unit) in units {
        let count = rest / size;
        rest %= size;
        if count > 0 {
            parts.push(format!(
                "{count} {unit}{}",
                if count == 1 { "" } else { "s" }
            ));
        }
    }
    if rest > 0 || parts.is_empty() {
        let seconds = rest as f64 / 1000.0;
        parts.push(format!(
            "{seconds} second{}",
            if seconds == 1.0 { "" } else { "s" }
        ));
    }
    parts.join(" ")
}

fn unknown(name: &str) -> Error {
    Error::InvalidParameter(format!(
        "unrecognized model parameter \"{name}\"; ALTER MODEL … SET takes retrain_every, \
         retrain_after_events, promote, promote_metric and tolerance"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(options: &[(&str, &str)]) -> Result<RetrainPolicy> {
        let options: Vec<(String, String)> = options
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        RetrainPolicy::default().set(&options)
    }

    fn metrics(ndcg: f64) -> Metrics {
        Metrics {
            k: 10,
            users: 5,
            precision: 0.1,
            recall: 0.2,
            ndcg,
            map: 0.1,
            coverage: 0.5,
        }
    }

    #[test]
    fn options_are_read_as_postgresql_writes_them() {
        let policy = set(&[
            ("retrain_every", "1 hour 30 minutes"),
            ("retrain_after_events", "100000"),
            ("promote", "IF_BETTER"),
            ("promote_metric", "recall_at_k"),
            ("tolerance", "0.005"),
        ])
        .unwrap();
        assert_eq!(policy.every_millis, Some(5_400_000));
        assert!(policy.describe().unwrap().contains("'1 hour 30 minutes'"));
        assert_eq!(interval_text(2_500), "2.5 seconds");
        assert_eq!(policy.after_events, Some(100_000));
        assert_eq!(policy.promote, Promote::IfBetter);
        assert_eq!(
            set(&[("retrain_every", "2")]).unwrap().every_millis,
            Some(2_000)
        );
        assert_eq!(set(&[("retrain_every", "0")]).unwrap().every_millis, None);
        for bad in [
            ("retrain_every", "1 month"),
            ("retrain_every", "soon"),
            ("retrain_after_events", "-1"),
            ("promote", "sometimes"),
            ("promote_metric", "auc"),
            ("tolerance", "-0.1"),
            ("factors", "8"),
        ] {
            assert_eq!(set(&[bad]).unwrap_err().sqlstate(), "22023", "{bad:?}");
        }
        let reset = policy
            .reset(&["retrain_every".into(), "promote".into()])
            .unwrap();
        assert_eq!((reset.every_millis, reset.promote), (None, Promote::Always));
        assert_eq!(reset.after_events, Some(100_000));
    }

    #[test]
    fn runs_are_due_by_events_or_by_age() {
        let policy = set(&[("retrain_every", "10 s"), ("retrain_after_events", "5")]).unwrap();
        let (young, old) = (Duration::from_secs(1), Duration::from_secs(11));
        assert_eq!(policy.due(young, Some(4)), None);
        assert_eq!(policy.due(young, Some(5)), Some(Trigger::Events(5)));
        assert_eq!(policy.due(old, None), Some(Trigger::Time));
        assert_eq!(RetrainPolicy::default().due(old, Some(9)), None);
    }

    #[test]
    fn if_better_promotes_within_the_tolerance_only() {
        let policy = set(&[("promote", "if_better"), ("tolerance", "0.01")]).unwrap();
        let old = metrics(0.30);
        assert!(
            policy
                .decide(Some(&metrics(0.295)), Some((1, Some(&old))))
                .0
        );
        let (promoted, why) = policy.decide(Some(&metrics(0.2)), Some((1, Some(&old))));
        assert!(
            !promoted && why.contains("0.2000 < 0.3000 of version 1"),
            "{why}"
        );
        assert!(!policy.decide(None, Some((1, Some(&old)))).0);
        assert!(policy.decide(Some(&old), None).0);
        assert!(!set(&[("promote", "manual")]).unwrap().decide(None, None).0);
    }
}
