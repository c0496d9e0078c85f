//! `GET /api/speakers?podcast_id=…`: the podcast's speaker index.

use axum::extract::State;
use axum::Json;

use super::{podcast, Shared};
use crate::server::api::{SpeakerOut, SpeakersOut, SpeakersQuery};
use crate::server::error::ApiError;
use crate::server::extract::ApiQuery;

pub async fn speakers(
    State(state): Shared,
    ApiQuery(query): ApiQuery<SpeakersQuery>,
) -> Result<Json<SpeakersOut>, ApiError> {
    let podcast = podcast(&state, query.podcast_id.as_deref())?;
    let speakers = podcast
        .speakers()
        .map_err(ApiError::Speakers)?
        .into_iter()
        .map(|s| SpeakerOut {
            speaker: s.speaker,
            slug: s.slug,
            episodes_count: s.episodes_count,
            utterances_count: s.utterances_count,
            total_words: s.total_words,
            has_profile: s.has_profile,
            image: s.image,
        })
        .collect();
    Ok(Json(SpeakersOut { speakers }))
}
