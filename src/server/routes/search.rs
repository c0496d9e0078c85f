//! `POST /api/episodes/search`: one podcast or all of them, each searched semantically or
//! lexically (see [`plan`](crate::server::plan)), ranked into episodes by
//! [`search::rank_episodes_fused`], a page of them with their metadata.
//!
//! Vector searches scan as the request's `mode` says (`exact`, `int8`, `binary`; an unknown
//! one is answered 400), else as the server's `SEARCH_MODE`; see [`score`].
//!
//! When the query embedding cannot be had in time (the embeddings API down, failing, busy, or
//! its breaker open), the search is answered lexically within the wait, and says so
//! (`searchMode` and the `x-podmap-search-mode` header). A cross-podcast search whose podcasts
//! were searched in different modes (`mixed`) ranks by reciprocal-rank fusion
//! ([`search::fusion`]), since lexical counts and cosines are not on one scale.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{episode_out, podcast, query_text, Shared};
use crate::search::{self, Fusion, SearchMode};
use crate::server::api::{EpisodeOut, EpisodesOut, SearchRequest};
use crate::server::catalog::Podcast;
use crate::server::error::ApiError;
use crate::server::extract::ApiJson;
use crate::server::plan::{embedding_deadline, mode, score, Plan};

/// The response header saying how a search was answered (`semantic`, `lexical`, `mixed`).
pub const SEARCH_MODE_HEADER: &str = "x-podmap-search-mode";

pub async fn search(
    State(state): Shared,
    ApiJson(req): ApiJson<SearchRequest>,
) -> Result<Response, ApiError> {
    let query = query_text(&req.query)?;
    let page_size = req.limit.or(req.top_k).unwrap_or(10).clamp(1, 50);
    let offset = req.offset.unwrap_or(0);
    let cross = req.cross_podcast.unwrap_or(false);
    let how: SearchMode = match req.mode.as_deref() {
        None => state.settings.search_mode,
        Some(name) => name
            .parse()
            .map_err(|_| ApiError::BadRequest("unknown mode: expected exact, int8 or binary"))?,
    };
    let podcasts: Vec<Arc<dyn Podcast>> = if cross {
        state.catalog.load().podcasts.values().cloned().collect()
    } else {
        vec![podcast(&state, req.podcast_id.as_deref())?]
    };
    if podcasts.is_empty() {
        return Err(ApiError::BadRequest("no podcasts are loaded"));
    }
    let mut plans = Vec::with_capacity(podcasts.len());
    let mut degraded = None;
    // One wait for the whole request, however many podcasts it searches.
    let deadline = embedding_deadline(&state);
    for podcast in podcasts {
        match mode(&state, &podcast, &query, deadline).await {
            Ok(mode) => {
                degraded = degraded.or(mode.degraded());
                plans.push((podcast, mode.embedding()));
            }
            Err(e) if cross => {
                tracing::warn!(
                    podcast = podcast.id(),
                    "left out of a cross-podcast search: {e}"
                );
            }
            Err(e) => return Err(e),
        }
    }
    let semantic = plans.iter().filter(|(_, e)| e.is_some()).count();
    let mode = match (semantic, plans.len() - semantic) {
        (_, 0) => "semantic",
        (0, _) => "lexical",
        _ => "mixed",
    };
    if let Some(why) = degraded {
        why.count();
    }
    let fusion = match mode {
        "mixed" => Fusion::reciprocal_rank(),
        _ => Fusion::Scores,
    };
    let (episodes, total) =
        tokio::task::spawn_blocking(move || rank(&plans, fusion, &query, how, offset, page_size))
            .await
            .map_err(ApiError::internal)??;
    let body = EpisodesOut {
        episodes,
        has_more: offset.saturating_add(page_size) < total,
        total,
        search_mode: Some(mode),
    };
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(SEARCH_MODE_HEADER, HeaderValue::from_static(mode));
    Ok(response)
}

/// The `total` a full scan would give, when the podcasts searched by vector were scored in
/// a quantized mode (only their best candidates): each of those counts every episode that
/// has an embedded item, as the exact mode's hits do, instead of the episodes among its
/// candidates. Grouping keeps the podcasts apart, so the counts add up.
fn full_total(scored: &[search::Scored], plans: &[Plan], total: usize) -> usize {
    scored
        .iter()
        .zip(plans)
        .filter(|(_, (_, embedding))| embedding.is_some())
        .fold(total, |total, (list, _)| {
            let mut among: Vec<u32> = list
                .hits
                .iter()
                .map(|h| list.index.episode_of(h.index as usize))
                .collect();
            among.sort_unstable();
            among.dedup();
            total - among.len() + list.index.episodes_with_embeddings()
        })
}

/// Scores every planned podcast, asks [`search::rank_episodes_fused`] for the page, and adds
/// each episode's metadata.
fn rank(
    plans: &[Plan],
    fusion: Fusion,
    query: &str,
    how: SearchMode,
    offset: usize,
    page_size: usize,
) -> crate::Result<(Vec<EpisodeOut>, usize)> {
    let episodes = offset.saturating_add(page_size).saturating_add(1);
    let scored = plans
        .iter()
        .map(|(podcast, embedding)| {
            let embedding = embedding.as_deref().map(Vec::as_slice);
            Ok(search::Scored {
                index: podcast.index(),
                hits: score(podcast.as_ref(), embedding, query, how, episodes)?,
            })
        })
        .collect::<crate::Result<Vec<_>>>()?;
    let mut page = search::rank_episodes_fused(&scored, fusion, offset, page_size)?;
    if how != SearchMode::Exact {
        page.total = full_total(&scored, plans, page.total);
    }
    let mut episodes = Vec::with_capacity(page.episodes.len());
    for ranked in page.episodes {
        let podcast = &plans[ranked.source].0;
        let info = podcast.episode(ranked.episode)?;
        let mut out = episode_out(podcast.id(), info, ranked.episode, ranked.score);
        (out.positions_sec, out.position_scores) = ranked.positions.into_iter().unzip();
        episodes.push(out);
    }
    Ok((episodes, page.total))
}
