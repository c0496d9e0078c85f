//! Hits grouped into episodes: what the HTTP search answers.
//!
//! An episode's score is its best hit's. Episodes are ranked by that score across every
//! podcast searched (or, when the podcasts were searched in different modes, by the fused
//! score of [`fusion`](super::fusion)), and each episode on the requested page carries up to three positions
//! (start times more than a second apart, best first). `total` counts every episode with a
//! hit, so paging walks through all of them.
//!
//! The server ranks [`EpisodeList`]s with [`rank_lists`]: an exact scan hands over the best
//! hits of each episode ([`super::best`]), any other search its list of hits, grouped here.
//! [`rank_episodes_fused`] groups full lists of hits, one per podcast: the reference the
//! server's ranking is tested against.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::best::{EpisodeBest, KeyHasher};
use super::fusion::Fusion;
use super::{Filter, Hit, SearchIndex};
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

/// Where the rest of an episode's hits come from when its kept hits do not settle its
/// positions (see [`super::best`]).
pub enum Rest<'a> {
    /// The list of every hit, best first, the episodes were grouped from.
    Hits(Vec<Hit>),
    /// The query the episodes were scanned with: their items are scored again, exactly as the
    /// scan scored them.
    Query(&'a [f32]),
}

/// The episodes of one podcast, best first, with their best hits.
pub struct EpisodeList<'a> {
    pub index: &'a dyn SearchIndex,
    /// Ranked: by best hit, ties to the episode whose best hit comes first.
    episodes: Vec<EpisodeBest>,
    rest: Rest<'a>,
}

impl<'a> EpisodeList<'a> {
    /// Groups `hits` (best first, in whatever order the search ranks them) by episode: an
    /// episode ranks where its first hit is.
    pub fn from_hits(index: &'a dyn SearchIndex, hits: Vec<Hit>) -> Self {
        let mut episodes: Vec<EpisodeBest> = Vec::new();
        let mut slots: HashMap<u32, usize> = HashMap::new();
        for hit in &hits {
            let episode = index.episode_of(hit.index as usize);
            let slot = *slots.entry(episode).or_insert_with(|| {
                episodes.push(EpisodeBest::new(0, episode));
                episodes.len() - 1
            });
            episodes[slot].append(*hit);
        }
        EpisodeList {
            index,
            episodes,
            rest: Rest::Hits(hits),
        }
    }

    /// The episodes of an exact scan of `index` for `query` (in any order), ranked by best hit
    /// (higher score, then lower row: where the full sorted list would put its first hit).
    pub fn from_scan(
        index: &'a dyn SearchIndex,
        mut episodes: Vec<EpisodeBest>,
        query: &'a [f32],
    ) -> Self {
        episodes.sort_unstable_by(|a, b| {
            let (a, b) = (a.best(), b.best());
            b.score.total_cmp(&a.score).then(a.index.cmp(&b.index))
        });
        EpisodeList {
            index,
            episodes,
            rest: Rest::Query(query),
        }
    }

    /// Whether the episodes come from a scan of every row ([`EpisodeList::from_scan`]), so
    /// that every episode with an embedded item is among them.
    pub fn scanned_every_row(&self) -> bool {
        matches!(self.rest, Rest::Query(_))
    }

    /// The episodes, ranked.
    pub fn into_episodes(self) -> Vec<EpisodeBest> {
        self.episodes
    }

    /// Episodes with a hit.
    pub fn len(&self) -> usize {
        self.episodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.episodes.is_empty()
    }

    /// Every hit of each of `episodes`, best first, in the order of `episodes`.
    fn all_hits(&self, episodes: &[u32]) -> Result<Vec<Vec<Hit>>> {
        let hits = match &self.rest {
            Rest::Hits(hits) => hits
                .iter()
                .copied()
                .filter(|h| episodes.contains(&self.index.episode_of(h.index as usize)))
                .collect(),
            Rest::Query(query) => self
                .index
                .score_all(query, &Filter::episode_set(episodes.to_vec()))?,
        };
        let mut by_episode = vec![Vec::new(); episodes.len()];
        for hit in hits {
            let episode = self.index.episode_of(hit.index as usize);
            if let Some(at) = episodes.iter().position(|&e| e == episode) {
                by_episode[at].push(hit);
            }
        }
        Ok(by_episode)
    }
}

/// The page `offset .. offset + page_size` of the episodes of `lists`, ranked across lists by
/// `fusion` (empty when `offset` is past the last episode, however large either is), each
/// with its positions; `total` counts every episode. The same page as
/// [`rank_episodes_fused`] over the lists' full hits: across lists, ties keep list order, then
/// rank.
pub fn rank_lists(
    lists: &[EpisodeList],
    fusion: Fusion,
    offset: usize,
    page_size: usize,
) -> Result<EpisodePage> {
    let total: usize = lists.iter().map(EpisodeList::len).sum();
    let end = offset.saturating_add(page_size).min(total);
    if offset >= end {
        return Ok(EpisodePage {
            episodes: Vec::new(),
            total,
        });
    }
    let key = |list: &EpisodeList, rank: usize| match fusion {
        Fusion::Scores => list.episodes[rank].best().score,
        // As `Fusion::keys`: 1 / (k + rank from 1).
        Fusion::ReciprocalRank { k } => 1.0 / (k + (rank as f32 + 1.0)),
    };
    // (key, list, rank) of every episode: the page is selected among the episodes, not items.
    let mut order: Vec<(f32, u32, u32)> = lists
        .iter()
        .enumerate()
        .flat_map(|(s, list)| (0..list.len()).map(move |r| (key(list, r), s as u32, r as u32)))
        .collect();
    let by = |a: &(f32, u32, u32), b: &(f32, u32, u32)| {
        b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
    };
    if end < order.len() {
        order.select_nth_unstable_by(end, by);
        order.truncate(end);
    }
    order.sort_unstable_by(by);
    let page = &order[offset..];

    let mut episodes: Vec<RankedEpisode> = Vec::with_capacity(page.len());
    // Episodes whose kept hits did not give every position, per list.
    let mut unsettled: Vec<Vec<usize>> = vec![Vec::new(); lists.len()];
    for (at, &(key, s, rank)) in page.iter().enumerate() {
        let list = &lists[s as usize];
        let best = &list.episodes[rank as usize];
        let positions = positions(list.index, best.hits())?;
        if positions.len() < POSITIONS && !best.complete() {
            unsettled[s as usize].push(at);
        }
        episodes.push(RankedEpisode {
            source: s as usize,
            episode: best.episode,
            score: key,
            positions,
        });
    }
    for (s, ats) in unsettled.iter().enumerate().filter(|(_, a)| !a.is_empty()) {
        let numbers: Vec<u32> = ats.iter().map(|&at| episodes[at].episode).collect();
        for (&at, hits) in ats.iter().zip(lists[s].all_hits(&numbers)?) {
            episodes[at].positions = positions(lists[s].index, &hits)?;
        }
    }
    Ok(EpisodePage { episodes, total })
}

/// `(start, score)` of up to [`POSITIONS`] of `hits` (best first) more than a second apart.
fn positions(index: &dyn SearchIndex, hits: &[Hit]) -> Result<Vec<(f64, f32)>> {
    let mut positions: Vec<(f64, f32)> = Vec::with_capacity(POSITIONS);
    for hit in hits {
        let start = index.item(hit.index as usize)?.start_sec;
        if !positions.iter().any(|(t, _)| (t - start).abs() < 1.0) {
            positions.push((start, hit.score));
            if positions.len() == POSITIONS {
                break;
            }
        }
    }
    Ok(positions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::{Filter, ItemView};

    /// `len` items, `per_episode` to an episode (from episode 1), `per_start` at a time
    /// starting together, 10 seconds apart.
    struct Items {
        len: u32,
        per_episode: u32,
        per_start: u32,
    }

    /// Two items to an episode, each with a start of its own.
    fn paired(len: u32) -> Items {
        Items {
            len,
            per_episode: 2,
            per_start: 1,
        }
    }

    impl SearchIndex for Items {
        fn len(&self) -> usize {
            self.len as usize
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
            let start_sec = 10.0 * (index as u32 / self.per_start) as f64;
            Ok(ItemView {
                id: index as u32,
                episode_number: self.episode_of(index),
                episode_title: None,
                topic: None,
                subject_coarse: None,
                subject_fine: None,
                start_sec,
                end_sec: start_sec + 5.0,
                start_hms: None,
                end_hms: None,
                summary: None,
                text: None,
            })
        }
        fn episode_of(&self, index: usize) -> u32 {
            1 + index as u32 / self.per_episode
        }
        fn search_vector(&self, _: &[f32], _: usize, _: &Filter) -> Result<Vec<Hit>> {
            unreachable!("not searched")
        }
    }

    #[test]
    fn mixed_modes_interleave_by_reciprocal_rank() {
        // A lexical podcast (counts of 1 and up) beside a semantic one (cosines under 1).
        let lexical = paired(6);
        let semantic = paired(6);
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
    fn positions_past_the_kept_hits_come_from_the_rest() {
        // 12 items to an episode, four at a time starting together.
        let index = Items {
            len: 60,
            per_episode: 12,
            per_start: 4,
        };
        // Scores fall with the row, but for a tie in each episode.
        let hits: Vec<Hit> = (0..60)
            .map(|i| Hit {
                index: i,
                score: 100.0 - (i - i % 2) as f32,
            })
            .collect();
        let scored = [Scored {
            index: &index,
            hits: hits.clone(),
        }];
        let lists = [EpisodeList::from_hits(&index, hits)];
        assert!(lists[0].episodes.iter().all(|e| !e.complete()));
        for (offset, size) in [(0, 1), (0, 10), (2, 2), (4, 1), (5, 3)] {
            let new = rank_lists(&lists, Fusion::Scores, offset, size).unwrap();
            assert_eq!(new, rank_episodes(&scored, offset, size).unwrap());
            if let Some(first) = new.episodes.first() {
                // Past the eight kept hits (two starts), the third start.
                assert_eq!(first.positions.len(), 3, "{first:?}");
            }
        }
    }

    #[test]
    fn pages_past_the_end_are_empty_however_far() {
        let index = paired(10);
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
