//! Request and response bodies of the HTTP API, field for field as the original server has
//! them (camelCase bodies, `podcast_id` in the speakers query, `null` vs omitted as it does).

use serde::{Deserialize, Serialize};

/// Longest `query` of a search or chat, in characters (not bytes), after trimming: far above
/// any question a person types, and refused with 400 before it costs an embeddings call, an
/// LLM call or a scan.
pub const MAX_QUERY_CHARS: usize = 2_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    pub query: String,
    #[serde(default)]
    pub podcast_id: Option<String>,
    #[serde(default)]
    pub cross_podcast: Option<bool>,
    #[serde(default)]
    pub top_k: Option<usize>,
    #[serde(default)]
    pub offset: Option<usize>,
    #[serde(default)]
    pub limit: Option<usize>,
    /// `exact`, `int8` or `binary`: how the vector search scans (the server's setting when
    /// absent).
    #[serde(default)]
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatestRequest {
    #[serde(default)]
    pub podcast_id: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub offset: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatRequest {
    pub query: String,
    #[serde(default)]
    pub top_k: Option<usize>,
    #[serde(default)]
    pub podcast_id: Option<String>,
    #[serde(default)]
    pub speaker_slug: Option<String>,
    #[serde(default)]
    pub speaker_slug2: Option<String>,
    /// Answer as server-sent events instead of one JSON body (podmap's addition).
    #[serde(default)]
    pub stream: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SpeakersQuery {
    pub podcast_id: Option<String>,
}

/// One episode of `/api/episodes/search` and `/api/episodes/latest`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EpisodeOut {
    pub episode_number: u32,
    pub podcast_id: String,
    pub title: String,
    pub date: Option<String>,
    pub duration_sec: Option<u64>,
    pub speakers: Vec<String>,
    pub description: Option<String>,
    pub score: f32,
    pub topics: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub positions_sec: Vec<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub position_scores: Vec<f32>,
    pub has_image: bool,
    pub has_transcript: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EpisodesOut {
    pub episodes: Vec<EpisodeOut>,
    pub has_more: bool,
    pub total: usize,
    /// How a search was answered: `semantic`, `lexical` (no embeddings endpoint, or a podcast
    /// without usable embeddings) or `mixed` (cross-podcast, some of each). Absent on
    /// `/api/episodes/latest`. Also sent as the `x-podmap-search-mode` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_mode: Option<&'static str>,
}

/// One source of a chat answer; optional fields are `null`, never omitted.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceOut {
    pub episode_number: u32,
    pub episode_title: Option<String>,
    pub start_sec: f64,
    pub end_sec: f64,
    pub start_hms: Option<String>,
    pub end_hms: Option<String>,
    pub score: f32,
    pub topic: Option<String>,
    pub subject_coarse: Option<String>,
    pub subject_fine: Option<String>,
    pub excerpt: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatOut {
    pub answer: String,
    pub sources: Vec<SourceOut>,
}

/// One row of `/api/speakers`: `episodes` of the index is dropped, `image` omitted when absent.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpeakerOut {
    pub speaker: String,
    pub slug: String,
    pub episodes_count: u64,
    pub utterances_count: u64,
    pub total_words: u64,
    pub has_profile: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpeakersOut {
    pub speakers: Vec<SpeakerOut>,
}

/// One row of `/api/podcasts` (podmap's addition).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodcastOut {
    pub id: String,
    pub items: usize,
    pub embedded_items: usize,
    pub embedding_model: Option<String>,
    pub dimensions: usize,
    /// Whether searches of this podcast are semantic with the configured embeddings.
    pub semantic: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodcastsOut {
    pub podcasts: Vec<PodcastOut>,
}
