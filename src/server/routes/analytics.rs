//! The four analytics routes of the original. The track routes queue their event and answer
//! `{"success":true}` at once (also when analytics is off); stats and test-data need the
//! stats token, and test-data, which writes rows, is refused unless a token is configured.

use axum::http::{header, HeaderMap};
use axum::Json;
use serde_json::{json, Value};

use super::Shared;
use crate::server::analytics::api::{
    PlayIn, StatsQuery, TestDataOut, TestDataQuery, TrackIn, TEST_DATA_DEFAULT, TEST_DATA_MAX,
};
use crate::server::analytics::{chain, Stats};
use crate::server::auth::require_token;
use crate::server::client::ClientAddr;
use crate::server::error::ApiError;
use crate::server::extract::{ApiJson, ApiQuery};

fn success() -> Json<Value> {
    Json(json!({ "success": true }))
}

fn header_ua(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
}

/// `POST /api/analytics/track`.
pub async fn track(
    state: Shared,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TrackIn>,
) -> Json<Value> {
    state.analytics.page_view(client, header_ua(&headers), body);
    success()
}

/// `POST /api/analytics/track-episode-play`.
pub async fn track_episode_play(
    state: Shared,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PlayIn>,
) -> Json<Value> {
    state.analytics.play(client, header_ua(&headers), body);
    success()
}

/// `GET /api/analytics/stats?days=N`.
pub async fn stats(
    state: Shared,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StatsQuery>,
) -> Result<Json<Stats>, ApiError> {
    require_token(&headers, state.settings.stats_auth_token.as_deref())?;
    let days = query.days.map(|d| d.min(36_500));
    match state.analytics.stats(days).await {
        None => Err(ApiError::Analytics),
        Some(Ok(stats)) => Ok(Json(Stats::clone(&stats))),
        Some(Err(e)) => Err(ApiError::internal(format!(
            "analytics stats: {}",
            chain(&*e)
        ))),
    }
}

/// `GET /api/analytics/test-data?count=N` (default 100, at most 10 000).
pub async fn test_data(
    state: Shared,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<TestDataQuery>,
) -> Result<Json<TestDataOut>, ApiError> {
    // Unlike the original, a server without a stats token does not let anyone write rows.
    let token = state.settings.stats_auth_token.as_deref();
    if token.is_none() {
        return Err(ApiError::Forbidden);
    }
    require_token(&headers, token)?;
    let count = query.count.unwrap_or(TEST_DATA_DEFAULT).min(TEST_DATA_MAX);
    match state.analytics.test_data(count).await {
        None => Err(ApiError::Analytics),
        Some(Ok(())) => Ok(Json(TestDataOut {
            success: true,
            message: format!("Inserted {count} test page views"),
            count,
        })),
        Some(Err(e)) => Err(ApiError::internal(format!(
            "analytics test data: {}",
            chain(&e)
        ))),
    }
}
