//! [`ItemIndex`]: a model version's HNSW graphs over its item factors, one ranking by inner
//! product (for `recommend`, built and searched with the inner product itself), one by cosine
//! (for `similar_items`).

use crate::ann::hnsw::{Hnsw, HnswError, HnswParams};
use crate::ann::metric::{Metric, Transform};
use crate::blocking::Stopped;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Candidates a first search keeps (HNSW's `ef`); `recommend` and `similar_items` search
/// wider when seen items or a filter leave fewer than k of them.
pub const EF_SEARCH: usize = 200;
/// Links per item (HNSW's M; layer 0 keeps twice as many).
const M: usize = 16;
const EF_CONSTRUCTION: usize = 200;

/// One graph and what its points are.
#[derive(Clone, Serialize, Deserialize)]
struct ItemGraph {
    transform: Transform,
    hnsw: Hnsw,
    /// Item index of each point (items without a direction are left out of cosine graphs).
    items: Vec<u32>,
}

impl ItemGraph {
    fn build(
        metric: Metric,
        items: &[f32],
        factors: usize,
        seed: u64,
        stopped: &Stopped,
    ) -> Result<ItemGraph> {
        let transform = Transform::new(metric);
        let mut points = Vec::with_capacity(items.len());
        let mut ids = Vec::new();
        for (i, item) in items.chunks_exact(factors.max(1)).enumerate() {
            if let Some(point) = transform.point(item) {
                points.extend_from_slice(&point);
                ids.push(i as u32);
            }
        }
        let params = HnswParams {
            m: M,
            ef_construction: EF_CONSTRUCTION,
            seed,
            distance: transform.graph_distance(),
        };
        let hnsw = Hnsw::build_unless(factors, params, &points, &|| stopped.is_set()).map_err(
            |e| match e {
                HnswError::Stopped => Error::QueryCanceled("its statement was stopped".into()),
                other => Error::Internal(format!("item index: {other}")),
            },
        )?;
        Ok(ItemGraph {
            transform,
            hnsw,
            items: ids,
        })
    }

    fn empty(metric: Metric, factors: usize, seed: u64) -> ItemGraph {
        let transform = Transform::new(metric);
        let params = HnswParams {
            m: M,
            ef_construction: EF_CONSTRUCTION,
            seed,
            distance: transform.graph_distance(),
        };
        ItemGraph {
            transform,
            hnsw: Hnsw::new(factors, params),
            items: Vec::new(),
        }
    }

    fn insert(&mut self, item: u32, vector: &[f32]) -> Result<()> {
        if let Some(point) = self.transform.point(vector) {
            self.hnsw
                .insert(&point)
                .map_err(|e| Error::Internal(format!("item index: {e}")))?;
            self.items.push(item);
        }
        Ok(())
    }

    /// Item indexes of the points nearest `query`, each item once (an item inserted again
    /// has several points).
    fn search(&self, query: &[f32], ef: usize) -> Vec<u32> {
        let point = self.transform.query(query);
        let mut found = HashSet::new();
        self.hnsw
            .search(&point, ef, ef)
            .into_iter()
            .filter_map(|(id, _)| self.items.get(id as usize).copied())
            .filter(|item| found.insert(*item))
            .collect()
    }
}

/// The two graphs of one model version (or of the items added to it since, see
/// [`ItemIndex::insert`]).
#[derive(Clone, Serialize, Deserialize)]
pub struct ItemIndex {
    factors: usize,
    by_inner_product: ItemGraph,
    by_cosine: ItemGraph,
}

impl std::fmt::Debug for ItemIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemIndex")
            .field("factors", &self.factors)
            .finish()
    }
}

impl ItemIndex {
    /// Builds both graphs over `items` (row-major, `factors` per item), deterministically from
    /// `seed`, side by side on the current rayon pool; 57014 once `stopped` is set.
    pub fn build(items: &[f32], factors: usize, seed: u64, stopped: &Stopped) -> Result<ItemIndex> {
        // The two graphs are independent: one per core when there are two. A thread of its
        // own rather than rayon's pool, which serving's scoring uses: a build of many seconds
        // there would keep requests waiting.
        let (by_inner_product, by_cosine) = std::thread::scope(|scope| {
            let by_cosine = std::thread::Builder::new()
                .name("item graphs".into())
                .spawn_scoped(scope, || {
                    ItemGraph::build(Metric::Cosine, items, factors, seed, stopped)
                });
            let by_inner_product = ItemGraph::build(Metric::Dot, items, factors, seed, stopped);
            let by_cosine = match by_cosine {
                Ok(thread) => thread.join().unwrap_or_else(|_| {
                    Err(Error::Internal(
                        "building the cosine item graph failed".into(),
                    ))
                }),
                Err(_) => ItemGraph::build(Metric::Cosine, items, factors, seed, stopped),
            };
            (by_inner_product, by_cosine)
        });
        Ok(ItemIndex {
            factors,
            by_inner_product: by_inner_product?,
            by_cosine: by_cosine?,
        })
    }

    /// Graphs without items, for items to be inserted one by one.
    pub fn empty(factors: usize, seed: u64) -> ItemIndex {
        ItemIndex {
            factors,
            by_inner_product: ItemGraph::empty(Metric::Dot, factors, seed),
            by_cosine: ItemGraph::empty(Metric::Cosine, factors, seed),
        }
    }

    /// Adds item index `item` with factor vector `vector` to both graphs. HNSW has no update
    /// or delete: an item whose vector changed is inserted again, and searches return each
    /// item once (callers score candidates with the item's current vector).
    pub fn insert(&mut self, item: u32, vector: &[f32]) -> Result<()> {
        self.by_inner_product.insert(item, vector)?;
        self.by_cosine.insert(item, vector)
    }

    /// Up to `ef` item indexes, approximately the best by inner product with `query`, best
    /// first.
    pub fn by_inner_product(&self, query: &[f32], ef: usize) -> Vec<u32> {
        self.by_inner_product.search(query, ef)
    }

    /// Up to `ef` item indexes, approximately the most similar in cosine to `query`, best
    /// first.
    pub fn by_cosine(&self, query: &[f32], ef: usize) -> Vec<u32> {
        self.by_cosine.search(query, ef)
    }

    /// The number of items in the inner-product graph.
    pub fn len(&self) -> usize {
        self.by_inner_product.items.len()
    }

    /// Whether the graphs are empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::kernels::dot;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn finds_the_exact_best_items_and_round_trips() {
        let (n, k) = (600, 8);
        let mut rng = StdRng::seed_from_u64(5);
        let items: Vec<f32> = (0..n * k).map(|_| rng.random::<f32>() - 0.5).collect();
        let index = ItemIndex::build(&items, k, 1, &Stopped::default()).unwrap();
        let mut hits = 0;
        for q in 0..50 {
            let query: Vec<f32> = (0..k).map(|_| rng.random::<f32>() - 0.5).collect();
            let mut exact: Vec<(usize, f32)> = items
                .chunks_exact(k)
                .map(|y| dot(&query, y))
                .enumerate()
                .collect();
            exact.sort_by(|a, b| b.1.total_cmp(&a.1));
            let found = index.by_inner_product(&query, EF_SEARCH);
            hits += exact[..10]
                .iter()
                .filter(|(i, _)| found[..10].contains(&(*i as u32)))
                .count();
            if q == 0 {
                let target = &items[..k];
                assert_eq!(
                    index.by_cosine(target, 10)[0],
                    0,
                    "an item is its own nearest"
                );
            }
        }
        assert!(hits >= 475, "recall@10 {}", hits as f64 / 500.0);
        let copy = ItemIndex::decode(&index.encode().unwrap()).unwrap();
        let query = &items[k..2 * k];
        assert_eq!(
            copy.by_inner_product(query, 50),
            index.by_inner_product(query, 50)
        );
        assert_eq!(ItemIndex::decode(b"junk").unwrap_err().sqlstate(), "XX001");
    }
}
