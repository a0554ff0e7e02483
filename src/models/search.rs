//! Hyper-parameter search: `TRAIN MODEL recs USING als FROM events WITH (factors = [32, 64,
//! 128], regularization = [1, 10, 50], trials = 9, search = 'grid' | 'random', metric =
//! 'ndcg_at_k')`. Options given as lists are searched: `grid` trains every combination (in
//! order, the last option varying fastest), `random` a random `trials` of them without
//! repeats (from the `seed` option). Every trial is a version with its holdout metrics; the
//! best by `metric` becomes active (as TRAIN's `activate` decides). The source is read once
//! for all trials.

use crate::error::{Error, Result};
use crate::ml::Metrics;
use crate::models::policy::{METRICS, metric_value};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// The most trials one TRAIN runs.
pub const MAX_TRIALS: usize = 1000;

/// The trials of a search, each as the options of one TRAIN.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// The options of each trial: the scalar options, then one value of each searched one.
    pub trials: Vec<Vec<(String, String)>>,
    /// The holdout metric that picks the best trial.
    pub metric: String,
    /// `grid` or `random`.
    pub kind: String,
}

impl Search {
    /// The search that `options` (scalars) and `lists` (options given as lists) ask for;
    /// `None` for a TRAIN without lists and without `trials`, `search` or `metric`.
    pub fn new(
        options: &[(String, String)],
        lists: &[(String, Vec<String>)],
    ) -> Result<Option<Search>> {
        let value = |name: &str| {
            options
                .iter()
                .find(|(o, _)| o == name)
                .map(|(_, v)| v.clone())
        };
        let (trials, kind, metric) = (value("trials"), value("search"), value("metric"));
        if lists.is_empty() {
            return match (&trials, &kind, &metric) {
                (None, None, None) => Ok(None),
                _ => Err(Error::InvalidParameter(
                    "trials, search and metric choose among values given as lists, such as \
                     factors = [32, 64]: no option is given as a list"
                        .into(),
                )),
            };
        }
        let kind = kind.unwrap_or_else(|| "grid".into());
        let metric = metric.unwrap_or_else(|| METRICS[0].to_string());
        if !METRICS.contains(&metric.as_str()) {
            return Err(Error::InvalidParameter(format!(
                "metric must be one of {}, not \"{metric}\"",
                METRICS.join(", ")
            )));
        }
        for (name, values) in lists {
            if values.is_empty() {
                return Err(Error::InvalidParameter(format!("{name} lists no values")));
            }
        }
        let size = (lists.iter()).try_fold(1usize, |n, (_, values)| n.checked_mul(values.len()));
        let grid = size.filter(|&n| n <= MAX_TRIALS * 1000).ok_or_else(|| {
            Error::InvalidParameter("the searched options have too many combinations".into())
        })?;
        let trials = match trials {
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_TRIALS).contains(&n) => n,
                _ => {
                    return Err(Error::InvalidParameter(format!(
                        "trials must be an integer from 1 to {MAX_TRIALS}, not \"{text}\""
                    )));
                }
            },
            None if kind == "grid" => grid,
            None => grid.min(10),
        };
        let mut combinations: Vec<usize> = (0..grid).collect();
        match kind.as_str() {
            "grid" if trials == grid && grid <= MAX_TRIALS => {}
            "grid" => {
                return Err(Error::InvalidParameter(format!(
                    "search = 'grid' trains all {grid} combinations, not trials = {trials}: \
                     use search = 'random' for fewer"
                )));
            }
            "random" => {
                let seed = value("seed").and_then(|s| s.parse().ok()).unwrap_or(42);
                combinations.shuffle(&mut StdRng::seed_from_u64(seed));
                combinations.truncate(trials);
            }
            other => {
                return Err(Error::InvalidParameter(format!(
                    "search must be 'grid' or 'random', not \"{other}\""
                )));
            }
        }
        let scalars: Vec<(String, String)> = (options.iter())
            .filter(|(o, _)| !matches!(o.as_str(), "trials" | "search" | "metric"))
            .filter(|(o, _)| !lists.iter().any(|(listed, _)| listed == o))
            .cloned()
            .collect();
        let trials = (combinations.into_iter())
            .map(|mut at| {
                let mut chosen = Vec::with_capacity(lists.len());
                for (name, values) in lists.iter().rev() {
                    chosen.push((name.clone(), values[at % values.len()].clone()));
                    at /= values.len();
                }
                chosen.reverse();
                scalars.iter().cloned().chain(chosen).collect()
            })
            .collect();
        Ok(Some(Search {
            trials,
            metric,
            kind,
        }))
    }

    /// The value of the search's metric among `metrics`.
    pub fn score(&self, metrics: &Metrics) -> f64 {
        metric_value(metrics, &self.metric)
    }

    /// How the searched options were set in `trial`, as `factors = 64, regularization = 10`.
    pub fn describe(trial: &[(String, String)], lists: &[(String, Vec<String>)]) -> String {
        let searched = trial
            .iter()
            .filter(|(o, _)| lists.iter().any(|(l, _)| l == o));
        let parts: Vec<String> = searched.map(|(o, v)| format!("{o} = {v}")).collect();
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists() -> Vec<(String, Vec<String>)> {
        vec![
            ("factors".into(), vec!["32".into(), "64".into()]),
            (
                "regularization".into(),
                vec!["1".into(), "10".into(), "50".into()],
            ),
        ]
    }

    fn options(given: &[(&str, &str)]) -> Vec<(String, String)> {
        (given.iter())
            .map(|(o, v)| (o.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_grid_trains_every_combination_and_random_a_sample_without_repeats() {
        let grid = Search::new(&options(&[("iterations", "5")]), &lists())
            .unwrap()
            .unwrap();
        assert_eq!(grid.trials.len(), 6);
        assert_eq!(
            grid.trials[1],
            options(&[
                ("iterations", "5"),
                ("factors", "32"),
                ("regularization", "10")
            ])
        );
        assert_eq!(
            Search::describe(&grid.trials[5], &lists()),
            "factors = 64, regularization = 50"
        );
        let random = options(&[("trials", "4"), ("search", "random"), ("seed", "7")]);
        let random = Search::new(&random, &lists()).unwrap().unwrap();
        assert_eq!(random.trials.len(), 4);
        let mut seen = random.trials.clone();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 4);
        assert!(
            random
                .trials
                .iter()
                .all(|t| t.iter().all(|(o, _)| o != "trials"))
        );
        assert_eq!(
            Search::new(&options(&[("iterations", "5")]), &[]).unwrap(),
            None
        );
        for bad in [
            options(&[("trials", "4")]),
            options(&[("search", "annealing")]),
            options(&[("metric", "accuracy")]),
            options(&[("trials", "0"), ("search", "random")]),
        ] {
            let refused = Search::new(&bad, &lists()).unwrap_err();
            assert_eq!(refused.sqlstate(), "22023", "{bad:?}");
        }
        assert_eq!(
            Search::new(&options(&[("trials", "3")]), &[])
                .unwrap_err()
                .sqlstate(),
            "22023"
        );
    }
}
