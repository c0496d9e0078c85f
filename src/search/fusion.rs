//! How scores from several podcasts are put on one scale before their episodes are ranked
//! together.
//!
//! Within one search mode scores compare as they are: cosines with cosines, the lexical
//! counts of the original's scoring with each other. Across modes they do not: a lexical
//! score is a count of matching query words (1 and up, 2 more for the whole query), a cosine
//! is at most 1, so sorting them together
//! would put every lexical episode before every semantic one. A cross-podcast search that
//! mixes modes therefore ranks by **reciprocal-rank fusion** (RRF): each episode's score is
//! `1 / (k + r)`, where `r` is its rank (from 1) among its own podcast's episodes, by its best
//! hit, and `k` = [`RRF_K`] = 60, the constant of Cormack, Clarke and Büttcher (2009). The
//! first episodes of each podcast then come first, interleaved, then the second ones, and so
//! on; the order within each podcast is unchanged.

use std::collections::HashMap;

use super::episodes::Scored;

/// The `k` of reciprocal-rank fusion.
pub const RRF_K: f32 = 60.0;

/// How scores of different podcasts are compared.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Fusion {
    /// As they are: every podcast was searched the same way.
    #[default]
    Scores,
    /// Reciprocal-rank fusion with this `k`: the podcasts were searched in different modes.
    ReciprocalRank { k: f32 },
}

impl Fusion {
    /// RRF with [`RRF_K`].
    pub fn reciprocal_rank() -> Self {
        Fusion::ReciprocalRank { k: RRF_K }
    }

    /// The key each hit of `list` is ranked by across podcasts, in the list's order: its own
    /// score, or the fused score of its episode.
    pub fn keys(self, list: &Scored) -> Vec<f32> {
        match self {
            Fusion::Scores => list.hits.iter().map(|h| h.score).collect(),
            Fusion::ReciprocalRank { k } => {
                // Hits come best first, so an episode's rank is the order of its first hit.
                let mut ranks: HashMap<u32, f32> = HashMap::new();
                list.hits
                    .iter()
                    .map(|h| {
                        let episode = list.index.episode_of(h.index as usize);
                        let next = ranks.len() as f32 + 1.0;
                        let rank = *ranks.entry(episode).or_insert(next);
                        1.0 / (k + rank)
                    })
                    .collect()
            }
        }
    }
}
