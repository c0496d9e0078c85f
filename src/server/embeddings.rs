//! The OpenAI-compatible embeddings client, with retries and a cache of query embeddings.
//!
//! `POST {base}/embeddings` with `{"model", "input": [query]}`. Connect and request timeouts
//! are separate; 429, 5xx, timeouts and dropped connections are retried with exponential
//! backoff and jitter, bounded in attempts and in total time. Embeddings are cached by
//! (model, normalised query) in a byte-bounded moka cache, and concurrent requests for the same
//! query share one call, so paging through results or asking again costs no API call.
//! With `REDIS_URL`, Redis is the cache's second level ([`shared::cache`](super::shared::cache)):
//! a local miss asks Redis before the API, and an API answer is stored in both levels (the
//! Redis write in a task of its own, so the answer does not wait for it).
//!
//! Every attempt passes the upstream's [`Guard`]: its circuit breaker and its bound on calls in
//! flight (the idle-connection pool of [`ClientLimits`] bounds no calls). A refused attempt is
//! not retried: the breaker is open or the API is saturated, and waiting would only hold the
//! request. A 429's `Retry-After` is honoured as the least delay before the next attempt; one
//! longer than what is left of the retry budget ends the retries at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use serde::Deserialize;

use super::shared::Redis;
use super::upstream::{self, Guard, GuardConfig, Outcome, Refusal};

/// Why an embedding could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    #[error("embedding API error: {status} - {body}")]
    Status {
        status: u16,
        body: String,
        /// The answer's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    #[error("embedding API unreachable: {0}")]
    Transport(String),
    #[error("embedding API answered something else than embeddings: {0}")]
    Decode(String),
    #[error("embedding API gave up after {attempts} attempts in {elapsed_ms} ms: {last}")]
    Exhausted {
        attempts: u32,
        elapsed_ms: u128,
        last: Box<EmbedError>,
    },
    /// Not sent: the breaker is open or every slot is taken.
    #[error(transparent)]
    Refused(#[from] Refusal),
}

impl EmbedError {
    fn retryable(&self) -> bool {
        match self {
            EmbedError::Status { status, .. } => *status == 429 || *status >= 500,
            EmbedError::Transport(_) => true,
            EmbedError::Decode(_) | EmbedError::Exhausted { .. } | EmbedError::Refused(_) => false,
        }
    }

    /// The refusal behind this error, when the call was never sent.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            EmbedError::Refused(r) => Some(*r),
            _ => None,
        }
    }
}

/// Retry bounds.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No new attempt starts after this much time since the first.
    pub total_budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            total_budget: Duration::from_secs(10),
        }
    }
}

/// Timeouts and pool limits.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_idle_per_host: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            max_idle_per_host: 16,
        }
    }
}

/// Bytes the query-embedding cache may hold: at 3,072 dimensions about 5,000 queries.
pub const CACHE_BYTES: u64 = 64 << 20;

type Key = (String, String);

/// The embeddings client.
#[derive(Clone)]
pub struct Embedder {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
    retry: RetryPolicy,
    cache: Cache<Key, Arc<Vec<f32>>>,
    calls: Arc<AtomicU64>,
    guard: Guard,
    /// The second cache level, shared with the other replicas.
    shared: Option<Redis>,
}

#[derive(Deserialize)]
struct EmbeddingResponse {
    data: Vec<EmbeddingData>,
}

#[derive(Deserialize)]
struct EmbeddingData {
    embedding: Vec<f32>,
}

impl Embedder {
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        limits: ClientLimits,
        retry: RetryPolicy,
    ) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(limits.connect_timeout)
            .timeout(limits.request_timeout)
            .pool_max_idle_per_host(limits.max_idle_per_host)
            .build()
            .expect("a TLS backend is compiled in");
        let cache = Cache::builder()
            .max_capacity(CACHE_BYTES)
            .weigher(|key: &Key, value: &Arc<Vec<f32>>| {
                (key.0.len() + key.1.len() + value.len() * 4 + 64).min(u32::MAX as usize) as u32
            })
            .time_to_idle(Duration::from_secs(3600))
            .build();
        super::metrics::register_cache(super::metrics::QUERY_EMBEDDINGS_CACHE);
        Embedder {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            retry,
            cache,
            calls: Arc::new(AtomicU64::new(0)),
            guard: Guard::new(
                upstream::EMBEDDINGS,
                GuardConfig::new(16, Default::default()),
            ),
            shared: None,
        }
    }

    /// The same client behind `guard` (breaker and concurrency bound from the settings).
    pub fn with_guard(self, guard: Guard) -> Self {
        Embedder { guard, ..self }
    }

    /// The same client with `shared` as the cache's second level.
    pub fn with_shared(self, shared: Option<Redis>) -> Self {
        Embedder { shared, ..self }
    }

    /// The upstream's breaker and slots.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// API calls made so far (cache misses, retries included).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The query's embedding, from the cache or the API.
    /// A request that joins an identical call already under way counts as a cache hit: it
    /// costs no API call of its own.
    pub async fn embed_query(&self, model: &str, query: &str) -> Result<Arc<Vec<f32>>, EmbedError> {
        let key = (model.to_owned(), normalize_query(query));
        let fetched = AtomicBool::new(false);
        let result = self
            .cache
            .try_get_with(key.clone(), async {
                fetched.store(true, Ordering::Relaxed);
                self.second_level_or_fetch(&key.0, &key.1)
                    .await
                    .map(Arc::new)
            })
            .await
            .map_err(|e| (*e).clone());
        let hit = !fetched.load(Ordering::Relaxed);
        super::metrics::cache_lookup(super::metrics::QUERY_EMBEDDINGS_CACHE, hit);
        result
    }

    /// A local miss: Redis, else the API (and then Redis is told).
    async fn second_level_or_fetch(
        &self,
        model: &str,
        query: &str,
    ) -> Result<Vec<f32>, EmbedError> {
        let Some(redis) = &self.shared else {
            return self.fetch(model, query).await;
        };
        if let Some(vector) = redis.embedding(model, query).await {
            return Ok(vector);
        }
        let vector = self.fetch(model, query).await?;
        redis.store_embedding(model, query, &vector);
        Ok(vector)
    }

    /// Query embeddings held in the cache now (approximate: moka counts lazily).
    pub fn cached_entries(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Drops a cached embedding (one the caller found unusable, e.g. of the wrong dimension),
    /// so the next request asks the API again.
    pub async fn forget(&self, model: &str, query: &str) {
        let query = normalize_query(query);
        if let Some(redis) = &self.shared {
            redis.forget_embedding(model, &query);
        }
        self.cache.invalidate(&(model.to_owned(), query)).await;
    }

    async fn fetch(&self, model: &str, query: &str) -> Result<Vec<f32>, EmbedError> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.attempt(model, query).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let mut delay = backoff(&self.retry, attempt);
            if let EmbedError::Status {
                retry_after: Some(after),
                ..
            } = &error
            {
                delay = delay.max(*after);
            }
            let out_of_time = started.elapsed() + delay >= self.retry.total_budget;
            if !error.retryable() || attempt >= self.retry.max_attempts || out_of_time {
                if attempt == 1 || !error.retryable() {
                    return Err(error);
                }
                return Err(EmbedError::Exhausted {
                    attempts: attempt,
                    elapsed_ms: started.elapsed().as_millis(),
                    last: Box::new(error),
                });
            }
            tracing::warn!(attempt, ?delay, "embedding call failed, retrying: {error}");
            self.guard.retried();
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt through the guard, its outcome recorded.
    async fn attempt(&self, model: &str, query: &str) -> Result<Vec<f32>, EmbedError> {
        let call = self.guard.admit().await?;
        let result = self.call(model, query).await;
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(e) if e.retryable() => Outcome::Transient,
            Err(_) => Outcome::Rejected,
        };
        call.finish(outcome);
        result
    }

    async fn call(&self, model: &str, query: &str) -> Result<Vec<f32>, EmbedError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut request = self
            .client
            .post(format!("{}/embeddings", self.base_url))
            .json(&serde_json::json!({ "model": model, "input": [query] }));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| EmbedError::Transport(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = upstream::retry_after(response.headers());
            let body = response.text().await.unwrap_or_default();
            return Err(EmbedError::Status {
                status: status.as_u16(),
                body: body.chars().take(300).collect(),
                retry_after,
            });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| EmbedError::Transport(e.to_string()))?;
        let parsed: EmbeddingResponse =
            serde_json::from_slice(&bytes).map_err(|e| EmbedError::Decode(e.to_string()))?;
        parsed
            .data
            .into_iter()
            .next()
            .map(|d| d.embedding)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| EmbedError::Decode("no embedding in data[0]".into()))
    }
}

/// Exponential backoff with ±50% jitter: `base · 2^(attempt−1)`, capped.
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .base_delay
        .saturating_mul(1u32 << (attempt - 1).min(16))
        .min(policy.max_delay);
    exp.mul_f64(0.5 + jitter())
}

/// A number in [0, 1) that differs between calls (no need for a cryptographic source).
fn jitter() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let mut x = STATE.fetch_add(nanos | 1, Ordering::Relaxed) ^ nanos;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Cache key of a query: trimmed, inner whitespace collapsed (case is kept: it can matter
/// to a model).
pub fn normalize_query(query: &str) -> String {
    query.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        for attempt in 1..10 {
            let d = backoff(&p, attempt);
            let nominal = (p.base_delay * (1 << (attempt - 1))).min(p.max_delay);
            assert!(d >= nominal / 2 && d <= nominal * 3 / 2, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn queries_normalise_whitespace_only() {
        assert_eq!(normalize_query("  Wie   geht's?\n"), "Wie geht's?");
        assert_ne!(normalize_query("Mars"), normalize_query("mars"));
    }

    #[test]
    fn only_transient_errors_are_retried() {
        let status = |s| EmbedError::Status {
            status: s,
            body: String::new(),
            retry_after: None,
        };
        assert!(status(429).retryable() && status(503).retryable());
        assert!(!status(400).retryable() && !status(401).retryable());
        assert!(EmbedError::Transport("reset".into()).retryable());
        assert!(!EmbedError::Decode("x".into()).retryable());
        let refused = EmbedError::from(Refusal::Open(upstream::EMBEDDINGS));
        assert!(!refused.retryable() && refused.refusal().is_some());
    }
}
