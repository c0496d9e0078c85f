//! The best hits of each episode, kept while a scan runs.
//!
//! The HTTP search ranks episodes by their best hit and shows up to three positions per
//! episode (start times more than a second apart). Neither needs every scored item: an
//! episode's best [`KEPT`] hits and how many it had settle both in almost every case. So a
//! scan folds its rows into a [`PerEpisode`] accumulator (one per thread, merged at the end)
//! instead of collecting a hit per item and sorting them: memory and work after the scan grow
//! with the number of episodes, not of items.
//!
//! When the kept hits of an episode on the page do not yield three positions (some start
//! within a second of each other) and the episode had more hits, the positions need the rest:
//! the ranking scores that episode's items again ([`super::episodes`]), so the answer is the
//! one grouping every hit gives.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::Hit;

/// Hits kept per episode. Three positions need three hits whose starts are more than a second
/// apart; in the real corpus many items of an episode start together (topics of one stretch of
/// the talk), so with four kept about one episode in five fell short, with eight about one in
/// two hundred. Those are settled by scoring the episode again.
pub const KEPT: usize = 8;

/// One episode's best hits (by score, then lower row) and how many hits it had.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpisodeBest {
    /// Which podcast (list) of a cross-podcast scan the episode belongs to.
    pub source: u32,
    pub episode: u32,
    hits: [Hit; KEPT],
    kept: u8,
    count: u32,
}

const NO_HIT: Hit = Hit {
    index: u32::MAX,
    score: f32::NEG_INFINITY,
};

/// Whether `a` ranks before `b`: higher score, then the lower row (the scan's tie rule).
#[inline]
pub fn before(a: &Hit, b: &Hit) -> bool {
    match b.score.total_cmp(&a.score) {
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Greater => false,
        std::cmp::Ordering::Equal => a.index < b.index,
    }
}

impl EpisodeBest {
    pub fn new(source: u32, episode: u32) -> Self {
        EpisodeBest {
            source,
            episode,
            hits: [NO_HIT; KEPT],
            kept: 0,
            count: 0,
        }
    }

    /// The kept hits, best first.
    pub fn hits(&self) -> &[Hit] {
        &self.hits[..usize::from(self.kept)]
    }

    /// The best hit (an episode exists only once it has one).
    pub fn best(&self) -> Hit {
        self.hits[0]
    }

    /// How many hits the episode had in all.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether the kept hits are all of them.
    pub fn complete(&self) -> bool {
        self.count as usize == usize::from(self.kept)
    }

    /// Counts `hit` and keeps it if it is among the best [`KEPT`] (by [`before`]).
    #[inline]
    pub fn push(&mut self, hit: Hit) {
        self.count += 1;
        let kept = usize::from(self.kept);
        if kept == KEPT && !before(&hit, &self.hits[KEPT - 1]) {
            return;
        }
        let mut at = kept.min(KEPT - 1);
        while at > 0 && before(&hit, &self.hits[at - 1]) {
            self.hits[at] = self.hits[at - 1];
            at -= 1;
        }
        self.hits[at] = hit;
        self.kept = self.kept.max((kept + 1).min(KEPT) as u8);
    }

    /// Counts `hit` and keeps it if fewer than [`KEPT`] are kept: for hits that arrive best
    /// first already, in an order of their own (a lexical or quantized list).
    pub fn append(&mut self, hit: Hit) {
        self.count += 1;
        if usize::from(self.kept) < KEPT {
            self.hits[usize::from(self.kept)] = hit;
            self.kept += 1;
        }
    }

    /// Adds the hits of the same episode seen by another task.
    pub fn merge(&mut self, other: &EpisodeBest) {
        let count = self.count + other.count;
        for hit in other.hits() {
            self.push(*hit);
        }
        self.count = count;
    }
}

/// Per-episode best hits of the rows a task has scored, keyed by (source, episode).
///
/// Rows of one episode are usually adjacent, so the slot of the last row's episode is tried
/// before the map: most rows cost one comparison and [`EpisodeBest::push`]'s one more.
#[derive(Debug, Default)]
pub struct PerEpisode {
    episodes: Vec<EpisodeBest>,
    slots: HashMap<u64, u32, BuildHasherDefault<KeyHasher>>,
    last: Option<(u64, u32)>,
}

fn key(source: u32, episode: u32) -> u64 {
    u64::from(source) << 32 | u64::from(episode)
}

impl PerEpisode {
    /// Adds the hit `index, score` of `episode` in `source`.
    #[inline]
    pub fn push(&mut self, source: u32, episode: u32, index: u32, score: f32) {
        let hit = Hit { index, score };
        let key = key(source, episode);
        let slot = match self.last {
            Some((last, slot)) if last == key => slot,
            _ => {
                let slot = self.slot(source, episode);
                self.last = Some((key, slot));
                slot
            }
        };
        self.episodes[slot as usize].push(hit);
    }

    fn slot(&mut self, source: u32, episode: u32) -> u32 {
        let next = self.episodes.len() as u32;
        let slot = *self.slots.entry(key(source, episode)).or_insert(next);
        if slot == next {
            self.episodes.push(EpisodeBest::new(source, episode));
        }
        slot
    }

    /// Both tasks' episodes, the smaller folded into the larger.
    pub fn merge(self, other: PerEpisode) -> PerEpisode {
        let (mut into, from) = if self.episodes.len() >= other.episodes.len() {
            (self, other)
        } else {
            (other, self)
        };
        into.last = None;
        for e in &from.episodes {
            let slot = into.slot(e.source, e.episode);
            into.episodes[slot as usize].merge(e);
        }
        into
    }

    /// Episodes with a hit, in no particular order.
    pub fn len(&self) -> usize {
        self.episodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.episodes.is_empty()
    }

    /// The episodes, in no particular order.
    pub fn into_episodes(self) -> Vec<EpisodeBest> {
        self.episodes
    }
}

/// Hashes a (source, episode) key, already a well-spread integer, by one multiplication.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(index: u32, score: f32) -> Hit {
        Hit { index, score }
    }

    /// Every hit, sorted as the scan's full list is, cut to the first `KEPT`.
    fn reference(hits: &[Hit]) -> Vec<Hit> {
        let mut all = hits.to_vec();
        all.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
        all.truncate(KEPT);
        all
    }

    #[test]
    fn keeps_the_best_with_ties_to_the_lower_row_however_split() {
        let scores = [0.5, 0.9, 0.5, 0.1, 0.9, -0.0, 0.0, 0.7, 0.5, 0.9];
        let hits: Vec<Hit> = scores
            .iter()
            .enumerate()
            .map(|(i, &s)| hit(i as u32, s))
            .collect();
        for split in 0..=hits.len() {
            let mut a = EpisodeBest::new(0, 1);
            let mut b = EpisodeBest::new(0, 1);
            // Pushed in reverse, so order of arrival does not decide ties.
            hits[..split].iter().rev().for_each(|h| a.push(*h));
            hits[split..].iter().for_each(|h| b.push(*h));
            a.merge(&b);
            assert_eq!(a.hits(), reference(&hits), "split at {split}");
            assert_eq!(a.count(), hits.len() as u32);
            assert!(!a.complete());
        }
    }

    #[test]
    fn per_episode_merges_tasks_by_source_and_episode() {
        let mut a = PerEpisode::default();
        let mut b = PerEpisode::default();
        a.push(0, 7, 0, 0.1);
        a.push(0, 7, 1, 0.3);
        a.push(1, 7, 2, 0.2);
        b.push(0, 7, 3, 0.4);
        b.push(0, 8, 4, 0.5);
        let mut merged = a.merge(b).into_episodes();
        merged.sort_by_key(|e| (e.source, e.episode));
        let summary: Vec<_> = merged
            .iter()
            .map(|e| (e.source, e.episode, e.count(), e.best().index))
            .collect();
        assert_eq!(summary, [(0, 7, 3, 3), (0, 8, 1, 4), (1, 7, 1, 2)]);
        assert!(merged.iter().all(EpisodeBest::complete));
    }
}
