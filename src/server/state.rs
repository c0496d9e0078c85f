//! What every handler shares: the published catalog, the settings, and clients for whichever
//! upstream APIs (embeddings, LLM) are configured.

use super::site::Site;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::analytics::Analytics;
use super::catalog::Catalog;
use super::chat::ChatClient;
use super::embeddings::{ClientLimits, Embedder, RetryPolicy};
use super::shared::Redis;
use super::upstream::{self, Guard, GuardConfig};
use super::Settings;

/// What every handler shares.
pub struct AppState {
    pub catalog: Arc<ArcSwap<Catalog>>,
    pub settings: Settings,
    pub embedder: Option<Embedder>,
    pub chat: Option<ChatClient>,
    /// State shared with the other replicas, with `REDIS_URL`.
    pub redis: Option<Redis>,
    /// Off until [`AppState::with_analytics`] gives it a store.
    pub analytics: Analytics,
    /// The web front end served beside the API (`--static`), once checked.
    pub site: Option<Site>,
}

impl AppState {
    /// State for `settings`, with clients for whichever upstream APIs are configured.
    /// With `REDIS_URL`, must be called within a tokio runtime (the Redis connection manager
    /// is made here; it connects on first use).
    pub fn new(catalog: Catalog, settings: Settings) -> Self {
        let redis = settings.redis.clone().and_then(|redis| {
            Redis::new(redis)
                .inspect_err(|e| tracing::warn!("Redis is not used: {e}"))
                .ok()
        });
        let embedder = settings.embedding_base_url.as_deref().map(|url| {
            Embedder::new(
                url,
                settings.embedding_api_key.clone(),
                ClientLimits::default(),
                RetryPolicy::default(),
            )
            .with_guard(Guard::new(
                upstream::EMBEDDINGS,
                GuardConfig::new(settings.embedding_max_concurrency, settings.breaker),
            ))
            .with_shared(redis.clone())
        });
        let chat = settings.llm_base_url.as_deref().map(|url| {
            ChatClient::new(url, settings.llm_api_key.clone(), &settings.llm_model).with_guard(
                Guard::new(
                    upstream::LLM,
                    GuardConfig::new(settings.llm_max_concurrency, settings.breaker),
                ),
            )
        });
        AppState {
            catalog: Arc::new(ArcSwap::from_pointee(catalog)),
            settings,
            embedder,
            chat,
            redis,
            analytics: Analytics::off(),
            site: None,
        }
    }

    /// The same state serving `site` beside the API.
    pub fn with_site(self, site: Option<Site>) -> Self {
        AppState { site, ..self }
    }

    /// The same state with `analytics` taking the analytics routes' events.
    pub fn with_analytics(self, analytics: Analytics) -> Self {
        AppState { analytics, ..self }
    }
}
