//! How a query is searched in one podcast: semantically, when an embeddings endpoint is
//! configured and the podcast's archive was embedded with the model it serves, else lexically.
//! Search and chat both plan their podcasts here, and `/api/podcasts` reports the outcome.
//!
//! **Degradation.** A query that could be semantic is searched lexically when its embedding
//! cannot be had in time: the embeddings API is down or failing (after its retries), its
//! breaker is open, every slot is taken, or no answer came within the search's wait
//! (`--search-embedding-wait-ms`). The answer then says `lexical`, and
//! `podmap_search_degraded_total{reason}` counts it (`breaker_open`, `busy`, `timeout`,
//! `upstream_error`). A call that outlives the wait goes on in the background: its outcome
//! still reaches the breaker (so a hung API opens it) and its embedding the cache. An answer
//! of the wrong dimension is a misconfiguration, not an outage, and stays an error (502).

use std::sync::Arc;

use tokio::time::Instant;

use super::catalog::Podcast;
use super::embeddings::EmbedError;
use super::error::ApiError;
use super::upstream::Refusal;
use super::AppState;
use std::collections::HashSet;

use crate::index::MmapIndex;
use crate::search::{quant, Filter, Hit, SearchIndex, SearchMode};

/// A podcast to search, with the query's embedding when its search is semantic.
pub type Plan = (Arc<dyn Podcast>, Option<Arc<Vec<f32>>>);

/// The embedding model to query for `podcast`, when semantic search is possible: an
/// embeddings endpoint is configured, the podcast has embeddings, and the configured model
/// (if any) is the one its archive was built with.
pub fn semantic_model(state: &AppState, podcast: &dyn Podcast) -> Option<String> {
    state.embedder.as_ref()?;
    let index = podcast.index();
    if index.embedded_count() == 0 {
        return None;
    }
    match (&state.settings.embedding_model, index.model()) {
        (Some(configured), Some(built)) if configured != built => None,
        (Some(configured), _) => Some(configured.clone()),
        (None, Some(built)) => Some(built.to_owned()),
        (None, None) => Some("default".to_owned()),
    }
}

/// Why a query that could be searched semantically was searched lexically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Degraded {
    /// The embeddings API's breaker is open.
    BreakerOpen,
    /// Every embeddings slot stayed taken.
    Busy,
    /// No embedding within the search's wait.
    Timeout,
    /// The embeddings API failed.
    UpstreamError,
}

impl Degraded {
    /// The `reason` label of `podmap_search_degraded_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Degraded::BreakerOpen => "breaker_open",
            Degraded::Busy => "busy",
            Degraded::Timeout => "timeout",
            Degraded::UpstreamError => "upstream_error",
        }
    }

    fn of(error: &EmbedError) -> Degraded {
        match error.refusal() {
            Some(Refusal::Open(_)) => Degraded::BreakerOpen,
            Some(Refusal::Busy(_)) => Degraded::Busy,
            None => Degraded::UpstreamError,
        }
    }

    /// Counts one search (or chat retrieval) answered lexically for this reason.
    pub fn count(self) {
        metrics::counter!("podmap_search_degraded_total", "reason" => self.reason()).increment(1);
    }
}

/// How a podcast is searched for one query.
#[derive(Debug, Clone)]
pub enum Mode {
    /// By cosine with the query's embedding.
    Semantic(Arc<Vec<f32>>),
    /// Lexically: the podcast has no usable embeddings, or none are configured.
    Lexical,
    /// Lexically, because the query's embedding could not be had.
    Degraded(Degraded),
}

impl Mode {
    pub fn embedding(&self) -> Option<Arc<Vec<f32>>> {
        match self {
            Mode::Semantic(v) => Some(v.clone()),
            Mode::Lexical | Mode::Degraded(_) => None,
        }
    }

    pub fn degraded(&self) -> Option<Degraded> {
        match self {
            Mode::Degraded(why) => Some(*why),
            _ => None,
        }
    }
}

/// How `podcast` is searched for `query`, waiting for the embedding until `deadline` at most
/// (see the module docs). A model that answers with another dimension than the index's is an
/// error, and its answer is not kept in the cache.
pub async fn mode(
    state: &AppState,
    podcast: &Arc<dyn Podcast>,
    query: &str,
    deadline: Instant,
) -> Result<Mode, ApiError> {
    let Some(model) = semantic_model(state, podcast.as_ref()) else {
        return Ok(Mode::Lexical);
    };
    let embedder = state.embedder.clone().expect("checked by semantic_model");
    let fetch = tokio::spawn({
        let (embedder, model, query) = (embedder.clone(), model.clone(), query.to_owned());
        async move { embedder.embed_query(&model, &query).await }
    });
    let v = match tokio::time::timeout_at(deadline, fetch).await {
        Ok(Ok(Ok(v))) => v,
        Ok(Ok(Err(e))) => {
            let why = Degraded::of(&e);
            tracing::warn!(podcast = podcast.id(), "searched lexically: {e}");
            return Ok(Mode::Degraded(why));
        }
        Ok(Err(e)) => return Err(ApiError::internal(e)),
        Err(_) => {
            tracing::warn!(
                podcast = podcast.id(),
                "searched lexically: no query embedding within {:?}",
                state.settings.search_embedding_wait
            );
            return Ok(Mode::Degraded(Degraded::Timeout));
        }
    };
    let dims = podcast.index().dims();
    if v.len() != dims {
        embedder.forget(&model, query).await;
        return Err(ApiError::Dimensions {
            model,
            returned: v.len(),
            podcast: podcast.id().to_owned(),
            dims,
        });
    }
    Ok(Mode::Semantic(v))
}

/// The deadline of a search's wait for embeddings, from now.
pub fn embedding_deadline(state: &AppState) -> Instant {
    Instant::now() + state.settings.search_embedding_wait
}

/// The scored items of a podcast, best first: by cosine with `embedding`, or lexically.
///
/// An `exact` search scores every item (the search route scans archives for the best hits
/// of each episode instead, see [`crate::search::best`]). A quantized one (`int8`,
/// `binary`) rescores only the best candidates of its code scan: it asks for items until
/// they cover `episodes` episodes (the page and one more) or every item; the route counts
/// `total` as a full scan would.
pub fn score(
    podcast: &dyn Podcast,
    embedding: Option<&[f32]>,
    query: &str,
    how: SearchMode,
    episodes: usize,
) -> crate::Result<Vec<Hit>> {
    let index = podcast.index();
    match embedding {
        Some(v) if how == SearchMode::Exact => podcast.score_all(v),
        Some(v) => covering(index.embedded_count(), episodes, |k| {
            let hits = index.search_vector_in(v, k, &Filter::all(), how)?;
            let episodes = hits.iter().map(|h| index.episode_of(h.index as usize));
            Ok((episodes.map(u64::from).collect(), hits))
        }),
        None => index.search_text(query, index.len(), &Filter::all()),
    }
}

/// The best items of several archives by cosine with each one's embedding, found in one
/// quantized search across them ([`quant::top_k_across`]): as [`score`], items until they
/// cover `episodes` episodes of all the archives together, or every item. The hits of each
/// archive, best first, in the order of `sources`.
pub fn score_across(
    sources: &[(&MmapIndex, &[f32])],
    how: SearchMode,
    episodes: usize,
) -> crate::Result<Vec<Vec<Hit>>> {
    let all = sources
        .iter()
        .map(|(index, _)| index.embedded_count())
        .sum();
    let found = covering(all, episodes, |k| {
        let hits = quant::top_k_across(sources, k, how)?;
        let episodes = hits.iter().map(|&(source, hit)| {
            u64::from(source) << 32
                | u64::from(sources[source as usize].0.episode_of(hit.index as usize))
        });
        Ok((episodes.collect(), hits))
    })?;
    let mut per_source = vec![Vec::new(); sources.len()];
    for (source, hit) in found {
        per_source[source as usize].push(hit);
    }
    Ok(per_source)
}

/// The hits of `search(k)` for the first `k` (from [`CANDIDATES_PER_EPISODE`] items per
/// episode, four times more each round) whose hits cover `episodes` episodes, or of every
/// one of the `all` items. `search` returns the episode of each hit beside the hits.
fn covering<H>(
    all: usize,
    episodes: usize,
    mut search: impl FnMut(usize) -> crate::Result<(HashSet<u64>, Vec<H>)>,
) -> crate::Result<Vec<H>> {
    let mut k = episodes.saturating_mul(CANDIDATES_PER_EPISODE).max(1);
    loop {
        let (covered, hits) = search(k.min(all.max(1)))?;
        if covered.len() >= episodes || k >= all {
            return Ok(hits);
        }
        k = k.saturating_mul(4);
    }
}

/// Items asked for per episode wanted, at first, by a quantized search: episodes hold a few
/// items each, and the best items often share an episode.
const CANDIDATES_PER_EPISODE: usize = 8;
