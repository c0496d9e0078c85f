//! `POST /api/episodes/latest`: a podcast's episodes with metadata, highest number first.

use axum::extract::State;
use axum::Json;

use super::{episode_out, podcast, Shared};
use crate::server::api::{EpisodesOut, LatestRequest};
use crate::server::error::ApiError;
use crate::server::extract::ApiJson;

pub async fn latest(
    State(state): Shared,
    ApiJson(req): ApiJson<LatestRequest>,
) -> Result<Json<EpisodesOut>, ApiError> {
    let podcast = podcast(&state, req.podcast_id.as_deref())?;
    let limit = req.limit.unwrap_or(10).clamp(1, 50);
    let offset = req.offset.unwrap_or(0);
    let (page, total) = podcast.latest(offset, limit)?;
    let episodes = page
        .into_iter()
        .map(|e| {
            let number = e.number;
            episode_out(podcast.id(), Some(e), number, 1.0)
        })
        .collect();
    Ok(Json(EpisodesOut {
        episodes,
        has_more: offset.saturating_add(limit) < total,
        total,
        search_mode: None,
    }))
}
