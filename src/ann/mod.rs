//! Approximate nearest items: HNSW graphs (`instant-distance`) over a model's item factors, one
//! ranking by inner product (for `recommend`) and one by cosine (for `similar_items`).
//!
//! HNSW ranks by a metric distance, so inner product goes through the transform of Bachrach et
//! al. (2014): every item vector gets one more coordinate, √(M² − |y|²) with M the largest item
//! norm, and queries get 0 there; then |q − y|² = |q|² + M² − 2 q·y, and the nearest items by
//! L2 are those with the largest dot product. Cosine is L2 between unit vectors.

use crate::error::{Error, Result};
use crate::ml::kernels::{dot, l2_squared};
use instant_distance::{Builder, HnswMap, Point, Search};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

/// Candidates a search returns (HNSW's `ef`): the most items one query can rank. A request
/// that needs more (k plus the items to skip) is answered by exact scoring instead.
pub const EF_SEARCH: usize = 200;
const EF_CONSTRUCTION: usize = 200;

/// A vector as a graph point: squared L2 distance.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Vector(Vec<f32>);

impl Point for Vector {
    fn distance(&self, other: &Self) -> f32 {
        l2_squared(&self.0, &other.0)
    }
}

/// The two graphs of one model version.
#[derive(Serialize, Deserialize)]
pub struct ItemIndex {
    factors: usize,
    by_inner_product: HnswMap<Vector, u32>,
    by_cosine: HnswMap<Vector, u32>,
}

impl std::fmt::Debug for ItemIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemIndex")
            .field("factors", &self.factors)
            .finish()
    }
}

thread_local! {
    /// Search state, reused by the queries of one thread.
    static SEARCH: RefCell<Search> = RefCell::new(Search::default());
}

impl ItemIndex {
    /// Builds both graphs over `items` (row-major, `factors` per item), deterministically from
    /// `seed`. Runs on the current rayon pool.
    pub fn build(items: &[f32], factors: usize, seed: u64) -> ItemIndex {
        let rows: Vec<&[f32]> = items.chunks_exact(factors.max(1)).collect();
        let norms: Vec<f32> = rows.iter().map(|y| dot(y, y).sqrt()).collect();
        let largest = norms.iter().copied().fold(0f32, f32::max);
        let augmented = rows
            .iter()
            .zip(&norms)
            .map(|(y, norm)| {
                let mut v = y.to_vec();
                v.push((largest * largest - norm * norm).max(0.0).sqrt());
                Vector(v)
            })
            .collect();
        let unit = rows
            .iter()
            .zip(&norms)
            .map(|(y, norm)| Vector(y.iter().map(|v| v / norm.max(1e-10)).collect()))
            .collect();
        let ids: Vec<u32> = (0..rows.len() as u32).collect();
        let builder = || {
            Builder::default()
                .ef_construction(EF_CONSTRUCTION)
                .ef_search(EF_SEARCH)
                .seed(seed)
        };
        ItemIndex {
            factors,
            by_inner_product: builder().build(augmented, ids.clone()),
            by_cosine: builder().build(unit, ids),
        }
    }

    /// Up to [`EF_SEARCH`] item indexes, approximately the best by inner product with `query`,
    /// best first.
    pub fn by_inner_product(&self, query: &[f32]) -> Vec<u32> {
        let mut point = query.to_vec();
        point.push(0.0);
        search(&self.by_inner_product, &Vector(point))
    }

    /// Up to [`EF_SEARCH`] item indexes, approximately the most similar in cosine to
    /// `query`, best first.
    pub fn by_cosine(&self, query: &[f32]) -> Vec<u32> {
        let norm = dot(query, query).sqrt().max(1e-10);
        search(
            &self.by_cosine,
            &Vector(query.iter().map(|v| v / norm).collect()),
        )
    }

    /// The index's bytes for storage.
    pub fn encode(&self) -> Result<Vec<u8>> {
        postcard::to_stdvec(self).map_err(|e| Error::Internal(format!("index encoding: {e}")))
    }

    /// Reads an index back; damage is XX001.
    pub fn decode(bytes: &[u8]) -> Result<ItemIndex> {
        postcard::from_bytes(bytes).map_err(|e| Error::Corrupt(format!("item index: {e}")))
    }
}

fn search(map: &HnswMap<Vector, u32>, point: &Vector) -> Vec<u32> {
    SEARCH.with(|search| {
        let mut search = search.borrow_mut();
        map.search(point, &mut search)
            .map(|item| *item.value)
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn finds_the_exact_best_items_and_round_trips() {
        let (n, k) = (600, 8);
        let mut rng = StdRng::seed_from_u64(5);
        let items: Vec<f32> = (0..n * k).map(|_| rng.random::<f32>() - 0.5).collect();
        let index = ItemIndex::build(&items, k, 1);
        let mut hits = 0;
        for q in 0..50 {
            let query: Vec<f32> = (0..k).map(|_| rng.random::<f32>() - 0.5).collect();
            let mut exact: Vec<(usize, f32)> = items
                .chunks_exact(k)
                .map(|y| dot(&query, y))
                .enumerate()
                .collect();
            exact.sort_by(|a, b| b.1.total_cmp(&a.1));
            let found = index.by_inner_product(&query);
            hits += exact[..10]
                .iter()
                .filter(|(i, _)| found[..10].contains(&(*i as u32)))
                .count();
            if q == 0 {
                let target = &items[..k];
                assert_eq!(index.by_cosine(target)[0], 0, "an item is its own nearest");
            }
        }
        assert!(hits >= 475, "recall@10 {}", hits as f64 / 500.0);
        let copy = ItemIndex::decode(&index.encode().unwrap()).unwrap();
        let query = &items[k..2 * k];
        assert_eq!(copy.by_inner_product(query), index.by_inner_product(query));
        assert_eq!(ItemIndex::decode(b"junk").unwrap_err().sqlstate(), "XX001");
    }
}
