//! `podmap serve`: the original server's HTTP API over memory-mapped archives.
//!
//! | module | holds |
//! |---|---|
//! | [`catalog`] | the podcasts served (mmap archives or the original JSON) and their hot reload |
//! | `routes` | one file per route family: podcasts, speakers, latest, search, chat, analytics |
//! | [`analytics`] | the analytics queue, its writer and its store (SQLite or PostgreSQL) |
//! | `plan` | whether a podcast is searched semantically, and the query's embedding |
//! | `context` | the chat's sources and the context text its prompt carries |
//! | [`api`] | request and response bodies, field for field as the original has them |
//! | [`error`] | [`ApiError`]: each kind of failure, its status and its message |
//! | `extract` | `Json` and `Query` extractors whose rejections answer like other errors |
//! | `auth` | the chat token |
//! | `middleware` | CORS, the overload answer, reading bodies before admission |
//! | [`client`] | who the client is: the peer, or the address trusted proxies name |
//! | [`limits`] | per-client rate limits per route class (429 with `Retry-After`) |
//! | [`deadline`] | per-route deadlines answered as 504 JSON |
//! | [`admission`] | the settings of those three |
//! | [`metrics`] | Prometheus metrics: the recorder, `GET /metrics`, the request metrics layer |
//! | [`listener`] | the accept loop: header and idle timeouts, the connection cap |
//! | [`embeddings`], [`chat`] | clients of the OpenAI-compatible upstream APIs |
//! | [`upstream`], [`breaker`] | what guards those calls: a circuit breaker and a bound on calls in flight per API |
//! | [`shared`] | state shared between replicas through Redis: embeddings, global rate limits |
//! | [`config`] | settings from flags, environment and the original's config file |
//! | [`prompts`] | the chat's prompt templates: built in, or from a file |
//! | [`site`] | `--static`: the web front end's files and the podcasts' static files |
//! | `state` | [`AppState`], what every handler shares |
//!
//! Layers, outermost first, as [`router`] applies them:
//!
//! 0. **metrics**: every request is counted once by its matched route, method and status,
//!    including those refused by the layers below (the layer runs after routing, so it sees
//!    the route template: `Router::layer` wraps each route in axum 0.8).
//! 1. **trace**: every request, including those refused by the layers below, is logged.
//! 2. **CORS**: the front end calls from another origin; preflights are answered here, before
//!    the limit, so they pass even under load.
//! 3. **`/api/health`, `/api/ready` and `/metrics`**, answered here, outside every limit
//!    below: liveness, readiness and monitoring must answer under overload and whoever asks.
//! 4. **client identity** ([`client::identify`]): the peer, or behind a trusted proxy the
//!    address it names, stored for the layers and handlers below.
//! 5. **rate limits** per client and route class ([`limits`]): 429 with `Retry-After` before
//!    the body is read or a slot is taken, so a client over its quota costs next to nothing.
//! 6. **the body, read whole** within a deadline (408) and a size cap (413) before the request
//!    is admitted, so a stalled body never holds a request slot.
//! 7. **load shedding over one concurrency limit** shared by all routes: overload answers 503
//!    at once instead of queueing without bound.
//! 8. **per-route deadlines** ([`deadline`]): 504 JSON when a route's answer has not started in
//!    time; inside the slot, so the clock counts only the route's own work.
//! 9. **the routes**. Handlers take one snapshot of the catalog and run CPU work (scans,
//!    excerpts) on the blocking pool, never on the async workers. A route asked with the wrong
//!    method answers 405 JSON with `Allow`.

pub mod admission;
pub mod analytics;
pub mod api;
mod auth;
pub mod breaker;
pub mod catalog;
pub mod chat;
pub mod client;
pub mod config;
mod context;
pub mod deadline;
pub mod embeddings;
pub mod error;
mod extract;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod middleware;
mod plan;
pub mod prompts;
mod routes;
pub mod shared;
pub mod site;
mod state;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::error_handling::HandleErrorLayer;
use axum::routing::{get, post};
use axum::Router;
use tower::limit::GlobalConcurrencyLimitLayer;

pub use catalog::{Catalog, Podcast};
pub use config::{ConfigError, LogFormat, Settings, SettingsArgs};
pub use error::ApiError;
pub use state::AppState;

use routes::{analytics as track, latest, podcasts, search, speakers};

/// Where the podcasts come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Archives in an index directory, reloaded when they change.
    Mmap(PathBuf),
    /// The original JSON files under a data root, parsed at start-up (the baseline).
    Json(PathBuf),
}

/// The API's routes with their middleware (see the module docs for the layer order).
pub fn router(state: Arc<AppState>) -> Router {
    // Installed before the first request: counts made without a recorder are lost.
    metrics::handle();
    let limit = tower::ServiceBuilder::new()
        .layer(HandleErrorLayer::new(middleware::overloaded))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(
            state.settings.max_in_flight,
        ));
    let bodies = axum::middleware::from_fn_with_state(state.clone(), middleware::buffer_body);
    let admission = &state.settings.admission;
    let rate_limits = axum::middleware::from_fn_with_state(
        limits::Limiters::with_shared(&admission.rate_limits, state.redis.clone()),
        limits::rate_limit,
    );
    let identify = axum::middleware::from_fn_with_state(
        Arc::new(admission.trusted_proxies.clone()),
        client::identify,
    );
    let api = api_routes(&state, Some(admission.timeouts))
        .layer(limit)
        .layer(bodies)
        .layer(rate_limits)
        .layer(identify);
    let settings = state.settings.clone();
    let mut routes = open_routes(state.clone()).merge(api);
    if let Some(site) = &state.site {
        // Beside the API's limits, not under them (see `site`).
        routes = routes.merge(site.clone().routes());
    }
    // Outermost, so that it counts what every layer inside refuses.
    middleware::service_layers(routes, &settings).layer(axum::middleware::from_fn(metrics::track))
}

/// The API's routes and their handlers without any layer: no deadlines, limits, shedding,
/// CORS, tracing or metrics. [`router`] is these routes with their layers; the serve benchmark
/// answers from both to measure what the layers cost.
pub fn routes(state: Arc<AppState>) -> Router {
    open_routes(state.clone()).merge(api_routes(&state, None))
}

/// `/api/health`, `/api/ready` and `/metrics`: the routes answered outside every limit.
fn open_routes(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/health", get(podcasts::health))
        .route("/api/ready", get(podcasts::ready))
        .method_not_allowed_fallback(podcasts::method_not_allowed)
        .route("/metrics", get(metrics::scrape))
        .with_state(state)
}

/// The API's other routes, each under its deadline when `deadlines` are given.
fn api_routes(state: &Arc<AppState>, deadlines: Option<deadline::RouteTimeouts>) -> Router {
    let timed =
        |path, route, pick: fn(&deadline::RouteTimeouts) -> std::time::Duration| match &deadlines {
            Some(t) => deadline::with_deadline(route, path, pick(t)),
            None => route,
        };
    Router::new()
        .route(
            "/api/podcasts",
            timed("/api/podcasts", get(podcasts::podcasts), |t| t.short),
        )
        .route(
            "/api/speakers",
            timed("/api/speakers", get(speakers::speakers), |t| t.short),
        )
        .route(
            "/api/episodes/search",
            timed("/api/episodes/search", post(search::search), |t| t.search),
        )
        .route(
            "/api/episodes/latest",
            timed("/api/episodes/latest", post(latest::latest), |t| t.short),
        )
        .route(
            "/api/chat",
            timed("/api/chat", post(routes::chat::chat), |t| t.chat),
        )
        .route("/api/analytics/track", post(track::track))
        .route(
            "/api/analytics/track-episode-play",
            post(track::track_episode_play),
        )
        .route("/api/analytics/stats", get(track::stats))
        .route("/api/analytics/test-data", get(track::test_data))
        .fallback(podcasts::not_found)
        .method_not_allowed_fallback(podcasts::method_not_allowed)
        .with_state(state.clone())
}

/// Why the server could not start, or stopped: what it was doing, with what, and the
/// reason as the source.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the index directory {}", dir.display())]
    IndexDir {
        dir: PathBuf,
        #[source]
        source: crate::Error,
    },
    #[error("cannot load the podcasts of the data root {}", root.display())]
    DataRoot {
        root: PathBuf,
        #[source]
        source: crate::Error,
    },
    #[error("the task loading the podcasts failed")]
    Loading(#[source] tokio::task::JoinError),
    #[error("cannot start analytics")]
    Analytics(#[from] analytics::AnalyticsError),
    #[error("cannot serve the web front end")]
    Site(#[from] site::SiteError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Loads the podcasts, binds and serves until Ctrl-C or SIGTERM.
pub async fn serve(source: Source, settings: Settings) -> Result<(), ServeError> {
    let started = std::time::Instant::now();
    metrics::handle();
    if let Source::Mmap(_) = &source {
        // Before any archive is opened: archives are then leased, and a writer opening one
        // in place makes the kernel send SIGIO, which would otherwise end the process.
        if let Err(e) = catalog::guard_in_place_changes() {
            tracing::warn!("cannot listen for SIGIO, archives are not leased: {e}");
        }
    }
    let catalog = match &source {
        Source::Mmap(dir) => catalog::load_mmap_with(dir, settings.preload).map_err(|source| {
            ServeError::IndexDir {
                dir: dir.clone(),
                source,
            }
        })?,
        Source::Json(root) => {
            let root = root.clone();
            tokio::task::spawn_blocking(move || {
                Catalog::load_json(&root).map_err(|source| ServeError::DataRoot { root, source })
            })
            .await
            .map_err(ServeError::Loading)??
        }
    };
    if catalog.podcasts.is_empty() {
        tracing::warn!("no podcasts to serve yet; archives that appear will be picked up");
    }
    if settings.embedding_base_url.is_none() {
        tracing::warn!("no embeddings endpoint configured: searches are lexical");
    }
    if settings.llm_base_url.is_none() {
        tracing::warn!("no LLM endpoint configured: /api/chat answers 503");
    }
    match &settings.redis {
        Some(redis) => tracing::info!(
            url = config::redact::url(&redis.url),
            prefix = redis.key_prefix,
            "query embeddings and rate limits shared through Redis"
        ),
        None => tracing::info!("no REDIS_URL: caches and rate limits are this replica's own"),
    }
    let site = match &settings.static_dir {
        Some(dir) => {
            let site = site::Site::new(dir, settings.static_podcasts_dir.as_deref())?;
            tracing::info!(
                "serving the web front end from {} and /podcasts/ from {}",
                site.dir.display(),
                site.podcasts.display()
            );
            Some(site)
        }
        None => None,
    };
    let listen = settings.listen;
    let events = analytics::Analytics::open(&settings.analytics).await?;
    let state = Arc::new(
        AppState::new(catalog, settings)
            .with_analytics(events)
            .with_site(site),
    );
    warn_about_models(&state);
    tokio::spawn(metrics::upkeep());
    if let Source::Mmap(dir) = source {
        tokio::spawn(catalog::watch(dir, state.catalog.clone()));
    }
    let cannot_listen = |source| ServeError::Listen {
        addr: listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(cannot_listen)?;
    let bound = listener.local_addr().map_err(cannot_listen)?;
    tracing::info!(
        "podmap serving {} podcast(s) on http://{bound} (ready in {} ms)",
        state.catalog.load().podcasts.len(),
        started.elapsed().as_millis()
    );
    listener::serve_connections(
        listener,
        router(state.clone()),
        listener::ConnectionLimits::default(),
        shutdown(),
    )
    .await;
    // No request is answered any more: what the track routes accepted is written now.
    state.analytics.shutdown().await;
    Ok(())
}

/// Says at start-up which podcasts cannot be searched semantically with the configured
/// embedding model (they are searched lexically instead).
fn warn_about_models(state: &AppState) {
    let (Some(_), Some(configured)) = (&state.embedder, &state.settings.embedding_model) else {
        return;
    };
    for podcast in state.catalog.load().podcasts.values() {
        let index = podcast.index();
        match index.model() {
            Some(built) if built != configured && index.embedded_count() > 0 => tracing::warn!(
                podcast = podcast.id(),
                "archive was embedded with {built}, not EMBEDDING_MODEL={configured}: lexical search only"
            ),
            _ => {}
        }
    }
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
