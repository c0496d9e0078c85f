//! The layers around the routes, each built here from the settings; [`router`](super::router)
//! applies them in the order documented there.

use axum::http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::error::ApiError;
use super::routes::search::SEARCH_MODE_HEADER;
use super::Settings;

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
