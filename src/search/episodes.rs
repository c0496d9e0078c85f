//! Hits grouped into episodes: what the HTTP search answers.
//!
//! An episode's score is its best hit's. Episodes are ranked by that score across every
//! podcast searched (or, when the podcasts were searched in different modes, by the fused
//! score of [`fusion`](super::fusion)), and each episode on the requested page carries up to three positions
//! (start times more than a second apart, best first). `total` counts every episode with a
//! hit, so paging walks through all of them.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::fusion::Fusion;
use super::{Hit, SearchIndex};
use crate::error::Result;

/// Positions reported per episode.
const POSITIONS: usize = 3;

/// The scored items of one podcast, best first, and the index they come from.
pub struct Scored<'a> {
    pub index: &'a dyn SearchIndex,
    pub hits: Vec<Hit>,
}

/// An episode of the page.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedEpisode {
    /// Which of the [`Scored`] lists the episode comes from.
    pub source: usize,
    pub episode: u32,
    /// The best hit's score (with [`Fusion::ReciprocalRank`], the episode's fused score).
    pub score: f32,
    /// `(start second, score)` of up to three hits more than a second apart, best first; the
    /// scores are the hits' own, whatever the fusion.
    pub positions: Vec<(f64, f32)>,
}

/// A page of episodes and how many episodes had a hit in all.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodePage {
    pub episodes: Vec<RankedEpisode>,
    pub total: usize,
}

/// Groups `scored` by episode and returns the page `offset .. offset + page_size` (empty when
/// `offset` is past the last episode, however large either is). Only the hits of episodes on
/// the page are kept, and only their items are read (for positions).
pub fn rank_episodes(scored: &[Scored], offset: usize, page_size: usize) -> Result<EpisodePage> {
    rank_episodes_fused(scored, Fusion::Scores, offset, page_size)
}

/// [`rank_episodes`] with the scores of the lists compared by `fusion`.
pub fn rank_episodes_fused(
    scored: &[Scored],
    fusion: Fusion,
    offset: usize,
    page_size: usize,
) -> Result<EpisodePage> {
    let mut merged: Vec<(usize, Hit, f32)> = scored
        .iter()
        .enumerate()
        .flat_map(|(s, list)| {
            let keys = fusion.keys(list);
            list.hits.iter().zip(keys).map(move |(h, key)| (s, *h, key))
        })
        .collect();
    if scored.len() > 1 {
        // Best first across podcasts; stable, so ties keep podcast and row order.
        merged.sort_by(|a, b| b.2.total_cmp(&a.2));
    }
    let page = offset..offset.saturating_add(page_size);
    let mut groups: Vec<(RankedEpisode, Vec<Hit>)> = Vec::new();
    let mut by_key: HashMap<u64, usize, BuildHasherDefault<KeyHasher>> = HashMap::default();
    for (s, hit, by) in merged {
        let episode = scored[s].index.episode_of(hit.index as usize);
        let key = (s as u64) << 32 | u64::from(episode);
        let g = *by_key.entry(key).or_insert_with(|| {
            let ranked = RankedEpisode {
                source: s,
                episode,
                score: by,
                positions: Vec::new(),
            };
            groups.push((ranked, Vec::new()));
            groups.len() - 1
        });
        if page.contains(&g) {
            groups[g].1.push(hit);
        }
    }
    let total = groups.len();
    let mut episodes = Vec::new();
    for (mut ranked, hits) in groups.into_iter().skip(offset).take(page_size) {
        let index = scored[ranked.source].index;
        for hit in &hits {
            let start = index.item(hit.index as usize)?.start_sec;
            if !ranked
                .positions
                .iter()
                .any(|(t, _)| (t - start).abs() < 1.0)
            {
                ranked.positions.push((start, hit.score));
                if ranked.positions.len() == POSITIONS {
                    break;
                }
            }
        }
        episodes.push(ranked);
    }
    Ok(EpisodePage { episodes, total })
}

/// Hashes a (list, episode) key, already a well-spread integer, by one multiplication.
#[derive(Default)]
struct KeyHasher(u64);

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
    use crate::search::{Filter, ItemView};

    /// Items of episodes `1 + i / 2`, starting `10 * i` seconds in.
    struct Items(u32);

    impl SearchIndex for Items {
        fn len(&self) -> usize {
            self.0 as usize
        }
        fn dims(&self) -> usize {
            0
        }
        fn embedded_count(&self) -> usize {
            0
        }
        fn model(&self) -> Option<&str> {
            None
        }
        fn item(&self, index: usize) -> Result<ItemView<'_>> {
            Ok(ItemView {
                id: index as u32,
                episode_number: self.episode_of(index),
                episode_title: None,
                topic: None,
                subject_coarse: None,
                subject_fine: None,
                start_sec: 10.0 * index as f64,
                end_sec: 10.0 * index as f64 + 5.0,
                start_hms: None,
                end_hms: None,
                summary: None,
                text: None,
            })
        }
        fn episode_of(&self, index: usize) -> u32 {
            1 + index as u32 / 2
        }
        fn search_vector(&self, _: &[f32], _: usize, _: &Filter) -> Result<Vec<Hit>> {
            unreachable!("not searched")
        }
    }

    #[test]
    fn mixed_modes_interleave_by_reciprocal_rank() {
        // A lexical podcast (counts of 1 and up) beside a semantic one (cosines under 1).
        let lexical = Items(6);
        let semantic = Items(6);
        let hits = |scores: &[f32]| {
            scores
                .iter()
                .enumerate()
                .map(|(i, &score)| Hit {
                    index: i as u32,
                    score,
                })
                .collect::<Vec<_>>()
        };
        let scored = [
            Scored {
                index: &lexical,
                hits: hits(&[9.0, 8.0, 6.0, 5.0, 3.0, 2.0]),
            },
            Scored {
                index: &semantic,
                hits: hits(&[0.9, 0.8, 0.7, 0.6, 0.5, 0.4]),
            },
        ];
        let order = |fusion| {
            rank_episodes_fused(&scored, fusion, 0, 10)
                .unwrap()
                .episodes
                .iter()
                .map(|e| (e.source, e.episode))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            order(Fusion::Scores),
            [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)],
            "raw scores put every lexical episode first"
        );
        assert_eq!(
            order(Fusion::reciprocal_rank()),
            [(0, 1), (1, 1), (0, 2), (1, 2), (0, 3), (1, 3)]
        );
        let fused = rank_episodes_fused(&scored, Fusion::reciprocal_rank(), 0, 10).unwrap();
        assert_eq!(fused.total, 6);
        let first = &fused.episodes[0];
        assert_eq!(first.score, 1.0 / 61.0);
        assert_eq!(fused.episodes[2].score, 1.0 / 62.0);
        assert_eq!(
            first.positions,
            [(0.0, 9.0), (10.0, 8.0)],
            "positions keep the hits' own scores"
        );
    }

    #[test]
    fn pages_past_the_end_are_empty_however_far() {
        let index = Items(10);
        let hits = (0..10)
            .map(|i| Hit {
                index: i,
                score: (10 - i) as f32,
            })
            .collect();
        let scored = [Scored {
            index: &index,
            hits,
        }];
        let total = 5;
        let last = rank_episodes(&scored, total - 1, 3).unwrap();
        assert_eq!(last.total, total);
        assert_eq!(last.episodes.len(), 1);
        assert_eq!(last.episodes[0].episode, 5);
        assert_eq!(last.episodes[0].positions, [(80.0, 2.0), (90.0, 1.0)]);
        let everything = rank_episodes(&scored, 0, usize::MAX).unwrap();
        assert_eq!(everything.episodes.len(), total);
        for offset in [total, u32::MAX as usize, usize::MAX - 1, usize::MAX] {
            for page_size in [1, 50, usize::MAX] {
                let page = rank_episodes(&scored, offset, page_size).unwrap();
                assert_eq!(page.total, total, "{offset} {page_size}");
                assert!(page.episodes.is_empty(), "{offset} {page_size}");
            }
        }
    }
}
