//! A bounded min-heap that keeps the best `k` hits seen so far.
//!
//! Each scan task owns one, sized once, so scoring a row allocates nothing; the tasks' heaps
//! are merged at the end. Order is by score, then by lower row (the ground truth's tie rule).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::Hit;

#[derive(Debug, Clone, Copy)]
struct Ranked(Hit);

impl Ranked {
    fn cmp_rank(&self, other: &Self) -> Ordering {
        self.0
            .score
            .total_cmp(&other.0.score)
            .then_with(|| other.0.index.cmp(&self.0.index))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp_rank(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_rank(other)
    }
}

/// The best `k` hits pushed so far.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<Ranked>>,
    /// The worst kept score once `k` are kept (minus infinity before): a lower score cannot
    /// enter, so most rows of a scan are turned away by one comparison, without the heap.
    floor: f32,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
            floor: f32::NEG_INFINITY,
        }
    }

    #[inline]
    pub fn push(&mut self, index: u32, score: f32) {
        // `<`, not `<=`: an equal score still enters if it has the lower row.
        if self.k == 0 || score < self.floor {
            return;
        }
        let candidate = Ranked(Hit { index, score });
        if self.heap.len() < self.k {
            self.heap.push(Reverse(candidate));
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if candidate > worst.0 {
                *worst = Reverse(candidate);
            }
        }
        if self.heap.len() == self.k {
            self.floor = self.heap.peek().map_or(f32::NEG_INFINITY, |r| r.0 .0.score);
        }
    }

    pub fn merge(mut self, other: TopK) -> TopK {
        for Reverse(Ranked(hit)) in other.heap {
            self.push(hit.index, hit.score);
        }
        self
    }

    /// Best first.
    pub fn into_sorted(self) -> Vec<Hit> {
        let mut ranked: Vec<Ranked> = self.heap.into_iter().map(|r| r.0).collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        ranked.into_iter().map(|r| r.0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_k_with_ties_to_the_lower_index() {
        let mut top = TopK::new(3);
        for (i, s) in [0.1, 0.9, 0.5, 0.9, 0.2, 0.7].into_iter().enumerate() {
            top.push(i as u32, s);
        }
        let got: Vec<u32> = top.into_sorted().iter().map(|h| h.index).collect();
        assert_eq!(got, vec![1, 3, 5]);
    }

    #[test]
    fn merging_equals_one_pass() {
        let scores: Vec<f32> = (0..100).map(|i| ((i * 37) % 101) as f32 / 7.0).collect();
        let mut whole = TopK::new(10);
        let (mut a, mut b) = (TopK::new(10), TopK::new(10));
        for (i, &s) in scores.iter().enumerate() {
            whole.push(i as u32, s);
            if i % 2 == 0 {
                a.push(i as u32, s)
            } else {
                b.push(i as u32, s)
            }
        }
        assert_eq!(a.merge(b).into_sorted(), whole.into_sorted());
    }

    #[test]
    fn zero_k_and_fewer_items_than_k() {
        let mut none = TopK::new(0);
        none.push(1, 1.0);
        assert!(none.into_sorted().is_empty());
        let mut few = TopK::new(5);
        few.push(4, 0.3);
        few.push(2, 0.3);
        assert_eq!(
            few.into_sorted()
                .iter()
                .map(|h| h.index)
                .collect::<Vec<_>>(),
            vec![2, 4]
        );
    }
}
