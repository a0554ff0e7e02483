//! A trained model as it is served: external ids, what each user has already seen, and the
//! algorithm's parameters; scoring and top-k ranking; a compact binary form for storage.

use crate::error::{Error, Result};
use crate::ml::fold_in::FoldIn;
use crate::ml::interactions::Csr;
use crate::ml::kernels::{dot, dot_rows};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::OnceLock;

/// What an algorithm learned.
#[derive(Debug, Clone, PartialEq)]
pub enum Scorer {
    /// Latent factors: score = user · item.
    Factors {
        /// Factors per vector.
        factors: usize,
        /// Users × factors, row-major.
        users: Vec<f32>,
        /// Items × factors, row-major.
        items: Vec<f32>,
    },
    /// One score per item, the same for every user.
    Popularity(Vec<f32>),
    /// Items × items weights (row-major): a user's score for item j is the sum of column j
    /// over the items they liked (EASE, item k-NN).
    ItemItem(Vec<f32>),
}

/// A model version ready to serve.
#[derive(Debug, Clone)]
pub struct TrainedModel {
    /// External user ids by index.
    pub user_ids: Vec<String>,
    /// External item ids by index.
    pub item_ids: Vec<String>,
    /// Users × items: the items each user interacted with (excluded from recommendations).
    pub seen: Csr,
    /// Item popularity (positive interactions), for users the model does not know.
    pub popularity: Vec<f32>,
    /// The learned scorer.
    pub scorer: Scorer,
    /// Index positions by external id, built on first lookup.
    lookup: OnceLock<Lookup>,
}

#[derive(Debug, Clone, Default)]
struct Lookup {
    users: HashMap<String, usize>,
    items: HashMap<String, usize>,
}

impl PartialEq for TrainedModel {
    fn eq(&self, other: &Self) -> bool {
        self.user_ids == other.user_ids
            && self.item_ids == other.item_ids
            && self.seen == other.seen
            && self.popularity == other.popularity
            && self.scorer == other.scorer
    }
}

impl TrainedModel {
    /// A model over these ids, seen items, popularity and scorer.
    pub fn new(
        user_ids: Vec<String>,
        item_ids: Vec<String>,
        seen: Csr,
        popularity: Vec<f32>,
        scorer: Scorer,
    ) -> TrainedModel {
        TrainedModel {
            user_ids,
            item_ids,
            seen,
            popularity,
            scorer,
            lookup: OnceLock::new(),
        }
    }

    fn lookup(&self) -> &Lookup {
        self.lookup.get_or_init(|| {
            let index = |ids: &[String]| {
                ids.iter()
                    .cloned()
                    .enumerate()
                    .map(|(i, id)| (id, i))
                    .collect()
            };
            Lookup {
                users: index(&self.user_ids),
                items: index(&self.item_ids),
            }
        })
    }

    /// Builds the lookups of user and item ids now (they are otherwise built on first use).
    pub fn index_ids(&self) {
        self.lookup();
    }

    /// The index of user `id`, if the model knows it.
    pub fn user_index(&self, id: &str) -> Option<usize> {
        self.lookup().users.get(id).copied()
    }

    /// The index of item `id`, if the model knows it.
    pub fn item_index(&self, id: &str) -> Option<usize> {
        self.lookup().items.get(id).copied()
    }

    /// The score of one item for user index `user` (popularity for `None`).
    pub fn score(&self, user: Option<usize>, item: usize) -> f32 {
        self.score_for(&self.profile(user).taste, item)
    }

    /// Scores of every item for user index `user`, or the popularity for an unknown user.
    pub fn scores(&self, user: Option<usize>) -> Vec<f32> {
        self.scores_for(&self.profile(user).taste)
    }

    /// User index `user` as the version was trained with them (an unknown user for `None`).
    pub fn profile(&self, user: Option<usize>) -> Profile {
        let Some(u) = user else {
            return Profile {
                seen: Vec::new(),
                taste: Taste::Popular,
            };
        };
        let taste = match &self.scorer {
            Scorer::Factors { factors, users, .. } => {
                Taste::Vector(users[u * factors..(u + 1) * factors].to_vec())
            }
            Scorer::Popularity(_) => Taste::Liked(Vec::new()),
            Scorer::ItemItem(_) => Taste::Liked(self.liked(u).collect()),
        };
        Profile {
            seen: self.seen.row(u).0.to_vec(),
            taste,
        }
    }

    /// User index `user` (or a user the version does not know, for `None`) with the
    /// interactions `newer` (item index, weight) added to those the version was trained with:
    /// every one of them is seen, and the taste comes from all of them — a factor vector
    /// folded in with `fold` (see [`crate::ml::fold_in`]), or the liked items. Item indexes
    /// past the model's items name rows of `more_items`, vectors of items the version was not
    /// trained with (row-major, as the model's own).
    pub fn profile_with(
        &self,
        user: Option<usize>,
        newer: &[(usize, f32)],
        fold: Option<&FoldIn>,
        more_items: &[f32],
    ) -> Profile {
        let mut weights: BTreeMap<usize, f32> = BTreeMap::new();
        if let Some(u) = user {
            let (items, values) = self.seen.row(u);
            for (&i, &w) in items.iter().zip(values) {
                *weights.entry(i as usize).or_default() += w;
            }
        }
        for &(i, w) in newer {
            *weights.entry(i).or_default() += w;
        }
        let liked = || weights.iter().filter(|(_, w)| **w > 0.0).map(|(i, _)| *i);
        let taste = match (&self.scorer, fold) {
            (Scorer::Factors { .. }, Some(fold)) => Taste::Vector(
                fold.solve(
                    weights
                        .iter()
                        .filter_map(|(&i, &w)| Some((self.item_row(i, more_items)?, w))),
                ),
            ),
            (Scorer::Factors { .. }, None) => self.profile(user).taste,
            (Scorer::Popularity(_), _) => Taste::Liked(Vec::new()),
            (Scorer::ItemItem(_), _) => {
                Taste::Liked(liked().filter(|&i| i < self.item_ids.len()).collect())
            }
        };
        Profile {
            seen: weights.keys().map(|&i| i as u32).collect(),
            taste,
        }
    }

    /// The factor vector of item index `item` — a row of `more_items` past the model's own
    /// items (see [`TrainedModel::profile_with`]); `None` for models without factors.
    pub fn item_row<'a>(&'a self, item: usize, more_items: &'a [f32]) -> Option<&'a [f32]> {
        let Scorer::Factors { factors, items, .. } = &self.scorer else {
            return None;
        };
        let (rows, at) = match item.checked_sub(self.item_ids.len()) {
            None => (items.as_slice(), item),
            Some(at) => (more_items, at),
        };
        rows.get(at * factors..(at + 1) * factors)
    }

    /// The score of one item for `taste`.
    pub fn score_for(&self, taste: &Taste, item: usize) -> f32 {
        match (&self.scorer, taste) {
            (Scorer::Factors { factors, items, .. }, Taste::Vector(x)) => {
                dot(x, &items[item * factors..(item + 1) * factors])
            }
            (Scorer::Popularity(scores), _) => scores[item],
            (Scorer::ItemItem(weights), Taste::Liked(liked)) => {
                let n = self.item_ids.len();
                liked.iter().map(|i| weights[i * n + item]).sum()
            }
            _ => self.popularity[item],
        }
    }

    /// Scores of every item for `taste`.
    pub fn scores_for(&self, taste: &Taste) -> Vec<f32> {
        match (&self.scorer, taste) {
            (Scorer::Factors { items, .. }, Taste::Vector(x)) => {
                let mut scores = Vec::with_capacity(self.item_ids.len());
                dot_rows(x, items, &mut scores);
                scores
            }
            (Scorer::Popularity(scores), _) => scores.clone(),
            (Scorer::ItemItem(weights), Taste::Liked(liked)) => {
                let n = self.item_ids.len();
                let mut scores = vec![0f32; n];
                for i in liked {
                    let row = &weights[i * n..(i + 1) * n];
                    scores.iter_mut().zip(row).for_each(|(s, b)| *s += b);
                }
                scores
            }
            _ => self.popularity.clone(),
        }
    }

    /// The items user index `user` interacted with positively.
    fn liked(&self, user: usize) -> impl Iterator<Item = usize> + '_ {
        let (items, weights) = self.seen.row(user);
        items
            .iter()
            .zip(weights)
            .filter(|(_, w)| **w > 0.0)
            .map(|(&i, _)| i as usize)
    }

    /// The `k` best items for user index `user` (popularity for `None`), excluding the
    /// user's seen items: (item index, score), best first.
    pub fn recommend(&self, user: Option<usize>, k: usize) -> Vec<(usize, f32)> {
        let profile = self.profile(user);
        let mut scores = self.scores_for(&profile.taste);
        for &item in &profile.seen {
            scores[item as usize] = f32::NEG_INFINITY;
        }
        top_k(&scores, k)
    }

    /// [`TrainedModel::recommend`] for many (user, k) at once, in order. Known users of a
    /// factor model are scored a block at a time, as one matrix product of the block's
    /// vectors and the item matrix (the item matrix is read once per block, not per user).
    pub fn recommend_many(&self, requests: &[(Option<usize>, usize)]) -> Vec<Vec<(usize, f32)>> {
        let Scorer::Factors {
            factors,
            users,
            items,
        } = &self.scorer
        else {
            return (requests.iter())
                .map(|&(user, k)| self.recommend(user, k))
                .collect();
        };
        let (f, n) = (*factors, self.item_ids.len());
        let mut ranked = vec![Vec::new(); requests.len()];
        let known: Vec<(usize, usize, usize)> = (requests.iter().enumerate())
            .filter_map(|(at, &(user, k))| user.map(|u| (at, u, k)))
            .collect();
        for (at, &(user, k)) in requests.iter().enumerate() {
            if user.is_none() {
                ranked[at] = self.recommend(None, k);
            }
        }
        if f == 0 || n == 0 {
            return ranked;
        }
        let item_matrix = MatRef::from_row_major_slice(items, n, f);
        // blocks of users on rayon's threads, each one matrix product and a top-k per user
        let blocks: Vec<Vec<(usize, RankedItems)>> = known
            .par_chunks(SCORING_BLOCK)
            .map(|block| {
                let vectors: Vec<f32> = (block.iter())
                    .flat_map(|&(_, u, _)| &users[u * f..(u + 1) * f])
                    .copied()
                    .collect();
                let vectors = MatRef::from_row_major_slice(&vectors, block.len(), f);
                // column-major items × block: each user's scores are one contiguous column
                let mut scores = vec![0.0; n * block.len()];
                matmul(
                    MatMut::from_column_major_slice_mut(&mut scores, n, block.len()),
                    Accum::Replace,
                    item_matrix,
                    vectors.transpose(),
                    1.0,
                    Par::Seq,
                );
                (scores.chunks_exact_mut(n).zip(block))
                    .map(|(column, &(at, u, k))| {
                        for &item in self.seen.row(u).0 {
                            column[item as usize] = f32::NEG_INFINITY;
                        }
                        (at, top_k(column, k))
                    })
                    .collect()
            })
            .collect();
        for (at, list) in blocks.into_iter().flatten() {
            ranked[at] = list;
        }
        ranked
    }
}

/// Item indexes and scores, best first.
type RankedItems = Vec<(usize, f32)>;

/// Users scored by one matrix product in [`TrainedModel::recommend_many`]: 128 × 20,000 items
/// of scores is 10 MB.
const SCORING_BLOCK: usize = 128;

/// Whom a ranking is for: the items they interacted with and how items score for them.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Item indexes the user interacted with, ascending: never recommended to them.
    pub seen: Vec<u32>,
    /// How items score for them.
    pub taste: Taste,
}

/// How items score for one user.
#[derive(Debug, Clone, PartialEq)]
pub enum Taste {
    /// By popularity: a user the model knows nothing about.
    Popular,
    /// By inner product with this factor vector.
    Vector(Vec<f32>),
    /// By the item–item weights of these liked items (for popularity models, as popular).
    Liked(Vec<usize>),
}

/// The `k` highest finite scores, best first; ties go to the lower index. One pass with a
/// heap of the best `k` so far: most scores are turned away by one comparison with the worst
/// of them, and nothing the size of `scores` is allocated.
pub fn top_k(scores: &[f32], k: usize) -> Vec<(usize, f32)> {
    if k == 0 {
        return Vec::new();
    }
    let mut best: BinaryHeap<Ranked> = BinaryHeap::with_capacity(k + 1);
    for (item, &score) in scores.iter().enumerate() {
        if !score.is_finite() {
            continue;
        }
        if best.len() < k {
            best.push(Ranked(item, score));
        } else if best.peek().is_some_and(|worst| score > worst.1) {
            // a later item ties with the worst kept one: the kept one has the lower index
            best.pop();
            best.push(Ranked(item, score));
        }
    }
    // ascending by `Ranked`'s order is best first
    best.into_sorted_vec()
        .into_iter()
        .map(|Ranked(item, score)| (item, score))
        .collect()
}

/// An (item, score) ordered so that the worse one is the greater: a max-heap keeps the worst
/// kept item on top.
#[derive(Debug, Clone, Copy)]
struct Ranked(usize, f32);

impl Ord for Ranked {
    fn cmp(&self, other: &Ranked) -> std::cmp::Ordering {
        (other.1.total_cmp(&self.1)).then(self.0.cmp(&other.0))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Ranked) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Ranked) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Ranked {}

// The stored form, written by hand: a few length-prefixed little-endian sections. Factors are
// most of a model's bytes, and a text format would triple them.
const MAGIC: &[u8; 8] = b"TDBMODL1";

impl TrainedModel {
    /// The model's bytes for storage, handed to `sink` in pieces of about a megabyte (the
    /// parameters of a large model are hundreds of megabytes: they are never all copied at
    /// once). The first error of `sink` ends the encoding.
    pub fn encode_to(&self, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let mut out = Encoder {
            buffer: Vec::with_capacity(PIECE + 64),
            sink,
            failed: None,
        };
        out.put(MAGIC);
        put_strings(&mut out, &self.user_ids);
        put_strings(&mut out, &self.item_ids);
        put_usizes(&mut out, &self.seen.offsets);
        put_u32s(&mut out, &self.seen.columns);
        put_f32s(&mut out, &self.seen.values);
        put_f32s(&mut out, &self.popularity);
        match &self.scorer {
            Scorer::Factors {
                factors,
                users,
                items,
            } => {
                out.put(&[1]);
                put_usizes(&mut out, &[*factors]);
                put_f32s(&mut out, users);
                put_f32s(&mut out, items);
            }
            Scorer::Popularity(scores) => {
                out.put(&[2]);
                put_f32s(&mut out, scores);
            }
            Scorer::ItemItem(weights) => {
                out.put(&[3]);
                put_f32s(&mut out, weights);
            }
        }
        out.finish()
    }

    /// The model's bytes for storage, in one buffer.
    #[cfg(test)]
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        let encoded = self.encode_to(&mut |piece| {
            bytes.extend_from_slice(piece);
            Ok(())
        });
        assert!(encoded.is_ok(), "a buffer takes every piece");
        bytes
    }

    /// Reads a model written by [`TrainedModel::encode`].
    pub fn decode(bytes: &[u8]) -> Result<TrainedModel> {
        let mut input = Reader { bytes, at: 0 };
        if input.take(MAGIC.len())? != MAGIC {
            return Err(Error::Corrupt("model: unknown format".into()));
        }
        let user_ids = input.strings()?;
        let item_ids = input.strings()?;
        let seen = Csr {
            offsets: input.usizes()?,
            columns: input.u32s()?,
            values: input.f32s()?,
        };
        let popularity = input.f32s()?;
        let scorer = match input.take(1)?[0] {
            1 => {
                let factors = *input.usizes()?.first().unwrap_or(&0);
                Scorer::Factors {
                    factors,
                    users: input.f32s()?,
                    items: input.f32s()?,
                }
            }
            2 => Scorer::Popularity(input.f32s()?),
            3 => Scorer::ItemItem(input.f32s()?),
            _ => return Err(Error::Corrupt("model: unknown scorer".into())),
        };
        let model = TrainedModel::new(user_ids, item_ids, seen, popularity, scorer);
        model.check()?;
        Ok(model)
    }

    /// Checks that the sections agree, so that serving cannot index out of bounds.
    fn check(&self) -> Result<()> {
        let (users, items) = (self.user_ids.len(), self.item_ids.len());
        let seen_ok = self.seen.rows() == users
            && self.seen.offsets.windows(2).all(|w| w[0] <= w[1])
            && self.seen.offsets.last() == Some(&self.seen.columns.len())
            && self.seen.columns.iter().all(|&c| (c as usize) < items);
        let scorer_ok = match &self.scorer {
            Scorer::Factors {
                factors,
                users: u,
                items: i,
            } => {
                *factors > 0
                    && users.checked_mul(*factors) == Some(u.len())
                    && items.checked_mul(*factors) == Some(i.len())
            }
            Scorer::Popularity(scores) => scores.len() == items,
            Scorer::ItemItem(weights) => items.checked_mul(items) == Some(weights.len()),
        };
        if seen_ok && scorer_ok && self.popularity.len() == items {
            Ok(())
        } else {
            Err(Error::Corrupt("model: sections do not agree".into()))
        }
    }
}

/// Bytes an [`Encoder`] gathers before it hands them on.
const PIECE: usize = 1 << 20;

/// Gathers encoded bytes and hands them to a sink a piece at a time.
struct Encoder<'a> {
    buffer: Vec<u8>,
    sink: &'a mut dyn FnMut(&[u8]) -> Result<()>,
    failed: Option<Error>,
}

impl Encoder<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= PIECE {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.failed.is_none()
            && let Err(e) = (self.sink)(&self.buffer)
        {
            self.failed = Some(e);
        }
        self.buffer.clear();
    }

    fn finish(mut self) -> Result<()> {
        self.flush();
        self.failed.map_or(Ok(()), Err)
    }
}

fn put_len(out: &mut Encoder, len: usize) {
    out.put(&(len as u64).to_le_bytes());
}

fn put_strings(out: &mut Encoder, values: &[String]) {
    put_len(out, values.len());
    for value in values {
        put_len(out, value.len());
        out.put(value.as_bytes());
    }
}

fn put_usizes(out: &mut Encoder, values: &[usize]) {
    put_len(out, values.len());
    values
        .iter()
        .for_each(|v| out.put(&(*v as u64).to_le_bytes()));
}

fn put_u32s(out: &mut Encoder, values: &[u32]) {
    put_len(out, values.len());
    values.iter().for_each(|v| out.put(&v.to_le_bytes()));
}

fn put_f32s(out: &mut Encoder, values: &[f32]) {
    put_len(out, values.len());
    values.iter().for_each(|v| out.put(&v.to_le_bytes()));
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| Error::Corrupt("model: truncated".into()))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn len(&mut self, width: usize) -> Result<usize> {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(self.take(8)?);
        let len = u64::from_le_bytes(raw) as usize;
        if len.saturating_mul(width) > self.bytes.len() - self.at {
            return Err(Error::Corrupt("model: truncated".into()));
        }
        Ok(len)
    }

    fn strings(&mut self) -> Result<Vec<String>> {
        let count = self.len(8)?;
        (0..count)
            .map(|_| {
                let len = self.len(1)?;
                String::from_utf8(self.take(len)?.to_vec())
                    .map_err(|_| Error::Corrupt("model: bad id".into()))
            })
            .collect()
    }

    fn fixed<T, const N: usize>(&mut self, read: fn([u8; N]) -> T) -> Result<Vec<T>> {
        let count = self.len(N)?;
        let bytes = self.take(count * N)?;
        Ok(bytes
            .chunks_exact(N)
            .map(|c| {
                let mut raw = [0u8; N];
                raw.copy_from_slice(c);
                read(raw)
            })
            .collect())
    }

    fn usizes(&mut self) -> Result<Vec<usize>> {
        self.fixed::<usize, 8>(|b| u64::from_le_bytes(b) as usize)
    }

    fn u32s(&mut self) -> Result<Vec<u32>> {
        self.fixed::<u32, 4>(u32::from_le_bytes)
    }

    fn f32s(&mut self) -> Result<Vec<f32>> {
        self.fixed::<f32, 4>(f32::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two users, three items, two factors.
    fn two_users_three_items() -> TrainedModel {
        TrainedModel::new(
            vec!["u1".into(), "u2".into()],
            vec!["a".into(), "b".into(), "c".into()],
            Csr::from_triples(2, [(0, 1, 1.0), (1, 0, 2.0)].into_iter()),
            vec![1.0, 1.0, 0.0],
            Scorer::Factors {
                factors: 2,
                users: vec![1.0, 0.0, 0.0, 1.0],
                items: vec![0.5, 0.1, 0.9, 0.2, 0.3, 0.8],
            },
        )
    }

    #[test]
    fn top_k_keeps_the_best_finite_scores_and_lower_indexes_on_ties() {
        let scores = [0.5, f32::NAN, 2.0, 0.5, f32::NEG_INFINITY, 2.0, 1.0, 0.5];
        assert_eq!(top_k(&scores, 0), []);
        assert_eq!(top_k(&scores, 3), [(2, 2.0), (5, 2.0), (6, 1.0)]);
        assert_eq!(top_k(&scores, 4), [(2, 2.0), (5, 2.0), (6, 1.0), (0, 0.5)]);
        assert_eq!(
            top_k(&scores, 5),
            [(2, 2.0), (5, 2.0), (6, 1.0), (0, 0.5), (3, 0.5)]
        );
        assert_eq!(top_k(&scores, 99).len(), 6);
    }

    #[test]
    fn blocked_scoring_ranks_as_one_user_at_a_time() {
        // 300 users (more than two blocks), 50 items, 4 factors, from a fixed generator
        let mut state = 7u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let (users, items, factors) = (300, 50, 4);
        let user_factors: Vec<f32> = (0..users * factors).map(|_| next()).collect();
        let item_factors: Vec<f32> = (0..items * factors).map(|_| next()).collect();
        let seen = (0..users).flat_map(|u| [(u, (u * 7) % items, 1.0), (u, (u * 3) % items, 1.0)]);
        let model = TrainedModel::new(
            (0..users).map(|u| format!("u{u}")).collect(),
            (0..items).map(|i| format!("i{i}")).collect(),
            Csr::from_triples(users, seen.map(|(u, i, w)| (u as u32, i as u32, w))),
            (0..items).map(|i| i as f32).collect(),
            Scorer::Factors {
                factors,
                users: user_factors,
                items: item_factors,
            },
        );
        let requests: Vec<(Option<usize>, usize)> = (0..users)
            .map(|u| ((u % 17 != 0).then_some(u), 1 + u % 12))
            .collect();
        let many = model.recommend_many(&requests);
        assert_eq!(many.len(), requests.len());
        for (&(user, k), ranked) in requests.iter().zip(&many) {
            let one = model.recommend(user, k);
            let ids = |r: &[(usize, f32)]| r.iter().map(|(i, _)| *i).collect::<Vec<_>>();
            assert_eq!(ids(ranked), ids(&one), "user {user:?}");
            for ((_, a), (_, b)) in ranked.iter().zip(&one) {
                assert!((a - b).abs() < 1e-5, "{a} {b}");
            }
        }
    }

    #[test]
    fn encoding_round_trips_and_rejects_damage() {
        let model = two_users_three_items();
        let bytes = model.encode();
        assert_eq!(TrainedModel::decode(&bytes).unwrap(), model);
        assert!(TrainedModel::decode(&bytes[..bytes.len() - 3]).is_err());
        assert_eq!(model.recommend(Some(0), 5), vec![(0, 0.5), (2, 0.3)]);
        assert_eq!(model.recommend(None, 1), vec![(0, 1.0)]);
    }

    #[test]
    fn damaged_encodings_are_corrupt_never_panic() {
        let model = two_users_three_items();
        let good = model.encode();
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        for round in 0..20_000 {
            let mut bytes = good.clone();
            match round % 4 {
                // a few bytes changed anywhere
                0 | 1 => {
                    for _ in 0..1 + next() % 4 {
                        let at = (next() as usize) % bytes.len();
                        bytes[at] = next() as u8;
                    }
                }
                // an 8-byte length overwritten with an arbitrary, often huge, value
                2 => {
                    let at = MAGIC.len() + (next() as usize) % (bytes.len() - MAGIC.len() - 8);
                    bytes[at..at + 8].copy_from_slice(&next().to_le_bytes());
                }
                // cut short, or arbitrary bytes after the magic
                _ => {
                    bytes.truncate((next() as usize) % bytes.len());
                    let tail = (next() % 64) as usize;
                    bytes.extend((0..tail).map(|_| next() as u8));
                }
            }
            if let Ok(decoded) = TrainedModel::decode(&bytes) {
                // what decodes is consistent enough to serve
                let users = decoded.user_ids.len();
                let _ = decoded.recommend((users > 0).then_some(0), 3);
            }
        }
    }
}
