//! Search: exact top-k by cosine, the original's lexical fallback, shared scan passes, and
//! hits grouped into ranked episodes.
//!
//! Both the memory-mapped archive ([`crate::index::MmapIndex`]) and the original JSON path
//! ([`crate::json_index::JsonIndex`]) implement [`SearchIndex`], so tests and benchmarks
//! compare them through the same calls. Filters are part of the call, so each implementation
//! can test them inside its scan instead of over-fetching and filtering afterwards.
//!
//! - [`scan`] scores a [`scan::Matrix`] (the archive's mapped rows) on every core;
//! - [`batch`] lets concurrent searches of one matrix share a pass;
//! - [`best`] keeps the best hits of each episode while a scan runs, for the HTTP search;
//! - [`episodes`] groups scored items into the episodes the HTTP search returns, with
//!   [`fusion`] putting the scores of podcasts searched in different modes on one scale;
//! - [`quant`] scans the int8 or sign-bit codes beside the matrix for candidates and
//!   rescores them exactly ([`SearchMode`]);
//! - [`kernel`] (SIMD dot products), [`topk`] and [`lexical`] are their parts, and `cores`
//!   runs their short parallel passes with the calling thread taking part.

pub mod batch;
pub mod best;
mod cores;
pub mod episodes;
pub mod fusion;
pub mod kernel;
pub mod lexical;
pub mod quant;
pub mod scan;
pub mod topk;

pub use batch::ScanBatcher;
pub use best::EpisodeBest;
pub use episodes::{
    rank_episodes, rank_episodes_fused, rank_lists, EpisodeList, EpisodePage, RankedEpisode, Scored,
};
pub use fusion::{Fusion, RRF_K};
pub use quant::{SearchMode, UnknownMode};

use crate::error::{Error, Result};

/// Which episodes a search may return.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EpisodeFilter {
    #[default]
    All,
    /// Episode numbers `from..=to`.
    Range { from: u32, to: u32 },
    /// Any of these episode numbers.
    Set(Vec<u32>),
}

/// Restrictions applied inside the scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub episodes: EpisodeFilter,
}

/// How many distinct episode numbers `episodes` holds.
pub(crate) fn distinct_episodes(episodes: impl IntoIterator<Item = u32>) -> usize {
    let mut episodes: Vec<u32> = episodes.into_iter().collect();
    episodes.sort_unstable();
    episodes.dedup();
    episodes.len()
}

impl Filter {
    /// No restriction.
    pub fn all() -> Self {
        Filter::default()
    }

    pub fn episode_range(from: u32, to: u32) -> Self {
        Filter {
            episodes: EpisodeFilter::Range { from, to },
        }
    }

    pub fn episode_set(mut episodes: Vec<u32>) -> Self {
        episodes.sort_unstable();
        episodes.dedup();
        Filter {
            episodes: EpisodeFilter::Set(episodes),
        }
    }

    #[inline]
    pub fn accepts(&self, episode: u32) -> bool {
        match &self.episodes {
            EpisodeFilter::All => true,
            EpisodeFilter::Range { from, to } => (*from..=*to).contains(&episode),
            EpisodeFilter::Set(set) => set.binary_search(&episode).is_ok(),
        }
    }
}

/// One result: the item's row in the index and its score (cosine, or the lexical score).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub index: u32,
    pub score: f32,
}

/// An item's metadata as the original `RagItem` has it, borrowed from the index: for the
/// mapped archive the strings point into the mapping, nothing is copied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ItemView<'a> {
    pub id: u32,
    pub episode_number: u32,
    pub episode_title: Option<&'a str>,
    pub topic: Option<&'a str>,
    pub subject_coarse: Option<&'a str>,
    pub subject_fine: Option<&'a str>,
    pub start_sec: f64,
    pub end_sec: f64,
    pub start_hms: Option<&'a str>,
    pub end_hms: Option<&'a str>,
    pub summary: Option<&'a str>,
    pub text: Option<&'a str>,
}

/// What every index answers. `Sync` so a scan can be split across threads.
pub trait SearchIndex: Sync {
    /// Number of items.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Embedding dimension; 0 when the index has no embeddings.
    fn dims(&self) -> usize;

    /// Items that have an embedding (dense search only sees these).
    fn embedded_count(&self) -> usize;

    /// The embedding model named by the source data.
    fn model(&self) -> Option<&str>;

    /// Metadata of the item in row `index`. Panics if `index >= len()`; fails if the item's
    /// stored bytes turn out to be corrupt.
    fn item(&self, index: usize) -> Result<ItemView<'_>>;

    /// The episode number of the item in row `index`, without reading the item (a column).
    fn episode_of(&self, index: usize) -> u32;

    /// Exact top-`k` by cosine similarity, best first; ties go to the lower row.
    /// Items without an embedding are never returned.
    fn search_vector(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Hit>>;

    /// Top-`k` like [`SearchIndex::search_vector`], scanning as `mode` says: a quantized mode
    /// scans codes for candidates and rescores them, so scores are exact and only recall may
    /// differ. An index without codes (the JSON path) answers exactly, whatever the mode.
    fn search_vector_in(
        &self,
        query: &[f32],
        k: usize,
        filter: &Filter,
        mode: SearchMode,
    ) -> Result<Vec<Hit>> {
        let _ = mode;
        self.search_vector(query, k, filter)
    }

    /// How many distinct episodes have an item with an embedding: the episodes a full vector
    /// scan groups its hits into. The default counts the episodes of every item (right when
    /// every item has an embedding); the archive reads its columns, once.
    fn episodes_with_embeddings(&self) -> usize {
        distinct_episodes((0..self.len()).map(|i| self.episode_of(i)))
    }

    /// Every item with an embedding that passes `filter`, scored, best first (ties to the
    /// lower row): what grouping by episode needs.
    fn score_all(&self, query: &[f32], filter: &Filter) -> Result<Vec<Hit>> {
        self.search_vector(query, self.len(), filter)
    }

    /// The original server's lexical scoring (see [`lexical`]), best first.
    fn search_text(&self, query: &str, k: usize, filter: &Filter) -> Result<Vec<Hit>> {
        lexical::search(self, query, k, filter)
    }
}

/// Checks a query vector against an index's dimension and returns its L2 norm, computed in
/// f64 so that large components (`3e38`) do not overflow to infinity.
pub(crate) fn query_norm(query: &[f32], dims: usize) -> Result<f64> {
    if dims == 0 {
        return Err(Error::NoEmbeddings);
    }
    if query.len() != dims {
        return Err(Error::QueryDimension {
            expected: dims,
            found: query.len(),
        });
    }
    // Four running sums, so that the loop vectorises (one chain of dependent additions
    // took microseconds at 3,072 dims); f64 keeps the order of additions out of the result
    // at f32 precision.
    let mut lanes = [0.0f64; 4];
    let chunks = query.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (sum, &x) in lanes.iter_mut().zip(chunk) {
            *sum += f64::from(x) * f64::from(x);
        }
    }
    let norm = (lanes.iter().sum::<f64>()
        + tail
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>())
    .sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err(Error::InvalidQuery);
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_accept_what_they_name() {
        assert!(Filter::all().accepts(7));
        let range = Filter::episode_range(3, 5);
        assert!(!range.accepts(2) && range.accepts(3) && range.accepts(5) && !range.accepts(6));
        let set = Filter::episode_set(vec![9, 1, 9, 4]);
        assert_eq!(set.episodes, EpisodeFilter::Set(vec![1, 4, 9]));
        assert!(set.accepts(4) && !set.accepts(5));
    }

    #[test]
    fn query_norm_refuses_bad_queries() {
        assert!(matches!(query_norm(&[1.0], 0), Err(Error::NoEmbeddings)));
        assert!(matches!(
            query_norm(&[1.0], 2),
            Err(Error::QueryDimension {
                expected: 2,
                found: 1
            })
        ));
        assert!(matches!(
            query_norm(&[0.0, 0.0], 2),
            Err(Error::InvalidQuery)
        ));
        assert!(matches!(
            query_norm(&[f32::NAN, 1.0], 2),
            Err(Error::InvalidQuery)
        ));
        assert_eq!(query_norm(&[3.0, 4.0], 2).unwrap(), 5.0);
        let huge = query_norm(&[3e38, 3e38], 2).unwrap();
        assert!((huge / (3e38 * 2f64.sqrt()) - 1.0).abs() < 1e-6, "{huge}");
    }
}
