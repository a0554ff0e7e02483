//! Re-ranking for diversity by maximal marginal relevance (Carbonell & Goldstein, 1998): the
//! list is built one item at a time, each time taking the candidate with the best
//! `(1 − λ)·relevance − λ·(its greatest similarity to an item already taken)`, relevance being
//! the candidate's score scaled to [0, 1] over the candidates. λ = 0 keeps the ranking; λ = 1
//! takes the least similar item each time.

/// The `k` items of `candidates` ((item, score), best first) chosen by MMR with `lambda`,
/// in the order chosen, with their scores; `similarity` of two items is in [0, 1].
pub fn mmr(
    candidates: &[(usize, f32)],
    k: usize,
    lambda: f32,
    similarity: impl Fn(usize, usize) -> f32,
) -> Vec<(usize, f32)> {
    if lambda <= 0.0 || candidates.len() <= 1 {
        return candidates.iter().take(k).copied().collect();
    }
    let (low, high) = (candidates.iter()).fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), c| {
        (l.min(c.1), h.max(c.1))
    });
    let relevance = |score: f32| match high > low {
        true => (score - low) / (high - low),
        false => 1.0,
    };
    let mut left: Vec<(usize, f32)> = candidates.to_vec();
    // each candidate's greatest similarity to the items taken so far
    let mut closest = vec![0f32; left.len()];
    let mut chosen = Vec::with_capacity(k.min(left.len()));
    while chosen.len() < k && !left.is_empty() {
        let value = |at: usize| (1.0 - lambda) * relevance(left[at].1) - lambda * closest[at];
        let mut best = 0;
        for at in 1..left.len() {
            if value(at) > value(best) {
                best = at;
            }
        }
        let taken = left.remove(best);
        closest.remove(best);
        for (at, candidate) in left.iter().enumerate() {
            closest[at] = closest[at].max(similarity(taken.0, candidate.0));
        }
        chosen.push(taken);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diversity_trades_relevance_for_other_categories() {
        // items 0-3 in category 0 score highest; 4 and 5 are in categories 1 and 2
        let category = [0, 0, 0, 0, 1, 2];
        let same = |a: usize, b: usize| f32::from(u8::from(category[a] == category[b]));
        let candidates = [(0, 1.0), (1, 0.95), (2, 0.9), (3, 0.85), (4, 0.5), (5, 0.4)];
        let items = |list: Vec<(usize, f32)>| list.iter().map(|c| c.0).collect::<Vec<_>>();
        assert_eq!(items(mmr(&candidates, 3, 0.0, same)), [0, 1, 2]);
        assert_eq!(items(mmr(&candidates, 3, 0.5, same)), [0, 4, 5]);
        // a little diversity takes the other category only once it is worth it
        assert_eq!(items(mmr(&candidates, 3, 0.2, same)), [0, 1, 2]);
        assert_eq!(items(mmr(&candidates, 6, 1.0, same)), [0, 4, 5, 1, 2, 3]);
        // scores are kept
        assert_eq!(mmr(&candidates, 2, 0.5, same)[1], (4, 0.5));
        assert!(mmr(&[], 3, 0.5, same).is_empty());
    }
}
