//! `GET /api/speakers?podcast_id=…`: the podcast's speaker index. A podcast that is not
//! served (unknown id, or no `podcast_id` and no default podcast) has no speakers: an empty
//! list, as the original answered when `podcasts/<id>/speakers/index.json` did not exist. No
//! file is touched for it.

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
    let podcast = match podcast(&state, query.podcast_id.as_deref()) {
        Ok(podcast) => podcast,
        Err(ApiError::UnknownPodcast(_) | ApiError::BadRequest(_)) => {
            return Ok(Json(SpeakersOut {
                speakers: Vec::new(),
            }))
        }
        Err(e) => return Err(e),
    };
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
