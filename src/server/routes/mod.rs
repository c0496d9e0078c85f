//! The route handlers, one file per route family, and what they share: the catalog lookup of
//! the podcast a request names, and episode metadata as the API returns it.
//!
//! Podcast ids and speaker slugs are looked up in the loaded archives, never joined into file
//! paths. Every error is an [`ApiError`]: a JSON body `{"error": "…"}` with the original's
//! status code where it had one.

pub mod analytics;
pub mod chat;
pub mod latest;
pub mod podcasts;
pub mod search;
pub mod speakers;

use std::sync::Arc;

use axum::extract::State;

use super::api::{EpisodeOut, MAX_QUERY_CHARS};
use super::catalog::{EpisodeInfo, Podcast};
use super::error::ApiError;
use super::AppState;

/// The state every handler takes.
type Shared = State<Arc<AppState>>;

/// Longest podcast id or slug worth looking up.
const MAX_ID_LEN: usize = 200;

/// The podcast a request names, or the default: `freakshow` as in the original when it is
/// served, else the only podcast served.
fn podcast(state: &AppState, id: Option<&str>) -> Result<Arc<dyn Podcast>, ApiError> {
    let catalog = state.catalog.load();
    let id = match id.map(str::trim) {
        Some(id) => id,
        None if catalog.podcasts.contains_key("freakshow") => "freakshow",
        None if catalog.podcasts.len() == 1 => catalog.podcasts.keys().next().expect("one"),
        None => return Err(ApiError::BadRequest("podcastId is required")),
    };
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(ApiError::BadRequest(
            "podcastId must be 1 to 200 bytes long",
        ));
    }
    catalog
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::UnknownPodcast(ApiError::shown(id)))
}

/// The query of a search or chat, trimmed: 400 when it is empty or longer than
/// [`MAX_QUERY_CHARS`] characters, checked before anything is looked up or called.
fn query_text(raw: &str) -> Result<String, ApiError> {
    let query = raw.trim();
    if query.is_empty() {
        return Err(ApiError::BadRequest("query must not be empty"));
    }
    if query.chars().nth(MAX_QUERY_CHARS).is_some() {
        return Err(ApiError::QueryTooLong {
            limit: MAX_QUERY_CHARS,
        });
    }
    Ok(query.to_owned())
}

/// An episode as the API lists it; an episode without metadata is "Episode <n>".
fn episode_out(podcast: &str, info: Option<EpisodeInfo>, number: u32, score: f32) -> EpisodeOut {
    let info = info.unwrap_or(EpisodeInfo {
        number,
        ..EpisodeInfo::default()
    });
    EpisodeOut {
        episode_number: number,
        podcast_id: podcast.to_owned(),
        title: info
            .title
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| format!("Episode {number}")),
        date: info.date,
        duration_sec: info.duration_sec,
        speakers: info.speakers,
        description: info.description,
        score,
        topics: info.topics,
        positions_sec: Vec::new(),
        position_scores: Vec::new(),
        has_image: info.has_image,
        has_transcript: info.has_transcript,
    }
}
