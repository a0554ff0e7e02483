//! Hierarchical navigable small world graphs (Malkov & Yashunin, 2018) for approximate nearest
//! neighbours by squared Euclidean distance or by negative inner product.
//!
//! Cosine is the caller's transform (unit vectors under either distance). Inner product is
//! searched directly on a graph built with it, as hnswlib's `ip` space does: measured on
//! 100,000 uniform 64-d vectors, that finds far more of the true best than squared L2 after the
//! extra-coordinate transform of Bachrach et al. (recall@10 0.58 against 0.83 at ef 200).
//!
//! Every point lives on layer 0 and, with probability falling geometrically by a factor of `m`,
//! on layers above it. Layer 0 keeps up to `2 m` links per point in one flat array with a fixed
//! stride; the sparse upper layers keep up to `m` links. Links are chosen by the heuristic of the
//! paper (its algorithm 4), which prefers neighbours in different directions over a clump of
//! close ones. Distances run with the best SIMD instruction set of the CPU, chosen once per
//! search or insert (see `ml::kernels`).

use crate::ml::kernels::{dot_with, l2_squared_with};
use pulp::{Arch, Simd, WithSimd};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt;

/// Smallest and largest `m` accepted; values outside are clamped.
const M_RANGE: (usize, usize) = (2, 1024);
/// The highest layer a point can reach.
const MAX_LEVEL: usize = 32;

/// How a graph is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    /// Links per point on the upper layers; layer 0 allows `2 m`. Clamped to 2..=1024.
    pub m: usize,
    /// Candidates gathered when linking a new point; raised to `m` if smaller.
    pub ef_construction: usize,
    /// Seed of the random layer of every point.
    pub seed: u64,
    /// What "near" means.
    pub distance: Distance,
}

/// The distance a graph is built and searched with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Distance {
    /// |a − b|².
    #[default]
    SquaredL2,
    /// −a·b: the largest inner product is the nearest (not a metric; HNSW still works well).
    NegativeDot,
}

impl Default for HnswParams {
    /// `m` 16, `ef_construction` 200, seed 0.
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            seed: 0,
            distance: Distance::SquaredL2,
        }
    }
}

/// How many points [`Hnsw::build_unless`] inserts between two questions whether to stop.
pub const STOP_CHECK_POINTS: usize = 1024;

/// Why vectors were not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HnswError {
    /// A vector's length (or, for a row-major block, the block's length) does not fit the
    /// index's dimension.
    Dimension {
        /// The index's dimension.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// The index already holds `u32::MAX` points.
    Full,
    /// The build was told to stop before it ended.
    Stopped,
}

impl fmt::Display for HnswError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HnswError::Dimension { expected, found } => {
                write!(f, "vector length {found} does not fit dimension {expected}")
            }
            HnswError::Full => write!(f, "the index holds the most points it can"),
            HnswError::Stopped => write!(f, "the build was stopped"),
        }
    }
}

impl std::error::Error for HnswError {}

/// An HNSW graph over points of one dimension, with ids `0..len()` in insertion order.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "Stored")]
pub struct Hnsw {
    dim: usize,
    params: HnswParams,
    /// Row-major, `dim` values per point.
    vectors: Vec<f32>,
    /// Per point `1 + 2 m` slots: the link count, then the links.
    layer0: Vec<u32>,
    /// Per point `1 + m` slots for each layer above 0 it is on (layer 1 first): the link
    /// count, then the links. Empty for points on layer 0 only.
    upper: Vec<Vec<u32>>,
    /// Where searches start: a point on the top layer. `None` when empty.
    entry: Option<u32>,
}

impl fmt::Debug for Hnsw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hnsw")
            .field("dim", &self.dim)
            .field("len", &self.len())
            .field("params", &self.params)
            .finish()
    }
}

impl Hnsw {
    /// An empty index for vectors of `dim` values.
    pub fn new(dim: usize, params: HnswParams) -> Hnsw {
        let m = params.m.clamp(M_RANGE.0, M_RANGE.1);
        Hnsw {
            dim,
            params: HnswParams {
                m,
                ef_construction: params.ef_construction.max(m),
                seed: params.seed,
                distance: params.distance,
            },
            vectors: Vec::new(),
            layer0: Vec::new(),
            upper: Vec::new(),
            entry: None,
        }
    }

    /// An index of the row-major `vectors`, `dim` values per point, inserted in order on the
    /// current thread: the same input and parameters give the same graph.
    pub fn build(dim: usize, params: HnswParams, vectors: &[f32]) -> Result<Hnsw, HnswError> {
        Hnsw::build_unless(dim, params, vectors, &|| false)
    }

    /// [`Hnsw::build`], asking `stopped` every [`STOP_CHECK_POINTS`] points and giving up
    /// with [`HnswError::Stopped`] once it answers true.
    pub fn build_unless(
        dim: usize,
        params: HnswParams,
        vectors: &[f32],
        stopped: &dyn Fn() -> bool,
    ) -> Result<Hnsw, HnswError> {
        let mut index = Hnsw::new(dim, params);
        if vectors.is_empty() {
            return Ok(index);
        }
        if dim == 0 || !vectors.len().is_multiple_of(dim) {
            return Err(HnswError::Dimension {
                expected: dim,
                found: vectors.len(),
            });
        }
        let n = vectors.len() / dim;
        index.vectors.reserve_exact(vectors.len());
        index.layer0.reserve_exact(n * index.stride0());
        index.upper.reserve_exact(n);
        for (i, row) in vectors.chunks_exact(dim).enumerate() {
            if i % STOP_CHECK_POINTS == 0 && stopped() {
                return Err(HnswError::Stopped);
            }
            index.insert(row)?;
        }
        Ok(index)
    }

    /// Adds a point and returns its id, the number of points before it.
    pub fn insert(&mut self, vector: &[f32]) -> Result<u32, HnswError> {
        if vector.len() != self.dim {
            return Err(HnswError::Dimension {
                expected: self.dim,
                found: vector.len(),
            });
        }
        let id = match u32::try_from(self.len()) {
            Ok(id) if id < u32::MAX => id,
            _ => return Err(HnswError::Full),
        };
        let level = random_level(self.params.seed, id, self.params.m);
        self.vectors.extend_from_slice(vector);
        self.layer0.resize(self.layer0.len() + self.stride0(), 0);
        self.upper.push(vec![0; level * (1 + self.params.m)]);
        let Some(entry) = self.entry else {
            self.entry = Some(id);
            return Ok(id);
        };
        let top = self.level(entry);
        SCRATCH.with_borrow_mut(|scratch| {
            Arch::new().dispatch(Insert {
                index: self,
                id,
                level,
                entry,
                scratch,
            })
        });
        if level > top {
            self.entry = Some(id);
        }
        Ok(id)
    }

    /// The number of points.
    pub fn len(&self) -> usize {
        self.upper.len()
    }

    /// Whether the index has no points.
    pub fn is_empty(&self) -> bool {
        self.upper.is_empty()
    }

    /// The length of every vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The parameters the index was built with, after clamping.
    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// The vector of point `id`, if there is one.
    pub fn vector(&self, id: u32) -> Option<&[f32]> {
        let start = (id as usize).checked_mul(self.dim)?;
        self.vectors.get(start..start + self.dim)
    }

    /// Up to `k` points approximately nearest to `query`, nearest first, with their graph
    /// distances (squared L2, or −inner product). `ef` (raised to `k`) is how many candidates the search keeps: higher finds
    /// more of the true nearest, slower. A query of the wrong length finds nothing.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<(u32, f32)> {
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        if query.len() != self.dim || k == 0 {
            return Vec::new();
        }
        SCRATCH.with_borrow_mut(|scratch| {
            Arch::new().dispatch(Search {
                index: self,
                query,
                ef: ef.max(k),
                entry,
                frontier: &mut scratch.frontier,
            });
            scratch.found.clear();
            scratch.found.extend(scratch.frontier.results.drain());
            scratch.found.sort_unstable();
            // Sized by what was found, not by k (which SQL lets reach 100,000).
            scratch
                .found
                .iter()
                .take(k)
                .map(|n| (n.id, n.dist))
                .collect()
        })
    }

    fn stride0(&self) -> usize {
        1 + 2 * self.params.m
    }

    /// The highest layer point `id` is on.
    fn level(&self, id: u32) -> usize {
        self.upper[id as usize].len() / (1 + self.params.m)
    }

    /// The graph's distance between `a` and `b`, with instruction set `simd`.
    #[inline(always)]
    fn distance<S: Simd>(&self, simd: S, a: &[f32], b: &[f32]) -> f32 {
        match self.params.distance {
            Distance::SquaredL2 => l2_squared_with(simd, a, b),
            Distance::NegativeDot => -dot_with(simd, a, b),
        }
    }

    #[inline(always)]
    fn point(&self, id: u32) -> &[f32] {
        let start = id as usize * self.dim;
        &self.vectors[start..start + self.dim]
    }

    /// The link count and link slots of point `id` on `layer`.
    #[inline(always)]
    fn link_slots(&self, id: u32, layer: usize) -> &[u32] {
        if layer == 0 {
            let start = id as usize * self.stride0();
            &self.layer0[start..start + self.stride0()]
        } else {
            let per = 1 + self.params.m;
            &self.upper[id as usize][(layer - 1) * per..layer * per]
        }
    }

    /// The links of point `id` on `layer`.
    #[inline(always)]
    fn links(&self, id: u32, layer: usize) -> &[u32] {
        let slots = self.link_slots(id, layer);
        &slots[1..1 + slots[0] as usize]
    }

    /// Replaces the links of point `id` on `layer`.
    fn set_links(&mut self, id: u32, layer: usize, links: &[Near]) {
        let slots = if layer == 0 {
            let stride = self.stride0();
            let start = id as usize * stride;
            &mut self.layer0[start..start + stride]
        } else {
            let per = 1 + self.params.m;
            &mut self.upper[id as usize][(layer - 1) * per..layer * per]
        };
        slots[0] = links.len() as u32;
        for (slot, link) in slots[1..].iter_mut().zip(links) {
            *slot = link.id;
        }
    }

    /// The point nearest to `query` that greedy descents from the entry point find on the
    /// layers above `floor`, from the top down.
    #[inline(always)]
    fn descend<S: Simd>(&self, simd: S, query: &[f32], entry: u32, floor: usize) -> Near {
        let mut best = Near {
            dist: self.distance(simd, query, self.point(entry)),
            id: entry,
        };
        for layer in (floor + 1..=self.level(entry)).rev() {
            best = self.greedy(simd, query, best, layer);
        }
        best
    }

    /// Greedy descent on `layer`: moves to the nearest neighbour while it is nearer.
    #[inline(always)]
    fn greedy<S: Simd>(&self, simd: S, query: &[f32], mut best: Near, layer: usize) -> Near {
        loop {
            let mut moved = false;
            for &id in self.links(best.id, layer) {
                let dist = self.distance(simd, query, self.point(id));
                if dist < best.dist {
                    best = Near { dist, id };
                    moved = true;
                }
            }
            if !moved {
                return best;
            }
        }
    }

    /// The `ef` points nearest to `query` that a best-first walk of `layer` from `entries`
    /// finds, left in `frontier.results`.
    #[inline(always)]
    fn search_layer<S: Simd>(
        &self,
        simd: S,
        query: &[f32],
        entries: &[Near],
        ef: usize,
        layer: usize,
        frontier: &mut Frontier,
    ) {
        let prefetch = Prefetch::new();
        let stamp = frontier.next_stamp(self.len());
        let Frontier {
            visited,
            candidates,
            results,
            fresh,
            ..
        } = frontier;
        candidates.clear();
        results.clear();
        for &entry in entries {
            visited[entry.id as usize] = stamp;
            candidates.push(Reverse(entry));
            results.push(entry);
        }
        while results.len() > ef {
            results.pop();
        }
        let mut worst = results.peek().map_or(f32::INFINITY, |r| r.dist);
        while let Some(Reverse(nearest)) = candidates.pop() {
            if nearest.dist > worst {
                break;
            }
            // First the links not seen yet, then their vectors, fetched from memory together
            // rather than one miss at a time.
            fresh.clear();
            fresh.extend_from_slice(self.links(nearest.id, layer));
            let mut count = 0;
            for i in 0..fresh.len() {
                let id = fresh[i];
                let seen = &mut visited[id as usize];
                if *seen != stamp {
                    *seen = stamp;
                    fresh[count] = id;
                    count += 1;
                }
            }
            fresh.truncate(count);
            for &id in fresh.iter() {
                prefetch.slice(self.point(id));
            }
            // The likely next point to expand: its links, while distances are computed.
            if let Some(Reverse(next)) = candidates.peek() {
                prefetch.slice(self.link_slots(next.id, layer));
            }
            for &id in fresh.iter() {
                let dist = self.distance(simd, query, self.point(id));
                if results.len() < ef {
                    results.push(Near { dist, id });
                } else if dist < worst {
                    if let Some(mut farthest) = results.peek_mut() {
                        *farthest = Near { dist, id };
                    }
                } else {
                    continue;
                }
                candidates.push(Reverse(Near { dist, id }));
                if let Some(r) = results.peek() {
                    worst = r.dist;
                }
            }
        }
    }

    /// The neighbour selection heuristic of the paper: from `sorted` (nearest to some base
    /// point first, with distances to it) keep a candidate only if it is nearer to the base
    /// than to every candidate kept so far, until `max` are kept.
    #[inline(always)]
    fn select<S: Simd>(&self, simd: S, sorted: &[Near], max: usize, kept: &mut Vec<Near>) {
        kept.clear();
        for &candidate in sorted {
            if kept.len() == max {
                break;
            }
            let point = self.point(candidate.id);
            let mut diverse = true;
            for other in kept.iter() {
                if self.distance(simd, point, self.point(other.id)) < candidate.dist {
                    diverse = false;
                    break;
                }
            }
            if diverse {
                kept.push(candidate);
            }
        }
    }

    /// Links `from` to `to` (at distance `dist`) on `layer`; a full list is shrunk with the
    /// selection heuristic, which may drop the new link or older ones.
    #[inline(always)]
    fn add_link<S: Simd>(
        &mut self,
        simd: S,
        from: u32,
        to: Near,
        layer: usize,
        pool: &mut Vec<Near>,
        kept: &mut Vec<Near>,
    ) {
        let capacity = if layer == 0 {
            2 * self.params.m
        } else {
            self.params.m
        };
        let links = self.links(from, layer);
        pool.clear();
        if links.len() < capacity {
            for &id in links {
                pool.push(Near { dist: 0.0, id });
            }
            pool.push(to);
            self.set_links(from, layer, pool);
            return;
        }
        let base = self.point(from);
        for &id in links {
            let dist = self.distance(simd, base, self.point(id));
            pool.push(Near { dist, id });
        }
        pool.push(to);
        pool.sort_unstable();
        self.select(simd, pool, capacity, kept);
        self.set_links(from, layer, kept);
    }
}

/// The layer of a new point: ⌊−ln(u) / ln(m)⌋ for u uniform in (0, 1], drawn from a hash of
/// the seed and the point's id, so inserts need no random state.
fn random_level(seed: u64, id: u32, m: usize) -> usize {
    // SplitMix64 of the seed advanced by the id.
    let mut z = seed.wrapping_add(
        u64::from(id)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let u = ((z >> 11) + 1) as f64 / (1u64 << 53) as f64;
    ((-u.ln() / (m as f64).ln()) as usize).min(MAX_LEVEL)
}

/// Hints to the CPU to start loading memory ahead of its use: the SSE prefetch instruction on
/// x86, nothing elsewhere.
#[derive(Clone, Copy)]
struct Prefetch {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    sse: Option<pulp::core_arch::x86::Sse>,
}

impl Prefetch {
    fn new() -> Prefetch {
        Prefetch {
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            sse: pulp::core_arch::x86::Sse::try_new(),
        }
    }

    /// Starts loading every cache line of `data` into the nearest cache.
    #[inline(always)]
    fn slice<T>(self, data: &[T]) {
        #[cfg(target_arch = "x86")]
        use std::arch::x86::_MM_HINT_T0;
        #[cfg(target_arch = "x86_64")]
        use std::arch::x86_64::_MM_HINT_T0;
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        if let Some(sse) = self.sse {
            let start = data.as_ptr().cast::<i8>();
            let end = start.wrapping_add(size_of_val(data));
            let mut line = start.wrapping_sub(start as usize % 64);
            while line < end {
                sse._mm_prefetch::<_MM_HINT_T0>(line);
                line = line.wrapping_add(64);
            }
        }
    }
}

/// A point and its distance to some base point, ordered by distance (then id).
#[derive(Debug, Clone, Copy)]
struct Near {
    dist: f32,
    id: u32,
}

impl PartialEq for Near {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Near {}

impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Near {
    fn cmp(&self, other: &Self) -> Ordering {
        self.dist
            .total_cmp(&other.dist)
            .then(self.id.cmp(&other.id))
    }
}

/// The state of one best-first walk, reused across walks.
#[derive(Default)]
struct Frontier {
    /// Per point, the stamp of the last walk that reached it.
    visited: Vec<u32>,
    stamp: u32,
    /// Points to expand, nearest on top.
    candidates: BinaryHeap<Reverse<Near>>,
    /// The nearest points found, farthest on top.
    results: BinaryHeap<Near>,
    /// The links of the point being expanded that the walk has not reached before.
    fresh: Vec<u32>,
}

impl Frontier {
    /// Starts a walk over `n` points: a stamp no point carries yet.
    fn next_stamp(&mut self, n: usize) -> u32 {
        if self.visited.len() < n {
            self.visited.resize(n, 0);
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.visited.fill(0);
            self.stamp = 1;
        }
        self.stamp
    }
}

/// Buffers of searches and inserts, one set per thread.
#[derive(Default)]
struct Scratch {
    frontier: Frontier,
    query: Vec<f32>,
    entries: Vec<Near>,
    found: Vec<Near>,
    selected: Vec<Near>,
    pool: Vec<Near>,
    kept: Vec<Near>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// A search, run under one SIMD dispatch.
struct Search<'a> {
    index: &'a Hnsw,
    query: &'a [f32],
    ef: usize,
    entry: u32,
    frontier: &'a mut Frontier,
}

impl WithSimd for Search<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Search {
            index,
            query,
            ef,
            entry,
            frontier,
        } = self;
        let best = index.descend(simd, query, entry, 0);
        index.search_layer(simd, query, &[best], ef, 0, frontier);
    }
}

/// The linking of a new point, already stored without links, run under one SIMD dispatch.
struct Insert<'a> {
    index: &'a mut Hnsw,
    id: u32,
    level: usize,
    entry: u32,
    scratch: &'a mut Scratch,
}

impl WithSimd for Insert<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Insert {
            index,
            id,
            level,
            entry,
            scratch,
        } = self;
        let Scratch {
            frontier,
            query,
            entries,
            found,
            selected,
            pool,
            kept,
        } = scratch;
        query.clear();
        query.extend_from_slice(index.point(id));
        let top = index.level(entry);
        let best = index.descend(simd, query, entry, level);
        entries.clear();
        entries.push(best);
        let (m, ef) = (index.params.m, index.params.ef_construction);
        for layer in (0..=level.min(top)).rev() {
            index.search_layer(simd, query, entries, ef, layer, frontier);
            found.clear();
            found.extend(frontier.results.drain());
            found.sort_unstable();
            index.select(simd, found, m, selected);
            index.set_links(id, layer, selected);
            for &neighbour in selected.iter() {
                let to = Near {
                    dist: neighbour.dist,
                    id,
                };
                index.add_link(simd, neighbour.id, to, layer, pool, kept);
            }
            std::mem::swap(entries, found);
        }
    }
}

/// The serialised form, checked before it becomes an [`Hnsw`] so that damaged bytes are an
/// error rather than a panic later.
#[derive(Deserialize)]
struct Stored {
    dim: usize,
    params: HnswParams,
    vectors: Vec<f32>,
    layer0: Vec<u32>,
    upper: Vec<Vec<u32>>,
    entry: Option<u32>,
}

impl TryFrom<Stored> for Hnsw {
    type Error = &'static str;

    fn try_from(stored: Stored) -> Result<Hnsw, &'static str> {
        let Stored {
            dim,
            params,
            vectors,
            layer0,
            upper,
            entry,
        } = stored;
        let m = params.m;
        if !(M_RANGE.0..=M_RANGE.1).contains(&m) || params.ef_construction < m {
            return Err("HNSW parameters out of range");
        }
        let n = upper.len();
        if n >= u32::MAX as usize
            || Some(vectors.len()) != n.checked_mul(dim)
            || Some(layer0.len()) != n.checked_mul(1 + 2 * m)
        {
            return Err("HNSW arrays of mismatched lengths");
        }
        let per = 1 + m;
        let levels: Vec<usize> = upper.iter().map(|u| u.len() / per).collect();
        let valid = |slots: &[u32], capacity: usize, layer: usize| {
            let count = slots[0] as usize;
            count <= capacity
                && slots[1..1 + count]
                    .iter()
                    .all(|&link| levels.get(link as usize).is_some_and(|&l| l >= layer))
        };
        let links_valid = layer0
            .chunks_exact(1 + 2 * m)
            .all(|slots| valid(slots, 2 * m, 0))
            && upper.iter().all(|u| {
                u.len().is_multiple_of(per)
                    && u.chunks_exact(per)
                        .enumerate()
                        .all(|(i, slots)| valid(slots, m, i + 1))
            });
        if !links_valid {
            return Err("HNSW links out of range");
        }
        let top = levels.iter().copied().max();
        let entry_valid = match entry {
            None => n == 0,
            Some(e) => levels.get(e as usize).copied() == top,
        };
        if !entry_valid {
            return Err("HNSW entry point invalid");
        }
        Ok(Hnsw {
            dim,
            params,
            vectors,
            layer0,
            upper,
            entry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random_vectors(rng: &mut StdRng, n: usize, dim: usize) -> Vec<f32> {
        (0..n * dim)
            .map(|_| rng.random::<f32>() * 2.0 - 1.0)
            .collect()
    }

    fn exact(vectors: &[f32], query: &[f32], k: usize) -> Vec<u32> {
        let mut all: Vec<(u32, f32)> = vectors
            .chunks_exact(query.len())
            .enumerate()
            .map(|(i, v)| {
                let d = v.iter().zip(query).map(|(a, b)| (a - b) * (a - b)).sum();
                (i as u32, d)
            })
            .collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1));
        all.into_iter().take(k).map(|(i, _)| i).collect()
    }

    fn params() -> HnswParams {
        HnswParams {
            m: 12,
            ef_construction: 100,
            seed: 7,
            distance: Distance::SquaredL2,
        }
    }

    #[test]
    fn recall_at_10_against_exact_search() {
        let dim = 16;
        let mut rng = StdRng::seed_from_u64(1);
        let vectors = random_vectors(&mut rng, 2_000, dim);
        let index = Hnsw::build(dim, params(), &vectors).unwrap();
        assert_eq!((index.len(), index.dim()), (2_000, dim));
        let queries = random_vectors(&mut rng, 200, dim);
        let mut hits = 0;
        for query in queries.chunks_exact(dim) {
            let found = index.search(query, 10, 64);
            assert_eq!(found.len(), 10);
            assert!(found.windows(2).all(|w| w[0].1 <= w[1].1), "nearest first");
            let truth = exact(&vectors, query, 10);
            hits += found.iter().filter(|(id, _)| truth.contains(id)).count();
        }
        let recall = hits as f64 / 2_000.0;
        assert!(recall >= 0.95, "recall@10 {recall}");
    }

    #[test]
    fn finds_points_inserted_after_build() {
        let dim = 8;
        let mut rng = StdRng::seed_from_u64(2);
        let mut index = Hnsw::build(dim, params(), &random_vectors(&mut rng, 500, dim)).unwrap();
        for expected in 500..600 {
            let vector = random_vectors(&mut rng, 1, dim);
            assert_eq!(index.insert(&vector), Ok(expected));
            let found = index.search(&vector, 1, 32);
            assert_eq!(found, vec![(expected, 0.0)]);
        }
        assert_eq!(index.vector(599).map(<[f32]>::len), Some(dim));
        assert_eq!(index.vector(600), None);
    }

    #[test]
    fn postcard_round_trip_searches_the_same() {
        let dim = 8;
        let mut rng = StdRng::seed_from_u64(3);
        let index = Hnsw::build(dim, params(), &random_vectors(&mut rng, 400, dim)).unwrap();
        let bytes = postcard::to_stdvec(&index).unwrap();
        let copy: Hnsw = postcard::from_bytes(&bytes).unwrap();
        for query in random_vectors(&mut rng, 20, dim).chunks_exact(dim) {
            assert_eq!(copy.search(query, 10, 40), index.search(query, 10, 40));
        }
        assert_eq!(postcard::to_stdvec(&copy).unwrap(), bytes);
        assert!(postcard::from_bytes::<Hnsw>(b"junk").is_err());
        // Every truncation and a corrupted byte anywhere are errors or valid graphs, never panics.
        for cut in 0..bytes.len() {
            let _ = postcard::from_bytes::<Hnsw>(&bytes[..cut]);
        }
        for at in (0..bytes.len()).step_by(7) {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x5a;
            if let Ok(graph) = postcard::from_bytes::<Hnsw>(&damaged) {
                let query = vec![0.0; graph.dim()];
                let _ = graph.search(&query, 5, 20);
            }
        }
    }

    #[test]
    fn same_seed_same_graph() {
        let dim = 4;
        let vectors = random_vectors(&mut StdRng::seed_from_u64(4), 300, dim);
        let a = Hnsw::build(dim, params(), &vectors).unwrap();
        let b = Hnsw::build(dim, params(), &vectors).unwrap();
        assert_eq!(
            postcard::to_stdvec(&a).unwrap(),
            postcard::to_stdvec(&b).unwrap()
        );
    }

    #[test]
    fn inner_product_graph_finds_the_largest_products() {
        let (dim, n) = (16, 2_000);
        let mut rng = StdRng::seed_from_u64(9);
        let vectors = random_vectors(&mut rng, n, dim);
        let by_dot = HnswParams {
            distance: Distance::NegativeDot,
            ..params()
        };
        let index = Hnsw::build(dim, by_dot, &vectors).unwrap();
        let mut hits = 0;
        for _ in 0..50 {
            let query = random_vectors(&mut rng, 1, dim);
            let mut all: Vec<(u32, f32)> = vectors
                .chunks_exact(dim)
                .enumerate()
                .map(|(i, v)| {
                    (
                        i as u32,
                        -v.iter().zip(&query).map(|(a, b)| a * b).sum::<f32>(),
                    )
                })
                .collect();
            all.sort_by(|a, b| a.1.total_cmp(&b.1));
            let found = index.search(&query, 10, 100);
            assert!((found[0].1 - all[0].1).abs() < 1e-4 || found[0].1 >= all[0].1);
            hits += all[..10]
                .iter()
                .filter(|(i, _)| found.iter().any(|(f, _)| f == i))
                .count();
        }
        let recall = hits as f64 / 500.0;
        assert!(recall >= 0.95, "recall@10 {recall}");
    }

    #[test]
    fn empty_index_and_bad_input() {
        let mut index = Hnsw::new(3, params());
        assert!(index.is_empty());
        assert!(index.search(&[0.0; 3], 5, 10).is_empty());
        let wrong = HnswError::Dimension {
            expected: 3,
            found: 2,
        };
        assert_eq!(index.insert(&[1.0, 2.0]), Err(wrong));
        assert_eq!(index.insert(&[1.0, 2.0, 3.0]), Ok(0));
        assert!(index.search(&[1.0, 2.0], 5, 10).is_empty(), "wrong length");
        assert!(index.search(&[1.0, 2.0, 3.0], 0, 10).is_empty(), "k = 0");
        assert_eq!(index.search(&[1.0, 2.0, 3.0], 5, 0), vec![(0, 0.0)]);
        assert_eq!(
            Hnsw::build_unless(1, params(), &[0.0; 3000], &|| true).err(),
            Some(HnswError::Stopped)
        );
        assert!(Hnsw::build(3, params(), &[0.0; 7]).is_err());
        assert!(Hnsw::build(0, params(), &[0.0; 3]).is_err());
        let tiny = HnswParams {
            m: 0,
            ef_construction: 0,
            seed: 0,
            distance: Distance::SquaredL2,
        };
        let index = Hnsw::build(2, tiny, &[0.0, 0.0, 1.0, 1.0, 0.5, 0.5]).unwrap();
        assert_eq!(index.params().m, 2);
        let found = index.search(&[0.9, 0.9], 1, 1);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, 1);
    }
}
