//! `POST /api/episodes/search`: one podcast or all of them, each searched semantically or
//! lexically (see [`plan`](crate::server::plan)), ranked into episodes by
//! [`search::rank_episodes`], a page of them with their metadata.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{episode_out, podcast, query_text, Shared};
use crate::search;
use crate::server::api::{EpisodeOut, EpisodesOut, SearchRequest};
use crate::server::catalog::Podcast;
use crate::server::error::ApiError;
use crate::server::extract::ApiJson;
use crate::server::plan::{embedding_for, score, Plan};

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
    let podcasts: Vec<Arc<dyn Podcast>> = if cross {
        state.catalog.load().podcasts.values().cloned().collect()
    } else {
        vec![podcast(&state, req.podcast_id.as_deref())?]
    };
    if podcasts.is_empty() {
        return Err(ApiError::BadRequest("no podcasts are loaded"));
    }
    let mut plans = Vec::with_capacity(podcasts.len());
    for podcast in podcasts {
        match embedding_for(&state, &podcast, &query).await {
            Ok(embedding) => plans.push((podcast, embedding)),
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
    let (episodes, total) =
        tokio::task::spawn_blocking(move || rank(&plans, &query, offset, page_size))
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

/// Scores every planned podcast, asks [`search::rank_episodes`] for the page, and adds each
/// episode's metadata.
fn rank(
    plans: &[Plan],
    query: &str,
    offset: usize,
    page_size: usize,
) -> crate::Result<(Vec<EpisodeOut>, usize)> {
    let scored = plans
        .iter()
        .map(|(podcast, embedding)| {
            let embedding = embedding.as_deref().map(Vec::as_slice);
            Ok(search::Scored {
                index: podcast.index(),
                hits: score(podcast.as_ref(), embedding, query)?,
            })
        })
        .collect::<crate::Result<Vec<_>>>()?;
    let page = search::rank_episodes(&scored, offset, page_size)?;
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
