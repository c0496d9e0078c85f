//! The best `keep` candidates of a code scan, without a heap.
//!
//! A code scan keeps many candidates (`k × oversample`, hundreds) out of a few thousand rows
//! per task, so a bounded heap admits a large share of the rows and sifts each through
//! `log keep` levels. Here admitted hits are appended to a buffer of `2 × keep`; when it is
//! full, a linear selection (`select_nth_unstable`) keeps the best `keep` and raises the floor
//! that turns later rows away with one comparison. Each row costs O(1) amortised, and no more
//! than `2 × keep` scores are ever held. Order is as in [`super::super::topk::TopK`]: by
//! score, then by the lower row.

use std::cmp::Ordering;

use crate::search::Hit;

/// Best first: higher score, then lower row.
pub(super) fn best_first(a: &Hit, b: &Hit) -> Ordering {
    b.score.total_cmp(&a.score).then(a.index.cmp(&b.index))
}

/// The best `keep` hits pushed so far.
#[derive(Debug, Clone)]
pub struct Best {
    keep: usize,
    hits: Vec<Hit>,
    /// The worst kept score after the last selection (minus infinity before): a lower score
    /// cannot be among the best `keep`.
    floor: f32,
}

impl Best {
    pub fn new(keep: usize) -> Self {
        Best {
            keep,
            hits: Vec::with_capacity(2 * keep.min(4096)),
            floor: f32::NEG_INFINITY,
        }
    }

    #[inline]
    pub fn push(&mut self, index: u32, score: f32) {
        // `<`, not `<=`: an equal score may still win on the lower row.
        if self.keep == 0 || score < self.floor {
            return;
        }
        self.hits.push(Hit { index, score });
        if self.hits.len() >= 2 * self.keep {
            self.shrink();
        }
    }

    /// Keeps the best `keep` and raises the floor to the worst of them.
    fn shrink(&mut self) {
        if self.hits.len() <= self.keep {
            return;
        }
        self.hits.select_nth_unstable_by(self.keep - 1, best_first);
        self.hits.truncate(self.keep);
        self.floor = self.hits[self.keep - 1].score;
    }

    pub fn merge(mut self, other: Best) -> Best {
        for hit in other.hits {
            self.push(hit.index, hit.score);
        }
        self
    }

    /// The best `keep`, in no particular order: for candidates that are scored again, whose
    /// order does not matter (sorting the 1,760 candidates of a binary search for a page of
    /// ten episodes took a sixth of the search).
    pub fn into_kept(mut self) -> Vec<Hit> {
        self.shrink();
        self.hits
    }

    /// Best first.
    pub fn into_sorted(mut self) -> Vec<Hit> {
        self.hits.sort_unstable_by(best_first);
        self.hits.truncate(self.keep);
        self.hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::topk::TopK;

    /// Scores with many ties (small integers, as the code estimates are), pushed in several
    /// parts and merged: the same hits, in the same order, as the heap keeps.
    #[test]
    fn equals_the_heap_with_ties_and_merges() {
        let mut state = 0x9e37_79b9u32;
        let scores: Vec<f32> = (0..5000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 97) as f32 - 48.0
            })
            .collect();
        for keep in [0, 1, 2, 7, 40, 200, 4999, 5000, 6000] {
            let mut heap = TopK::new(keep);
            let mut parts: Vec<Best> = (0..3).map(|_| Best::new(keep)).collect();
            for (i, &s) in scores.iter().enumerate() {
                heap.push(i as u32, s);
                parts[i * 3 / scores.len()].push(i as u32, s);
            }
            let merged = parts.into_iter().reduce(Best::merge).unwrap();
            let mut kept = merged.clone().into_kept();
            kept.sort_unstable_by(best_first);
            let sorted = merged.into_sorted();
            assert_eq!(kept, sorted, "keep {keep}: the same hits, unsorted");
            assert_eq!(sorted, heap.into_sorted(), "keep {keep}");
        }
    }
}
