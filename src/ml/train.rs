//! One training run: holdout split, fit, evaluation, and (with `refit`) a final fit on every
//! pair; reports each iteration to a progress callback.

use crate::error::{Error, Result};
use crate::ml::als::{self, AlsParams};
use crate::ml::bpr::{self, BprParams};
use crate::ml::interactions::{Interactions, Split};
use crate::ml::item_item;
use crate::ml::metrics::{Metrics, evaluate};
use crate::ml::model::{Scorer, TrainedModel};
use crate::ml::options::{Algorithm, TrainOptions};
use crate::ml::popularity::item_popularity;
use std::ops::ControlFlow;
use std::time::Instant;

/// One line of the training curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// 1-based iteration of the final fit.
    pub iteration: usize,
    /// Training loss after it.
    pub loss: f64,
    /// Seconds since the fit started.
    pub seconds: f64,
}

/// What a training run produced.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The model to serve.
    pub model: TrainedModel,
    /// Holdout metrics, when a holdout was kept.
    pub metrics: Option<Metrics>,
    /// The final fit's curve.
    pub log: Vec<Progress>,
    /// Seconds for the whole run.
    pub seconds: f64,
    /// Seconds of each phase of the run, in order: `split` (the holdout and the pair
    /// matrices), `fit`, then with a holdout `evaluate` and `refit` (the final fit on every
    /// pair, when there is one).
    pub phases: Vec<(&'static str, f64)>,
}

/// Trains `options.algorithm` on `data`, calling `progress` after every iteration of the
/// final fit. `stopped` is asked between iterations: once it answers true (its statement was
/// stopped), training ends with 57014.
pub fn train(
    mut data: Interactions,
    options: &TrainOptions,
    mut progress: impl FnMut(&Progress) + Send,
    stopped: &(dyn Fn() -> bool + Sync),
) -> Result<TrainOutcome> {
    if data.pairs.is_empty() {
        return Err(Error::InvalidParameter(
            "the training data is empty: the source returned no rows with a user and an item"
                .into(),
        ));
    }
    check_memory(&data, options)?;
    let started = Instant::now();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads)
        .build()
        .map_err(|e| Error::Internal(format!("training threads: {e}")))?;
    let (users, items) = (data.users.len(), data.items.len());
    let mut phases = Vec::new();
    let mut phase = Instant::now();
    let mut timed = |name: &'static str, phases: &mut Vec<(&'static str, f64)>| {
        phases.push((name, phase.elapsed().as_secs_f64()));
        phase = Instant::now();
    };
    let metrics = if options.holdout > 0.0 {
        let (train_pairs, holdout) =
            data.split(options.holdout, options.split_by_time, options.seed);
        let split = Split::new(users, items, &train_pairs, &holdout);
        drop((train_pairs, holdout));
        timed("split", &mut phases);
        let (scorer, popularity) =
            pool.install(|| fit(&split, options, &mut |_| go_on(stopped)))?;
        if stopped() {
            return Err(stopped_early());
        }
        timed("fit", &mut phases);
        let (users, items) = (data.users.clone(), data.items.clone());
        let model = TrainedModel::new(users, items, split.train, popularity, scorer);
        let metrics = evaluate(&model, &split.holdout, options.k);
        timed("evaluate", &mut phases);
        if !options.refit {
            let log = Vec::new();
            return Ok(TrainOutcome {
                model,
                metrics: Some(metrics),
                log,
                seconds: started.elapsed().as_secs_f64(),
                phases,
            });
        }
        Some(metrics)
    } else {
        None
    };
    let everything = Split::new(users, items, &data.pairs, &[]);
    // the matrix holds the pairs now
    data.pairs = Vec::new();
    if metrics.is_none() {
        // the matrices of every pair; after a holdout run this counts toward the refit
        timed("split", &mut phases);
    }
    let mut log = Vec::new();
    let fit_started = Instant::now();
    let (scorer, popularity) = pool.install(|| {
        fit(&everything, options, &mut |(iteration, loss)| {
            let line = Progress {
                iteration,
                loss,
                seconds: fit_started.elapsed().as_secs_f64(),
            };
            progress(&line);
            log.push(line);
            go_on(stopped)
        })
    })?;
    if stopped() {
        return Err(stopped_early());
    }
    timed(if metrics.is_some() { "refit" } else { "fit" }, &mut phases);
    let model = TrainedModel::new(data.users, data.items, everything.train, popularity, scorer);
    Ok(TrainOutcome {
        model,
        metrics,
        log,
        seconds: started.elapsed().as_secs_f64(),
        phases,
    })
}

fn go_on(stopped: &dyn Fn() -> bool) -> ControlFlow<()> {
    if stopped() {
        ControlFlow::Break(())
    } else {
        ControlFlow::Continue(())
    }
}

fn stopped_early() -> Error {
    Error::QueryCanceled("its statement was stopped during training".into())
}

/// The bytes the model trained on `data` with `options` holds: its factors, or its item-item
/// matrices.
pub fn model_bytes(data: &Interactions, options: &TrainOptions) -> u64 {
    let vectors = (data.users.len() + data.items.len()) as u64;
    let items = data.items.len() as u64;
    match options.algorithm {
        Algorithm::Als | Algorithm::Bpr => vectors * (options.factors as u64 + 1) * 4,
        Algorithm::Popularity => items * 4,
        // the co-occurrence matrix, its inverse and the weights
        Algorithm::Ease | Algorithm::ItemKnn => items * items * 4 * 3,
    }
}

/// Refuses a model whose factors would not fit in `max_memory_mb`.
fn check_memory(data: &Interactions, options: &TrainOptions) -> Result<()> {
    let items = data.items.len() as u64;
    let bytes = model_bytes(data, options);
    let limit = options.max_memory_mb * 1024 * 1024;
    if bytes > limit {
        return Err(Error::ProgramLimitExceeded(format!(
            "the model would need {} MiB for {} users and {} items with {}, more than \
             max_memory_mb = {}",
            bytes.div_ceil(1024 * 1024),
            data.users.len(),
            items,
            options.algorithm.name(),
            options.max_memory_mb
        )));
    }
    Ok(())
}

/// The scorer fitted on `split`'s training matrix, and the items' popularity.
fn fit(
    split: &Split,
    options: &TrainOptions,
    on_iteration: &mut dyn FnMut((usize, f64)) -> ControlFlow<()>,
) -> Result<(Scorer, Vec<f32>)> {
    let popularity = item_popularity(&split.train, split.items);
    let scorer = match options.algorithm {
        Algorithm::Popularity => {
            let _ = on_iteration((1, 0.0));
            Scorer::Popularity(popularity.clone())
        }
        Algorithm::Ease => {
            let g = item_item::cooccurrence(&split.train, split.items);
            if on_iteration((1, 0.0)).is_break() {
                return Err(stopped_early());
            }
            Scorer::ItemItem(item_item::ease(g, options.lambda)?)
        }
        Algorithm::ItemKnn => {
            let g = item_item::cooccurrence(&split.train, split.items);
            if on_iteration((1, 0.0)).is_break() {
                return Err(stopped_early());
            }
            Scorer::ItemItem(item_item::knn(&g, options.neighbors, options.shrink))
        }
        Algorithm::Bpr => {
            let params = BprParams {
                factors: options.factors,
                iterations: options.iterations,
                learning_rate: options.learning_rate,
                regularization: options.regularization,
                seed: options.seed,
            };
            let factors = bpr::train(&split.train, split.items, &params, |i, loss| {
                on_iteration((i, loss))
            });
            Scorer::Factors {
                factors: options.factors + 1,
                users: factors.users,
                items: factors.items,
            }
        }
        Algorithm::Als => {
            let params = AlsParams {
                factors: options.factors,
                iterations: options.iterations,
                regularization: options.regularization,
                alpha: options.alpha,
                cg_steps: options.cg_steps,
                seed: options.seed,
            };
            let factors = als::train(&split.train, split.items, &params, |i, loss| {
                on_iteration((i, loss))
            });
            Scorer::Factors {
                factors: options.factors,
                users: factors.users,
                items: factors.items,
            }
        }
    };
    Ok((scorer, popularity))
}
