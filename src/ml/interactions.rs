//! User–item interactions as sparse matrices: events are summed per (user, item), users and
//! items get dense indexes, and a holdout split keeps some pairs aside for evaluation.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::collections::HashMap;

/// One aggregated (user, item) pair: summed weight and latest time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    /// Dense user index.
    pub user: u32,
    /// Dense item index.
    pub item: u32,
    /// Sum of the event weights (negative means negative feedback).
    pub weight: f32,
    /// Latest event time (microseconds), 0 when there is none.
    pub time: i64,
}

/// Events gathered for training, keyed by external ids. Events are kept as they come and
/// summed per (user, item) by [`Interactions::merge`], a sort: a hash map of pairs would cost
/// more memory than the events themselves and a random access per event.
#[derive(Debug, Default, Clone)]
pub struct Interactions {
    /// External user ids by index.
    pub users: Vec<String>,
    /// External item ids by index.
    pub items: Vec<String>,
    /// One entry per event until [`Interactions::merge`], then one per (user, item), in
    /// (user, item) order.
    pub pairs: Vec<Pair>,
    /// How many events (rows) were read.
    pub events: u64,
    user_index: HashMap<String, u32>,
    item_index: HashMap<String, u32>,
}

impl Interactions {
    /// Adds one event.
    pub fn add(&mut self, user: &str, item: &str, weight: f32, time: i64) {
        let user = index_of(&mut self.user_index, &mut self.users, user);
        let item = index_of(&mut self.item_index, &mut self.items, item);
        self.events += 1;
        self.pairs.push(Pair {
            user,
            item,
            weight,
            time,
        });
    }

    /// Sums the events of each (user, item) into one pair (weights added, the latest time
    /// kept), and lets go of the id lookups, which training does not need.
    pub fn merge(&mut self) {
        self.pairs.sort_unstable_by_key(|p| (p.user, p.item));
        self.pairs.dedup_by(|later, kept| {
            let same = (later.user, later.item) == (kept.user, kept.item);
            if same {
                kept.weight += later.weight;
                kept.time = kept.time.max(later.time);
            }
            same
        });
        self.pairs.shrink_to_fit();
        self.user_index = HashMap::new();
        self.item_index = HashMap::new();
    }

    /// Splits the pairs into training and holdout parts: `fraction` of them at random (with
    /// `seed`), or the latest `fraction` by time.
    pub fn split(&self, fraction: f64, by_time: bool, seed: u64) -> (Vec<Pair>, Vec<Pair>) {
        let mut pairs = self.pairs.clone();
        if by_time {
            pairs.sort_by_key(|p| (p.time, p.user, p.item));
        } else {
            pairs.shuffle(&mut StdRng::seed_from_u64(seed));
        }
        let held = ((pairs.len() as f64) * fraction).round() as usize;
        let held = held.min(pairs.len());
        let holdout = pairs.split_off(pairs.len() - held);
        (pairs, holdout)
    }
}

fn index_of(index: &mut HashMap<String, u32>, names: &mut Vec<String>, name: &str) -> u32 {
    if let Some(&i) = index.get(name) {
        return i;
    }
    let i = names.len() as u32;
    index.insert(name.to_string(), i);
    names.push(name.to_string());
    i
}

/// Compressed sparse rows: for each row, its (column, value) entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Csr {
    /// Start of each row in `columns`/`values`; one more entry than rows.
    pub offsets: Vec<usize>,
    /// Column of each entry, sorted within a row.
    pub columns: Vec<u32>,
    /// Value of each entry.
    pub values: Vec<f32>,
}

impl Csr {
    /// Rows of `rows` entries built from (row, column, value) triples, by counting: the
    /// triples are read twice (sizes, then places), never gathered; entries of a row come out
    /// sorted by column (in their given order when a row is given sorted, as training pairs
    /// and transposes are).
    pub fn from_triples(
        rows: usize,
        triples: impl Iterator<Item = (u32, u32, f32)> + Clone,
    ) -> Csr {
        let mut offsets = vec![0; rows + 1];
        for (r, _, _) in triples.clone() {
            offsets[r as usize + 1] += 1;
        }
        for i in 0..rows {
            offsets[i + 1] += offsets[i];
        }
        let entries = offsets[rows];
        let mut columns = vec![0; entries];
        let mut values = vec![0.0; entries];
        let mut next = offsets.clone();
        for (r, c, v) in triples {
            let at = &mut next[r as usize];
            columns[*at] = c;
            values[*at] = v;
            *at += 1;
        }
        drop(next);
        for row in 0..rows {
            let range = offsets[row]..offsets[row + 1];
            if !columns[range.clone()].is_sorted() {
                let mut entries: Vec<(u32, f32)> = (columns[range.clone()].iter().copied())
                    .zip(values[range.clone()].iter().copied())
                    .collect();
                entries.sort_by_key(|&(c, _)| c);
                for (at, (c, v)) in range.zip(entries) {
                    columns[at] = c;
                    values[at] = v;
                }
            }
        }
        Csr {
            offsets,
            columns,
            values,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// The entries of `row`.
    pub fn row(&self, row: usize) -> (&[u32], &[f32]) {
        match (self.offsets.get(row), self.offsets.get(row + 1)) {
            (Some(&start), Some(&end)) => (&self.columns[start..end], &self.values[start..end]),
            _ => (&[], &[]),
        }
    }

    /// The transpose, with `columns` rows.
    pub fn transpose(&self, columns: usize) -> Csr {
        let triples = (0..self.rows()).flat_map(|r| {
            let (cols, vals) = self.row(r);
            cols.iter().zip(vals).map(move |(&c, &v)| (c, r as u32, v))
        });
        Csr::from_triples(columns, triples)
    }
}

/// A training set ready for the algorithms.
#[derive(Debug, Clone)]
pub struct Split {
    /// Users × items, summed weights of the training pairs.
    pub train: Csr,
    /// Users × items, the held-out pairs with positive weight (what evaluation looks for).
    pub holdout: Csr,
    /// Number of users.
    pub users: usize,
    /// Number of items.
    pub items: usize,
}

impl Split {
    /// Builds the matrices of `train` and `holdout` pairs over `users` × `items`.
    pub fn new(users: usize, items: usize, train: &[Pair], holdout: &[Pair]) -> Split {
        let triple = |p: &Pair| (p.user, p.item, p.weight);
        let positive = holdout.iter().filter(|p| p.weight > 0.0);
        Split {
            train: Csr::from_triples(users, train.iter().map(triple)),
            holdout: Csr::from_triples(users, positive.map(triple)),
            users,
            items,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_summed_per_pair_and_split_by_fraction() {
        let mut data = Interactions::default();
        data.add("u1", "a", 1.0, 10);
        data.add("u1", "a", 2.0, 30);
        data.add("u2", "b", 1.0, 20);
        data.add("u2", "a", -1.0, 40);
        data.add("u1", "a", 0.5, 20);
        data.merge();
        assert_eq!(data.events, 5);
        assert_eq!(data.pairs.len(), 3);
        assert_eq!(data.pairs[0].weight, 3.5);
        assert_eq!(data.pairs[0].time, 30);
        let (train, holdout) = data.split(1.0 / 3.0, true, 0);
        assert_eq!((train.len(), holdout.len()), (2, 1));
        assert_eq!(holdout[0].time, 40);
        let split = Split::new(2, 2, &train, &holdout);
        assert_eq!(split.train.row(0), (&[0u32][..], &[3.5f32][..]));
        assert_eq!(
            split.holdout.row(1).0.len(),
            0,
            "negative pairs are not targets"
        );
        assert_eq!(split.train.transpose(2).row(0).0, &[0u32]);
    }
}
