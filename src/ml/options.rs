//! `TRAIN MODEL … WITH (…)` options: parsed, checked and defaulted in one place, so that every
//! bad value is a 22023 naming the option before any work starts.

use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// The training algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Implicit-feedback ALS (Hu, Koren, Volinsky 2008), conjugate-gradient solver.
    Als,
    /// Items ranked by how many users interacted with them.
    Popularity,
    /// EASE (Steck 2019), closed form.
    Ease,
    /// Item k-NN with cosine similarity and shrinkage.
    ItemKnn,
    /// Bayesian personalised ranking, SGD.
    Bpr,
}

impl Algorithm {
    /// The algorithm called `name`.
    pub fn named(name: &str) -> Result<Algorithm> {
        match name.to_lowercase().as_str() {
            "als" => Ok(Algorithm::Als),
            "popularity" => Ok(Algorithm::Popularity),
            "ease" => Ok(Algorithm::Ease),
            "item_knn" => Ok(Algorithm::ItemKnn),
            "bpr" => Ok(Algorithm::Bpr),
            _ => Err(Error::InvalidParameter(format!(
                "unknown algorithm \"{name}\"; use als, bpr, ease, item_knn or popularity"
            ))),
        }
    }

    /// The name used in SQL and the registry.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Als => "als",
            Algorithm::Popularity => "popularity",
            Algorithm::Ease => "ease",
            Algorithm::ItemKnn => "item_knn",
            Algorithm::Bpr => "bpr",
        }
    }

    fn own_options(self) -> &'static [&'static str] {
        match self {
            Algorithm::Als => &[
                "factors",
                "iterations",
                "regularization",
                "alpha",
                "cg_steps",
            ],
            Algorithm::Popularity => &[],
            Algorithm::Ease => &["lambda"],
            Algorithm::ItemKnn => &["neighbors", "shrink"],
            Algorithm::Bpr => &["factors", "iterations", "learning_rate", "regularization"],
        }
    }
}

/// Options every algorithm takes.
const COMMON: &[&str] = &[
    "user_column",
    "item_column",
    "weight_column",
    "time_column",
    "event_weights",
    "holdout",
    "split",
    "k",
    "refit",
    "seed",
    "threads",
    "activate",
    "max_memory_mb",
];

/// Checked training options with their defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Source column of user ids.
    pub user_column: String,
    /// Source column of item ids.
    pub item_column: String,
    /// Source column of weights, if any (`weight` when the source has it).
    pub weight_column: Option<String>,
    /// Source column of event times, if any (`ts` when the source has it).
    pub time_column: Option<String>,
    /// Weights by `event_type`, replacing the weight column.
    pub event_weights: Option<BTreeMap<String, f32>>,
    /// Fraction of pairs held out for metrics (0 = none).
    pub holdout: f64,
    /// Hold out the latest pairs instead of random ones.
    pub split_by_time: bool,
    /// Cut-off of the ranking metrics.
    pub k: usize,
    /// Train again on all pairs after evaluation.
    pub refit: bool,
    /// Seed of the split and the initial factors.
    pub seed: u64,
    /// Worker threads (0 = all cores).
    pub threads: usize,
    /// Make the new version the active one.
    pub activate: bool,
    /// Refuse models whose factors would need more than this.
    pub max_memory_mb: u64,
    /// Latent factors (ALS).
    pub factors: usize,
    /// Passes over users and items (ALS).
    pub iterations: usize,
    /// L2 regularisation (ALS).
    pub regularization: f32,
    /// Confidence scale: confidence = 1 + alpha · weight (ALS).
    pub alpha: f32,
    /// Conjugate-gradient steps per user and pass (ALS).
    pub cg_steps: usize,
    /// L2 regularisation of the item weights (EASE).
    pub lambda: f32,
    /// Neighbours kept per item (item k-NN).
    pub neighbors: usize,
    /// Shrinkage of the cosine similarity (item k-NN).
    pub shrink: f32,
    /// SGD step size (BPR).
    pub learning_rate: f32,
    /// The options as given, for the registry.
    pub given: BTreeMap<String, String>,
}

impl TrainOptions {
    /// Checks `given` (name → literal text) for `algorithm` and fills in defaults.
    pub fn parse(algorithm: Algorithm, given: &[(String, String)]) -> Result<TrainOptions> {
        let mut map = BTreeMap::new();
        for (name, value) in given {
            let name = name.to_lowercase();
            if !COMMON.contains(&name.as_str()) && !algorithm.own_options().contains(&name.as_str())
            {
                let mut valid: Vec<&str> = COMMON.to_vec();
                valid.extend(algorithm.own_options());
                return Err(Error::InvalidParameter(format!(
                    "unknown option \"{name}\" for {}; valid options: {}",
                    algorithm.name(),
                    valid.join(", ")
                )));
            }
            if map.insert(name.clone(), value.clone()).is_some() {
                return Err(Error::InvalidParameter(format!(
                    "option \"{name}\" is given twice"
                )));
            }
        }
        let text = |name: &str| map.get(name).cloned();
        // BPR takes many cheap passes and little regularisation; ALS few passes and more.
        let (default_iterations, default_regularization) = match algorithm {
            Algorithm::Bpr => (100.0, 0.01),
            _ => (15.0, 20.0),
        };
        let options = TrainOptions {
            algorithm,
            user_column: text("user_column").unwrap_or_else(|| "user_id".into()),
            item_column: text("item_column").unwrap_or_else(|| "item_id".into()),
            weight_column: text("weight_column"),
            time_column: text("time_column"),
            event_weights: text("event_weights")
                .map(|v| event_weights(&v))
                .transpose()?,
            holdout: number(
                &map,
                "holdout",
                0.2,
                |v| (0.0..1.0).contains(&v),
                "in [0, 1)",
            )?,
            split_by_time: match text("split").as_deref() {
                None | Some("random") => false,
                Some("time") => true,
                Some(other) => {
                    return Err(Error::InvalidParameter(format!(
                        "option \"split\" must be 'random' or 'time', not '{other}'"
                    )));
                }
            },
            k: number(
                &map,
                "k",
                10.0,
                |v| v >= 1.0 && v.fract() == 0.0,
                "a positive integer",
            )? as usize,
            refit: boolean(&map, "refit", true)?,
            seed: number(
                &map,
                "seed",
                42.0,
                |v| v >= 0.0 && v.fract() == 0.0,
                "a non-negative integer",
            )? as u64,
            threads: number(
                &map,
                "threads",
                0.0,
                |v| v >= 0.0 && v.fract() == 0.0,
                "a non-negative integer",
            )? as usize,
            activate: boolean(&map, "activate", true)?,
            max_memory_mb: number(&map, "max_memory_mb", 4096.0, |v| v > 0.0, "positive")? as u64,
            factors: number(
                &map,
                "factors",
                64.0,
                |v| v >= 1.0 && v.fract() == 0.0 && v <= 4096.0,
                "an integer in [1, 4096]",
            )? as usize,
            iterations: number(
                &map,
                "iterations",
                default_iterations,
                |v| v >= 1.0 && v.fract() == 0.0 && v <= 10_000.0,
                "an integer in [1, 10000]",
            )? as usize,
            regularization: number(
                &map,
                "regularization",
                default_regularization,
                |v| v >= 0.0,
                "non-negative",
            )? as f32,
            alpha: number(&map, "alpha", 1.0, |v| v >= 0.0, "non-negative")? as f32,
            cg_steps: number(
                &map,
                "cg_steps",
                3.0,
                |v| v >= 1.0 && v.fract() == 0.0 && v <= 100.0,
                "an integer in [1, 100]",
            )? as usize,
            lambda: number(&map, "lambda", 250.0, |v| v > 0.0, "positive")? as f32,
            neighbors: number(
                &map,
                "neighbors",
                100.0,
                |v| v >= 1.0 && v.fract() == 0.0,
                "a positive integer",
            )? as usize,
            shrink: number(&map, "shrink", 10.0, |v| v >= 0.0, "non-negative")? as f32,
            learning_rate: number(
                &map,
                "learning_rate",
                0.05,
                |v| v > 0.0 && v <= 10.0,
                "in (0, 10]",
            )? as f32,
            given: map.clone(),
        };
        Ok(options)
    }
}

fn number(
    map: &BTreeMap<String, String>,
    name: &str,
    default: f64,
    valid: impl Fn(f64) -> bool,
    expected: &str,
) -> Result<f64> {
    let Some(text) = map.get(name) else {
        return Ok(default);
    };
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && valid(value) => Ok(value),
        _ => Err(Error::InvalidParameter(format!(
            "option \"{name}\" must be {expected}, not {text}"
        ))),
    }
}

fn boolean(map: &BTreeMap<String, String>, name: &str, default: bool) -> Result<bool> {
    match map.get(name).map(|v| v.to_lowercase()) {
        None => Ok(default),
        Some(v) if matches!(v.as_str(), "true" | "on" | "1" | "yes") => Ok(true),
        Some(v) if matches!(v.as_str(), "false" | "off" | "0" | "no") => Ok(false),
        Some(v) => Err(Error::InvalidParameter(format!(
            "option \"{name}\" must be true or false, not {v}"
        ))),
    }
}

/// `'view:1,cart:3,purchase:5,dislike:-2'`.
fn event_weights(text: &str) -> Result<BTreeMap<String, f32>> {
    let bad = || {
        Error::InvalidParameter(format!(
            "option \"event_weights\" must look like 'view:1,purchase:5', not '{text}'"
        ))
    };
    text.split(',')
        .map(|entry| {
            let (name, weight) = entry.split_once(':').ok_or_else(bad)?;
            let weight: f32 = weight.trim().parse().map_err(|_| bad())?;
            if !weight.is_finite() || name.trim().is_empty() {
                return Err(bad());
            }
            Ok((name.trim().to_string(), weight))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_checks() {
        let options = TrainOptions::parse(Algorithm::Als, &[]).unwrap();
        assert_eq!(
            (options.factors, options.iterations, options.k),
            (64, 15, 10)
        );
        for bad in [
            ("factors", "0"),
            ("iterations", "-1"),
            ("regularization", "-0.5"),
            ("alpha", "NaN"),
            ("k", "0"),
            ("holdout", "1"),
            ("split", "'weekly'"),
            ("nonsense", "1"),
            ("event_weights", "view=1"),
        ] {
            let error = TrainOptions::parse(Algorithm::Als, &given(&[bad])).unwrap_err();
            assert_eq!(error.sqlstate(), "22023", "{bad:?}: {error}");
        }
        let error = TrainOptions::parse(Algorithm::Popularity, &given(&[("factors", "8")]));
        assert!(error.is_err(), "popularity takes no factors");
        let weights = TrainOptions::parse(
            Algorithm::Popularity,
            &given(&[("event_weights", "view:1, dislike:-2")]),
        )
        .unwrap()
        .event_weights
        .unwrap();
        assert_eq!(weights["dislike"], -2.0);
    }
}
