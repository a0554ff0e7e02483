//! Distances for vector search, and how each maps onto an HNSW graph.
//!
//! - `l2`: vectors as they are, graph by squared L2; the distance is Euclidean.
//! - `cosine`: unit vectors, for which |u − v|² = 2 (1 − cos); the distance is 1 − cos. Zero
//!   vectors have no direction and are left out of cosine indexes.
//! - `dot`: vectors as they are, graph by negative inner product; the distance is −q·y (as
//!   pgvector's `<#>`), so smaller is closer for every metric.

use crate::ann::hnsw::Distance;
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

/// How the vectors of one graph were transformed: the metric it answers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Transform {
    /// The metric the graph answers.
    pub metric: Metric,
}

impl Transform {
    /// The transform for a graph under `metric`.
    pub fn new(metric: Metric) -> Transform {
        Transform { metric }
    }

    /// The distance the graph is built with.
    pub fn graph_distance(&self) -> Distance {
        match self.metric {
            Metric::L2 | Metric::Cosine => Distance::SquaredL2,
            Metric::Dot => Distance::NegativeDot,
        }
    }

    /// The graph point of a stored vector: `None` for a zero vector under cosine, which has
    /// no direction.
    pub fn point(&self, vector: &[f32]) -> Option<Vec<f32>> {
        match self.metric {
            Metric::L2 | Metric::Dot => Some(vector.to_vec()),
            Metric::Cosine => {
                let norm = dot(vector, vector).sqrt();
                (norm > 0.0).then(|| vector.iter().map(|v| v / norm).collect())
            }
        }
    }

    /// The graph point of a query.
    pub fn query(&self, query: &[f32]) -> Vec<f32> {
        match self.point(query) {
            Some(point) => point,
            None => query.to_vec(),
        }
    }

    /// The metric's distance from the graph's distance `graph` to a point.
    pub fn distance(&self, graph: f32) -> f64 {
        let graph = f64::from(graph);
        match self.metric {
            Metric::L2 => graph.max(0.0).sqrt(),
            Metric::Cosine => graph.max(0.0) / 2.0,
            Metric::Dot => graph,
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
            let transform = Transform::new(metric);
            for item in items.chunks_exact(2) {
                let point = transform.point(item).unwrap();
                let graph = match transform.graph_distance() {
                    Distance::SquaredL2 => l2_squared(&transform.query(&query), &point),
                    Distance::NegativeDot => -dot(&transform.query(&query), &point),
                };
                let direct = metric.distance(&query, item);
                let via_graph = transform.distance(graph);
                assert!(
                    (direct - via_graph).abs() < 1e-5,
                    "{metric:?} {direct} {via_graph}"
                );
            }
        }
        assert!(Transform::new(Metric::Cosine).point(&[0.0, 0.0]).is_none());
        assert_eq!(Metric::parse("hamming").unwrap_err().sqlstate(), "22023");
    }
}
