//! The request bodies of the analytics routes, snake_case as the original reads them, and
//! the synthetic rows of `test-data`.

use serde::{Deserialize, Serialize};

use super::event::{bounded, MAX_PATH_BYTES, MAX_USER_AGENT_BYTES};

/// `POST /api/analytics/track`.
#[derive(Debug, Clone, Deserialize)]
pub struct TrackIn {
    pub path: String,
    #[serde(default)]
    pub route_name: Option<String>,
    #[serde(default)]
    pub podcast: Option<String>,
    #[serde(default)]
    pub episode: Option<String>,
    #[serde(default)]
    pub referrer: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
}

/// `POST /api/analytics/track-episode-play`.
#[derive(Debug, Clone, Deserialize)]
pub struct PlayIn {
    pub podcast: String,
    pub episode: String,
    #[serde(default)]
    pub user_agent: Option<String>,
}

/// `GET /api/analytics/stats?days=N`.
#[derive(Debug, Clone, Deserialize)]
pub struct StatsQuery {
    pub days: Option<u32>,
}

/// `GET /api/analytics/test-data?count=N`.
#[derive(Debug, Clone, Deserialize)]
pub struct TestDataQuery {
    pub count: Option<u32>,
}

/// The answer of `test-data`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestDataOut {
    pub success: bool,
    pub message: String,
    pub count: u32,
}

/// Rows `test-data` writes by default, and at most.
pub const TEST_DATA_DEFAULT: u32 = 100;
pub const TEST_DATA_MAX: u32 = 10_000;

/// The user agent stored: the body's, else the header's, else `unknown`; bounded.
pub fn user_agent(body: Option<String>, header: Option<&str>) -> String {
    let ua = body
        .filter(|s| !s.is_empty())
        .or_else(|| header.map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    bounded(ua, MAX_USER_AGENT_BYTES)
}

/// A free-text field as stored: bounded like a path.
pub fn text(value: String) -> String {
    bounded(value, MAX_PATH_BYTES)
}

/// Cities of the synthetic page views, as the original's test data has them.
pub const TEST_CITIES: &[&str] = &[
    "Berlin",
    "Hamburg",
    "München",
    "Köln",
    "Frankfurt am Main",
    "Stuttgart",
    "Düsseldorf",
    "Leipzig",
    "Dresden",
    "Bremen",
];
/// Routes of the synthetic page views.
pub const TEST_ROUTES: &[(&str, &str)] = &[
    ("/", "home"),
    ("/episode-search", "episode-search"),
    ("/chat", "chat"),
    ("/speakers", "speakers"),
    ("/latest", "latest"),
];
