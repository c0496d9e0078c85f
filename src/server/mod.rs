//! `podmap serve`: the original server's HTTP API over memory-mapped archives.
//!
//! Layers, outermost first: tracing (every request), CORS (the front end calls from another
//! origin, and preflights must pass even under load), load shedding over a concurrency limit
//! (overload answers 503 at once instead of queueing), then the routes. Handlers take one snapshot of the catalog
//! and run CPU work (scans, excerpts) on the blocking pool, never on the async workers.

pub mod api;
pub mod catalog;
pub mod chat;
pub mod config;
pub mod embeddings;
mod handlers;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use axum::error_handling::HandleErrorLayer;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::routing::{get, post};
use axum::Router;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

pub use catalog::{Catalog, Podcast};
pub use config::{Settings, SettingsArgs};

use chat::ChatClient;
use embeddings::{ClientLimits, Embedder, RetryPolicy};

/// Where the podcasts come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Archives in an index directory, reloaded when they change.
    Mmap(PathBuf),
    /// The original JSON files under a data root, parsed at start-up (the baseline).
    Json(PathBuf),
}

/// What every handler shares.
pub struct AppState {
    pub catalog: Arc<ArcSwap<Catalog>>,
    pub settings: Settings,
    pub embedder: Option<Embedder>,
    pub chat: Option<ChatClient>,
}

impl AppState {
    /// State for `settings`, with clients for whichever upstream APIs are configured.
    pub fn new(catalog: Catalog, settings: Settings) -> Self {
        let embedder = settings.embedding_base_url.as_deref().map(|url| {
            Embedder::new(
                url,
                settings.embedding_api_key.clone(),
                ClientLimits::default(),
                RetryPolicy::default(),
            )
        });
        let chat = settings
            .llm_base_url
            .as_deref()
            .map(|url| ChatClient::new(url, settings.llm_api_key.clone(), &settings.llm_model));
        AppState {
            catalog: Arc::new(ArcSwap::from_pointee(catalog)),
            settings,
            embedder,
            chat,
        }
    }
}

/// The API's routes with their middleware.
pub fn router(state: Arc<AppState>) -> Router {
    let origins = if state.settings.cors_origins.is_empty() {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            state
                .settings
                .cors_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    let cors = CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-auth-token"),
        ])
        .expose_headers([HeaderName::from_static(handlers::SEARCH_MODE_HEADER)]);
    // Overload answers 503 at once rather than queueing without bound (load shedding in
    // front of one concurrency limit shared by all routes).
    let limit = tower::ServiceBuilder::new()
        .layer(HandleErrorLayer::new(handlers::overloaded))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(
            state.settings.max_in_flight,
        ));
    Router::new()
        .route("/api/health", get(handlers::health))
        .route("/api/podcasts", get(handlers::podcasts))
        .route("/api/speakers", get(handlers::speakers))
        .route("/api/episodes/search", post(handlers::search))
        .route("/api/episodes/latest", post(handlers::latest))
        .route("/api/chat", post(handlers::chat))
        .route("/api/analytics/track", post(handlers::analytics))
        .route(
            "/api/analytics/track-episode-play",
            post(handlers::analytics),
        )
        .route("/api/analytics/stats", get(handlers::analytics))
        .route("/api/analytics/test-data", get(handlers::analytics))
        .fallback(handlers::not_found)
        .with_state(state)
        .layer(limit)
        .layer(cors)
        .layer(TraceLayer::new_for_http())
}

/// Loads the podcasts, binds and serves until Ctrl-C or SIGTERM.
pub async fn serve(source: Source, settings: Settings) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let catalog = match &source {
        Source::Mmap(dir) => catalog::load_mmap(dir)
            .with_context(|| format!("cannot open the index directory {}", dir.display()))?,
        Source::Json(root) => {
            let root = root.clone();
            tokio::task::spawn_blocking(move || Catalog::load_json(&root)).await??
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
    let listen = settings.listen;
    let state = Arc::new(AppState::new(catalog, settings));
    warn_about_models(&state);
    if let Source::Mmap(dir) = source {
        tokio::spawn(catalog::watch(dir, state.catalog.clone()));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        "podmap serving {} podcast(s) on http://{} (ready in {} ms)",
        state.catalog.load().podcasts.len(),
        listener.local_addr()?,
        started.elapsed().as_millis()
    );
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown())
        .await?;
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
