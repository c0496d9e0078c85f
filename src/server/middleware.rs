//! The layers around the routes, each built here from the settings; [`router`](super::router)
//! applies them in the order documented there.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::error::ApiError;
use super::routes::search::SEARCH_MODE_HEADER;
use super::{AppState, Settings};

/// CORS for the front end, which calls from another origin: the configured origins (any
/// when none is), the API's methods and headers, and the search-mode header exposed.
pub fn cors(settings: &Settings) -> CorsLayer {
    let origins = if settings.cors_origins.is_empty() {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            settings
                .cors_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-auth-token"),
        ])
        .expose_headers([HeaderName::from_static(SEARCH_MODE_HEADER)])
}

/// The answer of the load-shedding layer when every request slot is taken.
pub async fn overloaded(_: tower::BoxError) -> ApiError {
    ApiError::Overloaded
}

/// Reads the whole request body, within the body deadline and size cap, before the request
/// takes one of the limited request slots: a client that stalls its body ties up only its own
/// connection (closed by the deadline), never the server's capacity.
pub async fn buffer_body(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let limit = state.settings.max_body_bytes;
    let read = axum::body::to_bytes(body, limit);
    let bytes = match tokio::time::timeout(state.settings.body_timeout, read).await {
        Err(_) => return ApiError::BodyTimeout.into_response(),
        Ok(Err(_)) => return ApiError::BodyTooLarge { limit }.into_response(),
        Ok(Ok(bytes)) => bytes,
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
