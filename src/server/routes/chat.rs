//! `POST /api/chat`: the original's retrieval-augmented answer. Checks the token, picks the
//! voice from the speakers named, retrieves hits (semantic when possible), builds the context
//! (see [`context`](crate::server::context)) and answers in one JSON body or as server-sent
//! events (`sources`, `delta` pieces, `done`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;

use super::{podcast, Shared};
use crate::input::library::valid_slug;
use crate::search::{Filter, Hit};
use crate::server::api::{ChatOut, ChatRequest, SourceOut};
use crate::server::auth::require_token;
use crate::server::catalog::{Podcast, SpeakerInfo};
use crate::server::chat::{self, Voice};
use crate::server::context;
use crate::server::error::ApiError;
use crate::server::extract::ApiJson;
use crate::server::plan::embedding_for;
use crate::server::AppState;

pub async fn chat(
    State(state): Shared,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    require_token(&headers, state.settings.auth_token.as_deref())?;
    let question = req.query.trim().to_owned();
    if question.is_empty() {
        return Err(ApiError::BadRequest("query must not be empty"));
    }
    let Some(client) = state.chat.clone() else {
        return Err(ApiError::ChatNotConfigured);
    };
    let podcast = podcast(&state, req.podcast_id.as_deref())?;
    let mut people = Vec::new();
    for slug in [&req.speaker_slug, &req.speaker_slug2]
        .into_iter()
        .flatten()
    {
        let slug = slug.trim();
        if !valid_slug(slug) {
            return Err(ApiError::BadRequest("speakerSlug is not a valid slug"));
        }
        let speaker = podcast
            .speaker(slug)?
            .ok_or_else(|| ApiError::UnknownSpeaker(ApiError::shown(slug)))?;
        people.push(speaker);
    }
    let voice = voice(&people);
    let top_k = req.top_k.unwrap_or(state.settings.top_k).clamp(1, 20);
    let search_k = if people.is_empty() { top_k } else { top_k * 3 };
    let hits = retrieve(&state, &podcast, &question, search_k).await?;

    let voice_for_sources = voice.clone();
    let sources = tokio::task::spawn_blocking(move || {
        context::sources(podcast.as_ref(), &hits, &voice_for_sources, top_k)
    })
    .await
    .map_err(ApiError::internal)??;
    let context = context::context(&sources, state.settings.max_context_chars);
    let (system, user) = chat::messages(&voice, &question, &context);
    let sources: Vec<SourceOut> = sources.into_iter().map(|s| s.out).collect();

    if !req.stream {
        let answer = client.answer(&system, &user).await?;
        return Ok(Json(ChatOut { answer, sources }).into_response());
    }
    let pieces = client.answer_stream(&system, &user).await?;
    let first = Event::default()
        .event("sources")
        .json_data(&sources)
        .map_err(ApiError::internal)?;
    let deltas = pieces.map(|piece| {
        Ok::<_, std::convert::Infallible>(match piece {
            Ok(text) => Event::default()
                .event("delta")
                .json_data(serde_json::json!({ "content": text }))
                .unwrap_or_default(),
            Err(e) => Event::default()
                .event("error")
                .json_data(serde_json::json!({ "error": e.to_string() }))
                .unwrap_or_default(),
        })
    });
    let stream = futures_util::stream::once(async { Ok(first) })
        .chain(deltas)
        .chain(futures_util::stream::once(async {
            Ok(Event::default().event("done").data("{}"))
        }));
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Who answers: a discussion when both speakers named have profiles, a persona when one
/// does, else the neutral assistant.
fn voice(people: &[SpeakerInfo]) -> Voice {
    match people {
        [a, b] if a.profile.is_some() && b.profile.is_some() => Voice::Discussion {
            first: (a.speaker.clone(), a.profile.clone().unwrap_or_default()),
            second: (b.speaker.clone(), b.profile.clone().unwrap_or_default()),
        },
        [a, ..] if a.profile.is_some() => Voice::Persona {
            name: a.speaker.clone(),
            profile: a.profile.clone().unwrap_or_default(),
        },
        [_, b] if b.profile.is_some() => Voice::Persona {
            name: b.speaker.clone(),
            profile: b.profile.clone().unwrap_or_default(),
        },
        _ => Voice::Neutral,
    }
}

/// The top `k` hits for the chat: semantic when possible, else lexical.
async fn retrieve(
    state: &AppState,
    podcast: &Arc<dyn Podcast>,
    query: &str,
    k: usize,
) -> Result<Vec<Hit>, ApiError> {
    let embedding = embedding_for(state, podcast, query).await?;
    let (podcast, query) = (podcast.clone(), query.to_owned());
    let hits = tokio::task::spawn_blocking(move || {
        let index = podcast.index();
        match embedding {
            Some(v) => index.search_vector(&v, k, &Filter::all()),
            None => index.search_text(&query, k, &Filter::all()),
        }
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(hits)
}
