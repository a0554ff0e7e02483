//! Ranking for `recommend` and `similar_items`: through a model's HNSW index when one is given,
//! exactly otherwise, and always `k` rows when `k` eligible items exist. The index returns a
//! fixed number of candidates (`ann::EF_SEARCH`); when the user's seen items or a filter leave
//! fewer than `k` of them, the ranking is computed exactly over the eligible items instead.

use crate::ann::{EF_SEARCH, ItemIndex};
use crate::error::{Error, Result};
use crate::ml::TrainedModel;
use crate::ml::kernels::dot;
use crate::ml::model::{Scorer, top_k};

/// The `k` best items for user index `user` (popularity for `None`) among the items that
/// `eligible` allows (all when `None`), the user's seen items excluded: (item, score).
pub fn recommend(
    trained: &TrainedModel,
    user: Option<usize>,
    k: usize,
    index: Option<&ItemIndex>,
    eligible: Option<&[bool]>,
) -> Vec<(usize, f32)> {
    let seen: &[u32] = user.map_or(&[], |u| trained.seen.row(u).0);
    let allowed =
        |i: usize| seen.binary_search(&(i as u32)).is_err() && eligible.is_none_or(|e| e[i]);
    if let (
        Some(index),
        Some(u),
        Scorer::Factors {
            factors,
            users,
            items,
        },
    ) = (index, user, &trained.scorer)
        && seen.len() + k <= EF_SEARCH
    {
        let x = &users[u * factors..(u + 1) * factors];
        let candidates = index.by_inner_product(x).into_iter().map(|i| i as usize);
        let ranked = best(
            candidates
                .filter(|&i| allowed(i))
                .map(|i| (i, dot(x, &items[i * factors..(i + 1) * factors]))),
            k,
        );
        if ranked.len() == k {
            return ranked;
        }
    }
    let mut scores = trained.scores(user);
    for (i, score) in scores.iter_mut().enumerate() {
        if !allowed(i) {
            *score = f32::NEG_INFINITY;
        }
    }
    top_k(&scores, k)
}

/// The `k` items most similar in cosine to item `item` among those `eligible` allows.
pub fn similar(
    model: &str,
    algorithm: &str,
    trained: &TrainedModel,
    item: &str,
    k: usize,
    index: Option<&ItemIndex>,
    eligible: Option<&[bool]>,
) -> Result<Vec<(usize, f32)>> {
    let Some(target) = trained.item_index(item) else {
        return Err(Error::InvalidParameter(format!(
            "item \"{item}\" is not known to model \"{model}\""
        )));
    };
    let Scorer::Factors { factors, items, .. } = &trained.scorer else {
        return Err(Error::FeatureNotSupported(format!(
            "model \"{model}\" ({algorithm}) has no item vectors; similar_items needs a factor \
             model such as als"
        )));
    };
    let row = |i: usize| &items[i * factors..(i + 1) * factors];
    let norm = |v: &[f32]| dot(v, v).sqrt().max(1e-10);
    let cosine = |i: usize| dot(row(target), row(i)) / (norm(row(target)) * norm(row(i)));
    let allowed = |i: usize| i != target && eligible.is_none_or(|e| e[i]);
    if let Some(index) = index
        && k < EF_SEARCH
    {
        let candidates = index.by_cosine(row(target)).into_iter().map(|i| i as usize);
        let ranked = best(
            candidates.filter(|&i| allowed(i)).map(|i| (i, cosine(i))),
            k,
        );
        if ranked.len() == k {
            return Ok(ranked);
        }
    }
    let scores: Vec<f32> = (0..trained.item_ids.len())
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
