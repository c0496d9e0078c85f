//! State shared between replicas through Redis (`REDIS_URL`): the second level of the
//! query-embedding cache ([`cache`]) and the global rate limits ([`limits`]).
//!
//! Redis is an optimisation, never a dependency of an answer. Every call is bounded by
//! `--redis-timeout-ms` (50 ms by default) and passes a circuit breaker of its own
//! ([`Breaker`], labelled `redis`); a call that fails, times out or is refused by the open
//! breaker returns `None`, and the caller does what a replica without Redis does: the local
//! cache, the local (per-replica) limits. Nothing waits for Redis to come back: the breaker
//! lets one probe through after its cool-down, the connection manager reconnects by itself,
//! and the first probe that succeeds closes the breaker, so sharing resumes without a restart.
//!
//! | module | holds |
//! |---|---|
//! | [`cache`] | query embeddings as little-endian `f32` bytes, with a TTL |
//! | [`limits`] | one GCRA check per request, atomic in one Lua script |
//!
//! Metrics: `podmap_redis_errors_total{op}`, `podmap_redis_skipped_total{op}`, `podmap_redis_up`,
//! `podmap_upstream_breaker_state{upstream="redis"}` and the shared cache's
//! `podmap_cache_{hits,misses}_total{cache="query_embeddings_shared"}` (docs/METRICS.md).

pub mod cache;
pub mod limits;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::breaker::{Breaker, BreakerConfig};

/// The breaker's label in `podmap_upstream_breaker_state`.
pub const REDIS: &str = "redis";

/// Default bound of one Redis call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
/// Default lifetime of a shared query embedding: a week, long enough that popular queries stay
/// shared, short enough that a model change is forgotten within days.
pub const DEFAULT_EMBEDDING_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default prefix of every key podmap writes.
pub const DEFAULT_KEY_PREFIX: &str = "podmap:";

/// Failures in a row that open the Redis breaker: a few, since each costs a request at most
/// one timeout.
const BREAKER_FAILURES: u32 = 3;
/// How long an open Redis breaker skips Redis before one probe: short, so that sharing
/// resumes soon after Redis is back; skipped calls cost nothing meanwhile.
const BREAKER_COOL_DOWN: Duration = Duration::from_secs(1);

/// The operations counted in `podmap_redis_errors_total{op}` and `podmap_redis_skipped_total{op}`.
pub const OPS: [&str; 4] = [
    cache::OP_GET,
    cache::OP_SET,
    cache::OP_DEL,
    limits::OP_CHECK,
];

/// Where Redis is and how podmap uses it. `Debug` (in `config::redact`) hides the URL's password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://[:password@]host[:port][/db]` (or `rediss://`, `unix://`).
    pub url: String,
    /// Prepended to every key, so replicas of one deployment share keys and others do not.
    pub key_prefix: String,
    /// Bound of one call (connecting included).
    pub timeout: Duration,
    /// Lifetime of a shared query embedding.
    pub embedding_ttl: Duration,
}

impl RedisSettings {
    /// The settings for `url`, everything else at its default.
    pub fn new(url: impl Into<String>) -> Self {
        RedisSettings {
            url: url.into(),
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            embedding_ttl: DEFAULT_EMBEDDING_TTL,
        }
    }
}

/// A `REDIS_URL` the client refuses.
#[derive(Debug, thiserror::Error)]
#[error("not a Redis URL: {0}")]
pub struct InvalidRedisUrl(#[source] pub redis::RedisError);

/// Checks a Redis URL without connecting.
pub fn check_url(url: &str) -> Result<(), InvalidRedisUrl> {
    redis::Client::open(url).map(drop).map_err(InvalidRedisUrl)
}

/// One replica's handle on Redis: a lazily connected, self-reconnecting connection, its
/// bound and its breaker. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    connection: ConnectionManager,
    settings: RedisSettings,
    breaker: Arc<Breaker>,
}

impl Redis {
    /// A handle for `settings`. Connects on first use, not here, so a replica starts (and
    /// answers) while Redis is away. Must be called within a tokio runtime.
    pub fn new(settings: RedisSettings) -> Result<Redis, InvalidRedisUrl> {
        let client = redis::Client::open(settings.url.as_str()).map_err(InvalidRedisUrl)?;
        // One attempt per (re)connection: the breaker, not the client, decides when to try
        // again, and no request waits for a retry.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(0);
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(InvalidRedisUrl)?;
        let breaker = Breaker::new(
            REDIS,
            BreakerConfig {
                failures: BREAKER_FAILURES,
                cool_down: BREAKER_COOL_DOWN,
            },
        );
        Ok(Redis {
            inner: Arc::new(Inner {
                connection,
                settings,
                breaker,
            }),
        })
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.inner.settings
    }

    /// `prefix` + `rest`: every key podmap uses.
    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.inner.settings.key_prefix)
    }

    /// Runs `call` on the connection within the timeout and through the breaker. `None`:
    /// skipped (breaker open), failed or timed out, counted under `op`; the caller falls back.
    pub async fn run<T, F, Fut>(&self, op: &'static str, call: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let Ok(ticket) = self.inner.breaker.try_call() else {
            metrics::counter!("podmap_redis_skipped_total", "op" => op).increment(1);
            return None;
        };
        let connection = self.inner.connection.clone();
        let outcome = tokio::time::timeout(self.inner.settings.timeout, call(connection)).await;
        let error = match outcome {
            Ok(Ok(value)) => {
                ticket.record(false);
                metrics::gauge!("podmap_redis_up").set(1.0);
                return Some(value);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", self.inner.settings.timeout),
        };
        ticket.record(true);
        metrics::gauge!("podmap_redis_up").set(0.0);
        metrics::counter!("podmap_redis_errors_total", "op" => op).increment(1);
        tracing::debug!(op, "redis call failed, answering from local state: {error}");
        None
    }
}

/// HELP texts, and every series at zero (with or without `REDIS_URL`), so dashboards and
/// alerts have them before the first event. Called by the metrics recorder's setup.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "podmap_redis_errors_total",
        "Redis calls that failed or timed out, by operation (the replica used local state)"
    );
    metrics::describe_counter!(
        "podmap_redis_skipped_total",
        "Redis calls not made because the Redis breaker was open, by operation"
    );
    metrics::describe_gauge!(
        "podmap_redis_up",
        "1 when the last Redis call succeeded; 0 when it failed, before the first call, or without REDIS_URL"
    );
    metrics::gauge!("podmap_redis_up").set(0.0);
    for op in OPS {
        metrics::counter!("podmap_redis_errors_total", "op" => op).increment(0);
        metrics::counter!("podmap_redis_skipped_total", "op" => op).increment(0);
    }
    // Not `register_cache`, which installs the recorder: this runs while it is installed.
    metrics::counter!("podmap_cache_hits_total", "cache" => cache::SHARED_CACHE).increment(0);
    metrics::counter!("podmap_cache_misses_total", "cache" => cache::SHARED_CACHE).increment(0);
}
