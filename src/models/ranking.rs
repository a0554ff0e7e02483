//! Ranking for `recommend` and `similar_items`: through a model's HNSW index when one is given,
//! exactly otherwise, and always `k` rows when `k` eligible items exist. A graph search keeps
//! `ef` candidates (from `ann::EF_SEARCH`, or k plus the user's seen items if more); when seen
//! items or a filter leave fewer than `k` of them, the search is repeated four times wider, up
//! to [`MAX_EF`], and after that the ranking is computed exactly over the eligible items.

use crate::models::item_index::{EF_SEARCH, ItemIndex};
use crate::models::new_items::NewItems;
use std::iter::successors;

/// The widest graph search before exact ranking takes over.
pub const MAX_EF: usize = 3_200;

/// The `ef` of each graph search for `needed` candidates: wider and wider.
fn widening(needed: usize) -> impl Iterator<Item = usize> {
    successors(Some(needed.max(EF_SEARCH)), |ef| Some(ef * 4)).take_while(|ef| *ef <= MAX_EF)
}

/// The `k` best of the first graph search (in `widening` order) whose allowed candidates
/// number at least `k`; `None` when none does.
fn search_wider(
    k: usize,
    needed: usize,
    search: impl Fn(usize) -> Vec<u32>,
    allowed: impl Fn(usize) -> bool,
    score: impl Fn(usize) -> f32,
) -> Option<Vec<(usize, f32)>> {
    for ef in widening(needed) {
        let candidates = search(ef);
        let exhausted = candidates.len() < ef;
        let ranked = best(
            candidates
                .into_iter()
                .map(|i| i as usize)
                .filter(|&i| allowed(i))
                .map(|i| (i, score(i))),
            k,
        );
        if ranked.len() == k {
            return Some(ranked);
        }
        if exhausted {
            break;
        }
    }
    None
}
use crate::error::{Error, Result};
use crate::ml::TrainedModel;
use crate::ml::kernels::dot;
use crate::ml::model::{Profile, Scorer, Taste, top_k};

/// Whether `eligible` (all items when `None`) allows item index `i`.
fn is_eligible(eligible: Option<&[bool]>, i: usize) -> bool {
    eligible.is_none_or(|e| e.get(i).copied().unwrap_or(false))
}

/// The item indexes `index` and the new items' graph find for `search`, each once.
fn search_both(
    index: &ItemIndex,
    new: &NewItems,
    search: impl Fn(&ItemIndex) -> Vec<u32>,
) -> Vec<u32> {
    let mut found = search(index);
    if !new.is_empty() {
        found.extend(search(new.graph()));
    }
    found
}

/// The `k` best items for `profile` among the model's items and `new` ones that `eligible`
/// allows (all when `None`), the profile's seen items excluded: (item, score).
pub fn recommend(
    trained: &TrainedModel,
    new: &NewItems,
    profile: &Profile,
    k: usize,
    index: Option<&ItemIndex>,
    eligible: Option<&[bool]>,
) -> Vec<(usize, f32)> {
    let seen = &profile.seen;
    let allowed = |i: usize| seen.binary_search(&(i as u32)).is_err() && is_eligible(eligible, i);
    let score = |x: &[f32], i: usize| {
        trained
            .item_row(i, new.vectors())
            .map_or(0.0, |y| dot(x, y))
    };
    if let (Some(index), Taste::Vector(x)) = (index, &profile.taste) {
        let found = search_wider(
            k,
            k + seen.len(),
            |ef| search_both(index, new, |graph| graph.by_inner_product(x, ef)),
            allowed,
            |i| score(x, i),
        );
        if let Some(ranked) = found {
            return ranked;
        }
    }
    let mut scores = trained.scores_for(&profile.taste);
    if let Taste::Vector(x) = &profile.taste {
        let first = trained.item_ids.len();
        scores.extend((first..first + new.len()).map(|i| score(x, i)));
    }
    for (i, score) in scores.iter_mut().enumerate() {
        if !allowed(i) {
            *score = f32::NEG_INFINITY;
        }
    }
    top_k(&scores, k)
}

/// The `k` items most similar in cosine to item `item` among the model's items and `new` ones
/// that `eligible` allows.
#[allow(clippy::too_many_arguments)]
pub fn similar(
    model: &str,
    algorithm: &str,
    trained: &TrainedModel,
    new: &NewItems,
    item: &str,
    k: usize,
    index: Option<&ItemIndex>,
    eligible: Option<&[bool]>,
) -> Result<Vec<(usize, f32)>> {
    if !matches!(trained.scorer, Scorer::Factors { .. }) {
        return Err(Error::FeatureNotSupported(format!(
            "model \"{model}\" ({algorithm}) has no item vectors; similar_items needs a factor \
             model such as als"
        )));
    }
    let Some(target) = trained.item_index(item).or_else(|| new.index(item)) else {
        return Err(Error::InvalidParameter(format!(
            "item \"{item}\" is not known to model \"{model}\""
        )));
    };
    let row = |i: usize| trained.item_row(i, new.vectors()).unwrap_or(&[]);
    let norm = |v: &[f32]| dot(v, v).sqrt().max(1e-10);
    let cosine = |i: usize| dot(row(target), row(i)) / (norm(row(target)) * norm(row(i)));
    let allowed = |i: usize| i != target && is_eligible(eligible, i);
    if let Some(index) = index {
        let found = search_wider(
            k,
            k + 1,
            |ef| search_both(index, new, |graph| graph.by_cosine(row(target), ef)),
            allowed,
            cosine,
        );
        if let Some(ranked) = found {
            return Ok(ranked);
        }
    }
    let scores: Vec<f32> = (0..trained.item_ids.len() + new.len())
        .map(|i| {
            if allowed(i) {
                cosine(i)
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    Ok(top_k(&scores, k))
}

/// The `k` best of `scored`, best first, ties to the lower index.
fn best(scored: impl Iterator<Item = (usize, f32)>, k: usize) -> Vec<(usize, f32)> {
    let mut ranked: Vec<(usize, f32)> = scored.collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(k);
    ranked
}
