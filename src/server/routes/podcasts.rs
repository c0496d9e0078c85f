//! The routes that are not about one podcast's content: the list of podcasts served, the
//! health check, and the fallbacks (unknown routes, wrong methods).

use axum::extract::State;
use axum::Json;

use super::Shared;
use crate::server::api::{PodcastOut, PodcastsOut};
use crate::server::error::ApiError;
use crate::server::plan::semantic_model;

/// `GET /api/health`.
pub async fn health() -> &'static str {
    "ok"
}

/// `GET /api/ready` (podmap's addition, for load balancers): 200 once every archive served has
/// been read whole and checked, 503 while some are still being verified in the background
/// (they answer meanwhile). `withdrawn` counts archives withdrawn for failing verification.
pub async fn ready(State(state): Shared) -> axum::response::Response {
    use axum::response::IntoResponse;
    let catalog = state.catalog.load();
    let verifying = catalog.unverified();
    let status = if verifying.is_empty() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "ready": verifying.is_empty(),
        "podcasts": catalog.podcasts.len(),
        "verifying": verifying,
        "withdrawn": catalog.withdrawn,
    });
    (status, Json(body)).into_response()
}

/// `GET /api/podcasts` (podmap's addition): each podcast served, its size and embeddings,
/// and whether its searches are semantic. Reads only what was copied out at open, never the
/// mapping.
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

/// Any route not listed.
pub async fn not_found() -> ApiError {
    ApiError::NoRoute
}

/// A route asked with a method it does not serve: axum's 405 (with `Allow`) as JSON.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
