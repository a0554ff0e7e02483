//! Distances for vector search, and how each maps onto an HNSW graph that ranks by squared L2.
//!
//! - `l2`: vectors as they are; the distance is Euclidean.
//! - `cosine`: unit vectors, for which |u − v|² = 2 (1 − cos); the distance is 1 − cos. Zero
//!   vectors have no direction and are left out of cosine indexes.
//! - `dot`: the transform of Bachrach et al. (2014): every stored vector gets one more
//!   coordinate √(M² − |y|²), M the largest norm, and queries get 0, so that
//!   |q − y|² = |q|² + M² − 2 q·y and the nearest are those with the largest dot product. The
//!   distance is −q·y (as pgvector's `<#>`), so smaller is closer for every metric.

use crate::error::{Error, Result};
use crate::ml::kernels::dot;
#[cfg(test)]
use crate::ml::kernels::l2_squared;
use serde::{Deserialize, Serialize};

/// The distance an index ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Metric {
    /// Euclidean distance.
    L2,
    /// 1 − cosine similarity.
    Cosine,
    /// Negative inner product.
    Dot,
}

impl Metric {
    /// Reads a metric name: `cosine`, `l2` or `dot` (also `euclidean`, `inner_product`); 22023
    /// otherwise.
    pub fn parse(name: &str) -> Result<Metric> {
        match name.to_ascii_lowercase().as_str() {
            "l2" | "euclidean" => Ok(Metric::L2),
            "cosine" => Ok(Metric::Cosine),
            "dot" | "ip" | "inner_product" => Ok(Metric::Dot),
            _ => Err(Error::InvalidParameter(format!(
                "unknown metric \"{name}\"; use 'cosine', 'l2' or 'dot'"
            ))),
        }
    }

    /// The metric's name as `parse` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::Cosine => "cosine",
            Metric::Dot => "dot",
        }
    }

    /// The distance between `a` and `b`, computed directly in double precision (as
    /// `l2_distance`, `cosine_distance` and `inner_product` compute it).
    pub fn distance(self, a: &[f32], b: &[f32]) -> f64 {
        let pairs = || a.iter().zip(b).map(|(x, y)| (f64::from(*x), f64::from(*y)));
        match self {
            Metric::L2 => pairs().map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt(),
            Metric::Cosine => {
                let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
                for (x, y) in pairs() {
                    ab += x * y;
                    aa += x * x;
                    bb += y * y;
                }
                1.0 - ab / (aa.sqrt() * bb.sqrt()).max(f64::MIN_POSITIVE)
            }
            Metric::Dot => -pairs().map(|(x, y)| x * y).sum::<f64>(),
        }
    }
}

/// How the vectors of one graph were transformed: the metric, and for `dot` the largest norm.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Transform {
    /// The metric the graph answers.
    pub metric: Metric,
    /// For `dot`: M, the largest norm of a stored vector when the graph was built.
    pub max_norm: f32,
}

impl Transform {
    /// The transform for a graph of `vectors` (row-major, `dim` each) under `metric`.
    pub fn for_vectors(metric: Metric, vectors: &[f32], dim: usize) -> Transform {
        let max_norm = match metric {
            Metric::Dot => vectors
                .chunks_exact(dim.max(1))
                .map(|v| dot(v, v).sqrt())
                .fold(0f32, f32::max),
            _ => 0.0,
        };
        Transform { metric, max_norm }
    }

    /// The length of the graph's points for vectors of `dim` values.
    pub fn point_dim(&self, dim: usize) -> usize {
        match self.metric {
            Metric::Dot => dim + 1,
            _ => dim,
        }
    }

    /// The graph point of a stored vector: `None` when it cannot be one (a zero vector under
    /// cosine; under dot, a norm above M, which needs a new transform).
    pub fn point(&self, vector: &[f32]) -> Option<Vec<f32>> {
        let norm = dot(vector, vector).sqrt();
        match self.metric {
            Metric::L2 => Some(vector.to_vec()),
            Metric::Cosine => (norm > 0.0).then(|| vector.iter().map(|v| v / norm).collect()),
            Metric::Dot => {
                if norm > self.max_norm {
                    return None;
                }
                let mut point = Vec::with_capacity(vector.len() + 1);
                point.extend_from_slice(vector);
                let m = self.max_norm;
                point.push((m * m - norm * norm).max(0.0).sqrt());
                Some(point)
            }
        }
    }

    /// The graph point of a query.
    pub fn query(&self, query: &[f32]) -> Vec<f32> {
        match self.metric {
            Metric::L2 => query.to_vec(),
            Metric::Cosine => {
                let norm = dot(query, query).sqrt().max(f32::MIN_POSITIVE);
                query.iter().map(|v| v / norm).collect()
            }
            Metric::Dot => {
                let mut point = query.to_vec();
                point.push(0.0);
                point
            }
        }
    }

    /// The metric's distance from the graph's squared L2 distance `squared` to a point, for
    /// the query `query` (untransformed).
    pub fn distance(&self, squared: f32, query: &[f32]) -> f64 {
        let squared = f64::from(squared.max(0.0));
        match self.metric {
            Metric::L2 => squared.sqrt(),
            Metric::Cosine => squared / 2.0,
            Metric::Dot => {
                let m = f64::from(self.max_norm);
                -(f64::from(dot(query, query)) + m * m - squared) / 2.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_distances_give_the_metric() {
        let items = [3.0f32, 4.0, 1.0, 0.0, -2.0, 0.5];
        let query = [0.5f32, -1.0];
        for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
            let transform = Transform::for_vectors(metric, &items, 2);
            for item in items.chunks_exact(2) {
                let point = transform.point(item).unwrap();
                let squared = l2_squared(&transform.query(&query), &point);
                let direct = metric.distance(&query, item);
                let via_graph = transform.distance(squared, &query);
                assert!(
                    (direct - via_graph).abs() < 1e-5,
                    "{metric:?} {direct} {via_graph}"
                );
            }
        }
        assert!(
            Transform::for_vectors(Metric::Dot, &items, 2)
                .point(&[9.0, 9.0])
                .is_none()
        );
        assert!(
            Transform::for_vectors(Metric::Cosine, &items, 2)
                .point(&[0.0, 0.0])
                .is_none()
        );
        assert_eq!(Metric::parse("hamming").unwrap_err().sqlstate(), "22023");
    }
}
