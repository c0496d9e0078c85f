//! `POST /api/chat`: the original's retrieval-augmented answer. Checks the token, picks the
//! voice from the speakers named, retrieves hits (semantic when possible), builds the context
//! (see [`context`](crate::server::context)) and answers in one JSON body or as server-sent
//! events (`sources`, `delta` pieces, `done`).
//!
//! When the LLM fails (502) or is not called (503: its breaker is open or every slot is
//! taken), the answer is the JSON error **with the sources found**, `{"error", "sources"}`, so
//! the front end can still show them. Retrieval degrades as search does: without an embedding
//! in time it is lexical.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;

use super::{podcast, query_text, Shared};
use crate::input::library::valid_slug;
use crate::search::{Filter, Hit};
use crate::server::api::{ChatOut, ChatRequest, SourceOut};
use crate::server::auth::require_token;
use crate::server::catalog::{Podcast, SpeakerInfo};
use crate::server::chat::{self, Voice};
use crate::server::context::{self, Lines};
use crate::server::error::ApiError;
use crate::server::extract::ApiJson;
use crate::server::plan::{embedding_deadline, mode};
use crate::server::AppState;

pub async fn chat(
    State(state): Shared,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    require_token(&headers, state.settings.auth_token.as_deref())?;
    let question = query_text(&req.query)?;
    let Some(client) = state.chat.clone() else {
        return Err(ApiError::ChatNotConfigured);
    };
    let podcast = podcast(&state, req.podcast_id.as_deref())?;
    let first = resolve(podcast.as_ref(), req.speaker_slug.as_deref());
    let second = resolve(podcast.as_ref(), req.speaker_slug2.as_deref());
    let voice = voice(first.as_ref(), second.as_ref());
    let lines = match (&first, &second) {
        (Some(a), Some(b)) => Lines::Two(a.speaker.clone(), b.speaker.clone()),
        (Some(a), None) => Lines::One(a.speaker.clone()),
        (None, _) => Lines::All,
    };
    let top_k = req.top_k.unwrap_or(state.settings.top_k).clamp(1, 20);
    let named = first.is_some() || second.is_some();
    let search_k = if named { top_k * 3 } else { top_k };
    let hits = retrieve(&state, &podcast, &question, search_k).await?;

    let sources = tokio::task::spawn_blocking(move || {
        context::sources(podcast.as_ref(), &hits, &lines, top_k)
    })
    .await
    .map_err(ApiError::internal)??;
    let context = context::context(&sources, state.settings.max_context_chars);
    let (system, user) = chat::messages(&state.settings.prompts, &voice, &question, &context);
    let sources: Vec<SourceOut> = sources.into_iter().map(|s| s.out).collect();

    if !req.stream {
        return Ok(match client.answer(&system, &user).await {
            Ok(answer) => Json(ChatOut { answer, sources }).into_response(),
            Err(e) => unanswered(e.into(), sources),
        });
    }
    let pieces = match client.answer_stream(&system, &user).await {
        Ok(pieces) => pieces,
        Err(e) => return Ok(unanswered(e.into(), sources)),
    };
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

/// The LLM gave no answer: the error's status and message, with the sources that were found
/// (in the shape of a successful answer's).
fn unanswered(error: ApiError, sources: Vec<SourceOut>) -> Response {
    let status = error.status();
    if status.is_server_error() && status != axum::http::StatusCode::INTERNAL_SERVER_ERROR {
        let body = serde_json::json!({ "error": error.to_string(), "sources": sources });
        return (status, Json(body)).into_response();
    }
    error.into_response()
}

/// The speaker a slug names, looked up by exact slug in the podcast's speaker index, as the
/// original looked it up in `speakers/index.json`. A slug that names no one (unknown, stale,
/// empty, or one that could only be a path, which no index row can hold) resolves to nobody
/// and is ignored, as the original ignored it; so is an index that cannot be read. The slug
/// is never used as a path.
fn resolve(podcast: &dyn Podcast, slug: Option<&str>) -> Option<SpeakerInfo> {
    let slug = slug.filter(|slug| valid_slug(slug))?;
    podcast.speaker(slug).unwrap_or_else(|e| {
        tracing::warn!(podcast = podcast.id(), "speaker index unreadable: {e}");
        None
    })
}

/// Who answers, as in the original: a discussion when both speakers resolved and have
/// profiles, a persona when the first speaker has a profile, else the neutral assistant
/// (the second speaker's profile alone gives no persona).
fn voice(first: Option<&SpeakerInfo>, second: Option<&SpeakerInfo>) -> Voice {
    let profiled = |s: Option<&SpeakerInfo>| Some((s?.speaker.clone(), s?.profile.clone()?));
    match (profiled(first), profiled(second)) {
        (Some(first), Some(second)) => Voice::Discussion { first, second },
        (Some((name, profile)), None) => Voice::Persona { name, profile },
        (None, _) => Voice::Neutral,
    }
}

/// The top `k` hits for the chat: semantic when possible, else (also when the query's
/// embedding cannot be had in time) lexical.
async fn retrieve(
    state: &AppState,
    podcast: &Arc<dyn Podcast>,
    query: &str,
    k: usize,
) -> Result<Vec<Hit>, ApiError> {
    let mode = mode(state, podcast, query, embedding_deadline(state)).await?;
    if let Some(why) = mode.degraded() {
        why.count();
    }
    let embedding = mode.embedding();
    let (podcast, query) = (podcast.clone(), query.to_owned());
    let how = state.settings.search_mode;
    let hits = tokio::task::spawn_blocking(move || {
        let index = podcast.index();
        match embedding {
            Some(v) => index.search_vector_in(&v, k, &Filter::all(), how),
            None => index.search_text(&query, k, &Filter::all()),
        }
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(hits)
}
