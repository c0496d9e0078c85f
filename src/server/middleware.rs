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
    super::metrics::shed();
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

/// Request ids for `x-request-id` when the client (or a proxy) sent none: a per-process start
/// stamp and a counter, unique enough to find one request in the logs of a few replicas.
#[derive(Clone)]
pub struct RequestIds {
    prefix: u32,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for RequestIds {
    fn default() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        RequestIds {
            prefix: (now.as_nanos() as u32) ^ std::process::id().rotate_left(16),
            next: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        }
    }
}

impl tower_http::request_id::MakeRequestId for RequestIds {
    fn make_request_id<B>(
        &mut self,
        _: &axum::http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{:08x}-{n:x}", self.prefix);
        HeaderValue::from_str(&id)
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

/// The span every request is logged in: method, path, matched route (`unmatched` when none)
/// and request id, so that an error logged by a handler can be found from the `x-request-id`
/// the client got. The request's INFO line adds its status and latency.
pub fn span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or(super::metrics::http::UNMATCHED, |m| m.as_str());
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        route = %route,
        request_id = %id,
    )
}

/// A handler that panicked answers 500 with the API's JSON error; the panic is logged (in the
/// request's span, with its id), never sent to the client.
pub fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!("handler panicked: {what}");
    super::metrics::panicked();
    ApiError::Panicked.into_response()
}

/// The layers every response passes, outermost first: a request id (taken from the request
/// or made), the request log, the id echoed on the response, panics turned into 500 JSON,
/// compression of bodies over 1 KiB (gzip, brotli or zstd by `Accept-Encoding`; never
/// server-sent events or images), and CORS.
pub fn service_layers(router: axum::Router, settings: &Settings) -> axum::Router {
    use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
    use tower_http::compression::CompressionLayer;
    use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
    use tower_http::trace::{DefaultOnResponse, TraceLayer};
    let compress = SizeAbove::new(1024)
        .and(NotForContentType::SSE)
        .and(NotForContentType::IMAGES);
    router
        .layer(cors(settings))
        .layer(CompressionLayer::new().compress_when(compress))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(span)
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::x_request_id(RequestIds::default()))
}
