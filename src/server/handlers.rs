//! The route handlers.
//!
//! Podcast ids and speaker slugs are looked up in the loaded archives, never joined into file
//! paths. Every error is a JSON body `{"error": "…"}` with the original's status code where it
//! had one.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use rayon::prelude::*;
use subtle::ConstantTimeEq;

use super::api::*;
use super::catalog::{EpisodeInfo, Podcast};
use super::chat::{self, Voice};
use super::AppState;
use crate::input::library::valid_slug;
use crate::search::{self, Filter, Hit};
use crate::transcript::{format_hms, Window};

pub const SEARCH_MODE_HEADER: &str = "x-podmap-search-mode";

/// Longest podcast id or slug worth looking up.
const MAX_ID_LEN: usize = 200;

/// An error answer: a status and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!("{message}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        ApiError::internal(e)
    }
}

/// `Json<T>` whose rejections keep axum's status codes (415, 400, 422) but answer in JSON.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(ApiError::new(rejection.status(), rejection.body_text())),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::new(rejection.status(), rejection.body_text())
}

type Shared = State<Arc<AppState>>;

pub async fn health() -> &'static str {
    "ok"
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

/// The answer when every request slot is taken.
pub async fn overloaded(_: tower::BoxError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is busy; try again shortly",
    )
}

pub async fn analytics() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "analytics is not served by podmap",
    )
}

/// The podcast a request names, or the default: `freakshow` as in the original when it is
/// served, else the only podcast served.
fn podcast(state: &AppState, id: Option<&str>) -> Result<Arc<dyn Podcast>, ApiError> {
    let catalog = state.catalog.load();
    let id = match id.map(str::trim) {
        Some(id) => id,
        None if catalog.podcasts.contains_key("freakshow") => "freakshow",
        None if catalog.podcasts.len() == 1 => catalog.podcasts.keys().next().expect("one"),
        None => return Err(ApiError::bad_request("podcastId is required")),
    };
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(ApiError::bad_request(
            "podcastId must be 1 to 200 bytes long",
        ));
    }
    catalog.get(id).cloned().ok_or_else(|| {
        let shown: String = id.chars().take(64).collect();
        ApiError::new(StatusCode::NOT_FOUND, format!("unknown podcast: {shown:?}"))
    })
}

pub async fn podcasts(State(state): Shared) -> Json<PodcastsOut> {
    let catalog = state.catalog.load();
    let podcasts = catalog
        .podcasts
        .values()
        .map(|p| {
            let index = p.index();
            PodcastOut {
                id: p.id().to_owned(),
                items: index.len(),
                embedded_items: index.embedded_count(),
                embedding_model: index.model().map(str::to_owned),
                dimensions: index.dims(),
                semantic: semantic_model(&state, p.as_ref()).is_some(),
            }
        })
        .collect();
    Json(PodcastsOut { podcasts })
}

pub async fn speakers(
    State(state): Shared,
    query: Result<Query<SpeakersQuery>, QueryRejection>,
) -> Result<Json<SpeakersOut>, ApiError> {
    let Query(query) = query.map_err(query_rejection)?;
    let podcast = podcast(&state, query.podcast_id.as_deref())?;
    let speakers = podcast
        .speakers()
        .map_err(|e| ApiError::internal(format!("Failed to load speakers: {e}")))?
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
        has_more: offset + limit < total,
        total,
        search_mode: None,
    }))
}

/// The embedding model to query for `podcast`, when semantic search is possible: an
/// embeddings endpoint is configured, the podcast has embeddings, and the configured model
/// (if any) is the one its archive was built with.
fn semantic_model(state: &AppState, podcast: &dyn Podcast) -> Option<String> {
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

/// The query's embedding for `podcast`, when its search is semantic (see [`semantic_model`]).
async fn embedding_for(
    state: &AppState,
    podcast: &Arc<dyn Podcast>,
    query: &str,
) -> Result<Option<Arc<Vec<f32>>>, ApiError> {
    let Some(model) = semantic_model(state, podcast.as_ref()) else {
        return Ok(None);
    };
    let embedder = state.embedder.as_ref().expect("checked by semantic_model");
    let v = embedder
        .embed_query(&model, query)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()))?;
    let dims = podcast.index().dims();
    if v.len() != dims {
        embedder.forget(&model, query).await;
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "the embedding model {model} returns {} dimensions, the index of {} has {dims}",
                v.len(),
                podcast.id()
            ),
        ));
    }
    Ok(Some(v))
}

/// Every scored item of a podcast, best first: by cosine with `embedding`, or lexically.
fn score(podcast: &dyn Podcast, embedding: Option<&[f32]>, query: &str) -> crate::Result<Vec<Hit>> {
    let index = podcast.index();
    match embedding {
        Some(v) => podcast.score_all(v),
        None => index.search_text(query, index.len(), &Filter::all()),
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
    tokio::task::spawn_blocking(move || {
        let index = podcast.index();
        match embedding {
            Some(v) => index.search_vector(&v, k, &Filter::all()),
            None => index.search_text(&query, k, &Filter::all()),
        }
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::from)
}

/// A podcast to search, with the query's embedding when its search is semantic.
type Plan = (Arc<dyn Podcast>, Option<Arc<Vec<f32>>>);

/// Scores every podcast (semantically when it has the query's embedding, else lexically),
/// asks [`search::rank_episodes`] for the page, and adds each episode's metadata.
fn rank_episodes(
    plans: &[Plan],
    query: &str,
    offset: usize,
    page_size: usize,
) -> Result<(Vec<EpisodeOut>, usize), ApiError> {
    let scored = plans
        .iter()
        .map(|(podcast, embedding)| {
            let hits = score(
                podcast.as_ref(),
                embedding.as_deref().map(Vec::as_slice),
                query,
            )?;
            Ok(search::Scored {
                index: podcast.index(),
                hits,
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

pub async fn search(
    State(state): Shared,
    ApiJson(req): ApiJson<SearchRequest>,
) -> Result<Response, ApiError> {
    let query = req.query.trim().to_owned();
    if query.is_empty() {
        return Err(ApiError::bad_request("query must not be empty"));
    }
    let page_size = req.limit.or(req.top_k).unwrap_or(10).clamp(1, 50);
    let offset = req.offset.unwrap_or(0);
    let cross = req.cross_podcast.unwrap_or(false);
    let podcasts: Vec<Arc<dyn Podcast>> = if cross {
        state.catalog.load().podcasts.values().cloned().collect()
    } else {
        vec![podcast(&state, req.podcast_id.as_deref())?]
    };
    if podcasts.is_empty() {
        return Err(ApiError::bad_request("no podcasts are loaded"));
    }
    let mut plans = Vec::with_capacity(podcasts.len());
    for podcast in podcasts {
        match embedding_for(&state, &podcast, &query).await {
            Ok(embedding) => plans.push((podcast, embedding)),
            Err(e) if cross => {
                tracing::warn!(
                    podcast = podcast.id(),
                    "left out of a cross-podcast search: {}",
                    e.message
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
        tokio::task::spawn_blocking(move || rank_episodes(&plans, &query, offset, page_size))
            .await
            .map_err(ApiError::internal)??;
    let body = EpisodesOut {
        episodes,
        has_more: offset + page_size < total,
        total,
        search_mode: Some(mode),
    };
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(SEARCH_MODE_HEADER, HeaderValue::from_static(mode));
    Ok(response)
}

/// Whether the request carries the token (`x-auth-token`, or `Authorization: Bearer`),
/// compared in constant time. No token configured: open, as in the original.
fn authorized(headers: &HeaderMap, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .or_else(|| {
            headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim)
        })
        .unwrap_or("");
    given.len() == token.len() && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

/// A source and the context block it contributes.
struct Source {
    out: SourceOut,
    block: String,
}

pub async fn chat(
    State(state): Shared,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    if !authorized(&headers, state.settings.auth_token.as_deref()) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "permission denied"));
    }
    let question = req.query.trim().to_owned();
    if question.is_empty() {
        return Err(ApiError::bad_request("query must not be empty"));
    }
    let Some(client) = state.chat.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "chat is not configured: set LLM_BASE_URL (and LLM_API_KEY)",
        ));
    };
    let podcast = podcast(&state, req.podcast_id.as_deref())?;
    let mut people = Vec::new();
    for slug in [&req.speaker_slug, &req.speaker_slug2]
        .into_iter()
        .flatten()
    {
        let slug = slug.trim();
        if !valid_slug(slug) {
            return Err(ApiError::bad_request("speakerSlug is not a valid slug"));
        }
        let speaker = podcast.speaker(slug)?.ok_or_else(|| {
            let shown: String = slug.chars().take(64).collect();
            ApiError::new(StatusCode::NOT_FOUND, format!("unknown speaker: {shown:?}"))
        })?;
        people.push(speaker);
    }
    let voice = match people.as_slice() {
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
    };
    let top_k = req.top_k.unwrap_or(state.settings.top_k).clamp(1, 20);
    let search_k = if people.is_empty() { top_k } else { top_k * 3 };
    let hits = retrieve(&state, &podcast, &question, search_k).await?;

    let max_context = state.settings.max_context_chars;
    let voice_for_sources = voice.clone();
    let sources = tokio::task::spawn_blocking(move || {
        build_sources(podcast.as_ref(), &hits, &voice_for_sources, top_k)
    })
    .await
    .map_err(ApiError::internal)??;
    let mut context = sources
        .iter()
        .map(|s| s.block.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    if context.len() > max_context {
        let mut cut = max_context;
        while !context.is_char_boundary(cut) {
            cut -= 1;
        }
        context.truncate(cut);
        context.push_str("\n\n[context truncated]\n");
    }
    let (system, user) = chat::messages(&voice, &question, &context);
    let sources: Vec<SourceOut> = sources.into_iter().map(|s| s.out).collect();

    if !req.stream {
        let answer = client
            .answer(&system, &user)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()))?;
        return Ok(Json(ChatOut { answer, sources }).into_response());
    }
    let pieces = client
        .answer_stream(&system, &user)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()))?;
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

/// Sources for the chat context, by the original's rules, excerpts cut concurrently. A hit
/// without transcript lines in its window falls back to its own summary in neutral mode; a
/// transcript that cannot be read counts as having none, it does not fail the answer.
fn build_sources(
    podcast: &dyn Podcast,
    hits: &[Hit],
    voice: &Voice,
    top_k: usize,
) -> Result<Vec<Source>, ApiError> {
    let index = podcast.index();
    let excerpt = |episode: u32, window: Window| {
        podcast.excerpt(episode, &window).unwrap_or_else(|e| {
            tracing::warn!(
                podcast = podcast.id(),
                episode,
                "transcript unreadable: {e}"
            );
            crate::transcript::placeholder(&window)
        })
    };
    let is_placeholder = |text: &str| text.starts_with("[no transcript entries found in window");
    let prepared: Vec<Option<Source>> = hits
        .par_iter()
        .map(|hit| -> Result<Option<Source>, crate::Error> {
            let item = index.item(hit.index as usize)?;
            fn window(start: f64, end: f64, speaker: Option<&str>, max_chars: usize) -> Window<'_> {
                Window {
                    start,
                    end,
                    speaker,
                    max_chars,
                }
            }
            let (start, end) = (item.start_sec, item.end_sec);
            let text = match voice {
                Voice::Neutral => {
                    let text = excerpt(item.episode_number, window(start, end, None, 4000));
                    match item.summary.filter(|s| !s.trim().is_empty()) {
                        Some(summary) if is_placeholder(&text) => {
                            format!("[summary] {}", summary.trim())
                        }
                        _ => text,
                    }
                }
                Voice::Persona { name, .. } => {
                    let text = excerpt(item.episode_number, window(start, end, Some(name), 4000));
                    if is_placeholder(&text) {
                        return Ok(None);
                    }
                    text
                }
                Voice::Discussion { first, second } => {
                    let a = excerpt(
                        item.episode_number,
                        window(start, end, Some(&first.0), 2200),
                    );
                    let b = excerpt(
                        item.episode_number,
                        window(start, end, Some(&second.0), 2200),
                    );
                    if is_placeholder(&a) && is_placeholder(&b) {
                        return Ok(None);
                    }
                    format!("{}:\n{a}\n\n{}:\n{b}", first.0, second.0)
                }
            };
            let start_hms = item.start_hms.map(str::to_owned);
            let end_hms = item.end_hms.map(str::to_owned);
            let blank = |s: Option<&str>| s.filter(|s| !s.trim().is_empty()).map(str::to_owned);
            let topic = blank(item.topic);
            let block = format!(
                "SOURCE: Episode {} ({} - {}){}\n{text}\n",
                item.episode_number,
                start_hms
                    .clone()
                    .unwrap_or_else(|| format_hms(item.start_sec)),
                end_hms.clone().unwrap_or_else(|| format_hms(item.end_sec)),
                topic
                    .as_ref()
                    .map(|t| format!(" | Topic: {t}"))
                    .unwrap_or_default()
            );
            Ok(Some(Source {
                out: SourceOut {
                    episode_number: item.episode_number,
                    episode_title: blank(item.episode_title),
                    start_sec: item.start_sec,
                    end_sec: item.end_sec,
                    start_hms,
                    end_hms,
                    score: hit.score,
                    topic,
                    subject_coarse: item.subject_coarse.map(str::to_owned),
                    subject_fine: item.subject_fine.map(str::to_owned),
                    excerpt: text,
                },
                block,
            }))
        })
        .collect::<Result<_, _>>()?;
    Ok(prepared.into_iter().flatten().take(top_k).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_either_header_in_constant_time() {
        let mut headers = HeaderMap::new();
        assert!(authorized(&headers, None));
        assert!(!authorized(&headers, Some("s3cret")));
        headers.insert("authorization", HeaderValue::from_static("Bearer s3cret"));
        assert!(authorized(&headers, Some("s3cret")));
        headers.insert("x-auth-token", HeaderValue::from_static("wrong!"));
        assert!(
            !authorized(&headers, Some("s3cret")),
            "x-auth-token is preferred"
        );
        headers.insert("x-auth-token", HeaderValue::from_static(" s3cret "));
        assert!(authorized(&headers, Some("s3cret")));
    }
}
