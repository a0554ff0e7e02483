//! Items a factor model version was not trained with, but that users it knows have interacted
//! with since: each gets a vector from the ALS item step against the version's fixed user
//! factors (see [`crate::ml::fold_in`]), so that `recommend` can rank it and `similar_items`
//! can answer for it, and is inserted into a graph of its own that searches run beside the
//! version's graph. Their item indexes follow the version's own: the model's item count plus
//! the position here.

use crate::error::Result;
use crate::models::item_index::ItemIndex;
use std::collections::HashMap;

/// The new items of one live delta, as ranked at one moment.
#[derive(Clone, Debug)]
pub struct NewItems {
    factors: usize,
    /// The model's item count: the item index of position 0.
    first: usize,
    ids: Vec<String>,
    positions: HashMap<String, usize>,
    /// Row-major factor vectors, by position.
    vectors: Vec<f32>,
    graph: ItemIndex,
}

impl NewItems {
    /// No new items yet, for a model with `factors` per vector and `first` items of its own.
    pub fn new(factors: usize, first: usize) -> NewItems {
        NewItems {
            factors,
            first,
            ids: Vec::new(),
            positions: HashMap::new(),
            vectors: Vec::new(),
            graph: ItemIndex::empty(factors, first as u64),
        }
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The item index of new item `id`.
    pub fn index(&self, id: &str) -> Option<usize> {
        self.positions.get(id).map(|at| self.first + at)
    }

    /// The id of item index `index`, if it is a new item.
    pub fn id(&self, index: usize) -> Option<&str> {
        let at = index.checked_sub(self.first)?;
        self.ids.get(at).map(String::as_str)
    }

    /// Their factor vectors, row-major, the first at item index `first`.
    pub fn vectors(&self) -> &[f32] {
        &self.vectors
    }

    /// The graph over their vectors (item indexes as in the model).
    pub fn graph(&self) -> &ItemIndex {
        &self.graph
    }

    /// Sets the vector of new item `id`, adding the item when it is not here yet.
    pub fn set(&mut self, id: &str, vector: &[f32]) -> Result<()> {
        let at = match self.positions.get(id) {
            Some(&at) => at,
            None => {
                self.ids.push(id.to_string());
                self.positions.insert(id.to_string(), self.ids.len() - 1);
                self.vectors.resize(self.ids.len() * self.factors, 0.0);
                self.ids.len() - 1
            }
        };
        self.vectors[at * self.factors..(at + 1) * self.factors].copy_from_slice(vector);
        self.graph.insert((self.first + at) as u32, vector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_items_follow_the_model_s_own_and_are_found_in_their_graph() {
        let mut new = NewItems::new(2, 10);
        new.set("a", &[1.0, 0.0]).unwrap();
        new.set("b", &[0.0, 1.0]).unwrap();
        new.set("a", &[0.9, 0.1]).unwrap();
        assert_eq!(
            (new.index("a"), new.index("b"), new.index("c")),
            (Some(10), Some(11), None)
        );
        assert_eq!((new.id(11), new.id(9), new.id(12)), (Some("b"), None, None));
        assert_eq!(new.vectors(), &[0.9, 0.1, 0.0, 1.0]);
        assert_eq!(new.graph().by_inner_product(&[1.0, 0.0], 10), vec![10, 11]);
        assert_eq!(new.graph().by_cosine(&[0.0, 1.0], 1), vec![11]);
    }
}
