//! Several replicas of `podmap serve` sharing state, each a server of its own on a loopback
//! port (its own caches, limiters and connections, as separate processes have):
//!
//! - through Redis (`cfg(podmap_redis)`, `PODMAP_REDIS_URL`): a query embedding paid for by one
//!   replica is not paid for again by another; a client's chat limit holds across replicas;
//!   with Redis cut off (a TCP proxy the test cuts) both keep answering from local state, and
//!   once it is back they share again without a restart;
//! - through one PostgreSQL analytics store (`cfg(podmap_postgres)`): events sent to both
//!   replicas are counted once in the stats of either.
//!
//! Each Redis test writes its keys under a prefix of its own and deletes them (SCAN + DEL)
//! when it ends, passed or failed.

#[allow(unused_macros)]
mod analytics_support;
mod common;
mod proxy;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use podmap::server::analytics::Analytics;
use podmap::server::catalog::load_mmap;
use podmap::server::limits::RateLimits;
use podmap::server::listener::{serve_connections, ConnectionLimits};
use podmap::server::shared::RedisSettings;
use podmap::server::{router, AppState, Settings};
use serde_json::{json, Value};

use support::openai_standin::{Behaviour, StandIn};

/// A podcast of the fixtures embedded with the stand-in's dimensions: searched semantically.
const PODCAST: &str = "demo-raumfahrt";

/// The Redis server the tests use.
fn redis_url() -> String {
    std::env::var("PODMAP_REDIS_URL").expect("PODMAP_REDIS_URL names a Redis server (see build.rs)")
}

/// A key prefix no other test (or run) uses; its keys are deleted when it is dropped.
struct Prefix {
    prefix: String,
}

impl Prefix {
    fn new() -> Prefix {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Prefix {
            prefix: format!(
                "podmap_test:{}:{nanos}:{}:",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    /// Keys under the prefix now.
    fn keys(&self) -> Vec<String> {
        let mut conn = redis::Client::open(redis_url())
            .unwrap()
            .get_connection()
            .unwrap();
        let mut cursor = 0u64;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query(&mut conn)
                .unwrap();
            keys.extend(batch);
            if next == 0 {
                return keys;
            }
            cursor = next;
        }
    }

    /// Waits up to `within` for a key under the prefix that `wanted` accepts (given the key
    /// without the prefix); whether one came.
    async fn await_key(&self, wanted: impl Fn(&str) -> bool, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.keys().iter().any(|k| wanted(&k[self.prefix.len()..])) {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits up to 10 s for the shared embedding of `query`.
    async fn await_embedding(&self, query: &str) -> bool {
        let end = format!(":{query}");
        self.await_key(
            |k| k.starts_with("emb:") && k.ends_with(&end),
            Duration::from_secs(10),
        )
        .await
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let keys = self.keys();
        if keys.is_empty() {
            return;
        }
        let mut conn = redis::Client::open(redis_url())
            .unwrap()
            .get_connection()
            .unwrap();
        let _: () = redis::cmd("DEL").arg(&keys).query(&mut conn).unwrap();
    }
}

/// One replica on `127.0.0.1:<free port>`; it stops when dropped.
struct Replica {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Replica {
    async fn start(state: AppState) -> Replica {
        let state = Arc::new(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = ConnectionLimits {
            drain_timeout: Duration::from_secs(1),
            ..ConnectionLimits::default()
        };
        tokio::spawn(serve_connections(
            listener,
            router(state.clone()),
            limits,
            async {
                let _ = stopped.await;
            },
        ));
        Replica {
            addr,
            stop: Some(stop),
        }
    }

    /// A replica of the fixtures with `settings`.
    async fn of(settings: Settings) -> Replica {
        let catalog = load_mmap(common::fixtures_index()).unwrap();
        Replica::start(AppState::new(catalog, settings)).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Option<String>, Value) {
        let r = client()
            .post(format!("http://{}{path}", self.addr))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, retry_after, r.json().await.unwrap_or(Value::Null))
    }

    /// Searches `query` in [`PODCAST`]; asserts a 200 and returns the search mode.
    async fn search(&self, query: &str) -> String {
        let (status, _, body) = self
            .post(
                "/api/episodes/search",
                json!({"query": query, "podcastId": PODCAST}),
            )
            .await;
        assert_eq!(status, 200, "{} answered {body}", self.addr);
        body["searchMode"].as_str().unwrap().to_owned()
    }

    async fn scrape(&self) -> String {
        client()
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Settings of a replica with embeddings at `embeddings`, Redis at `redis_url` under `prefix`,
/// and no rate limits.
fn settings(embeddings: &StandIn, redis_url: &str, prefix: &str) -> Settings {
    common::unlimited(Settings {
        embedding_base_url: Some(embeddings.base_url.clone()),
        redis: Some(RedisSettings {
            key_prefix: prefix.to_owned(),
            ..RedisSettings::new(redis_url)
        }),
        ..Settings::default()
    })
}

/// The sum of a counter's series whose line starts with `series` in a scrape.
fn counter(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_redis),
    ignore = "needs a Redis server: set PODMAP_REDIS_URL (tools/test.sh does when redis-cli ping answers)"
)]
async fn a_query_embedded_by_one_replica_costs_the_other_no_call() {
    let prefix = Prefix::new();
    let upstream = StandIn::start(Behaviour::default()).await;
    let a = Replica::of(settings(&upstream, &redis_url(), &prefix.prefix)).await;
    let b = Replica::of(settings(&upstream, &redis_url(), &prefix.prefix)).await;

    assert_eq!(a.search("Raketen   zum Mars").await, "semantic");
    assert_eq!(upstream.embedding_requests().len(), 1);
    // A's write to Redis does not hold its answer: wait until it has landed.
    assert!(
        prefix.await_embedding("Raketen zum Mars").await,
        "A stored the embedding"
    );
    assert_eq!(b.search("Raketen zum Mars").await, "semantic");
    assert_eq!(
        upstream.embedding_requests().len(),
        1,
        "B read A's embedding from Redis (the normalised query is the key)"
    );
    assert_eq!(b.search("Raketen zum Mars").await, "semantic");
    assert_eq!(upstream.embedding_requests().len(), 1, "then its own cache");
    assert_eq!(a.search("Teleskope").await, "semantic");
    assert_eq!(
        upstream.embedding_requests().len(),
        2,
        "another query is another call"
    );
    let scrape = b.scrape().await;
    assert!(
        counter(
            &scrape,
            "podmap_cache_hits_total{cache=\"query_embeddings_shared\"}"
        ) >= 1.0,
        "{scrape}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_redis),
    ignore = "needs a Redis server: set PODMAP_REDIS_URL (tools/test.sh does when redis-cli ping answers)"
)]
async fn a_chat_limit_holds_across_replicas() {
    let prefix = Prefix::new();
    let llm = StandIn::start(Behaviour::default()).await;
    let replica_settings = || {
        let mut s = settings(&llm, &redis_url(), &prefix.prefix);
        s.llm_base_url = Some(llm.base_url.clone());
        s.admission.rate_limits = RateLimits {
            chat: "4/min".parse().unwrap(),
            ..RateLimits::off()
        };
        s
    };
    let a = Replica::of(replica_settings()).await;
    let b = Replica::of(replica_settings()).await;
    let ask = json!({"query": "Raumfahrt Physik Teleskop", "podcastId": PODCAST, "topK": 2});
    for (i, replica) in [&a, &b, &a, &b].into_iter().enumerate() {
        let (status, _, body) = replica.post("/api/chat", ask.clone()).await;
        assert_eq!(status, 200, "request {} answered {body}", i + 1);
    }
    // Each replica has admitted two: alone, each would admit two more.
    let (status, retry_after, body) = a.post("/api/chat", ask.clone()).await;
    assert_eq!(status, 429, "{body}");
    let seconds: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!(
        (1..=15).contains(&seconds),
        "one chat back every 15 s: {seconds}"
    );
    let (status, _, _) = b.post("/api/chat", ask).await;
    assert_eq!(status, 429, "on the other replica too");
    assert_eq!(llm.chat_requests().len(), 4, "a refused chat calls no LLM");
    assert!(
        prefix
            .await_key(|k| k.starts_with("rl:chat:"), Duration::ZERO)
            .await,
        "counted in Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_redis),
    ignore = "needs a Redis server: set PODMAP_REDIS_URL (tools/test.sh does when redis-cli ping answers)"
)]
async fn replicas_answer_without_redis_and_share_again_when_it_is_back() {
    let prefix = Prefix::new();
    let upstream = StandIn::start(Behaviour::default()).await;
    let direct = reqwest::Url::parse(&redis_url()).unwrap();
    let proxy = proxy::Proxy::start(format!(
        "{}:{}",
        direct.host_str().unwrap(),
        direct.port().unwrap_or(6379)
    ))
    .await;
    let replica_settings = || {
        let mut s = settings(
            &upstream,
            &format!("redis://{}", proxy.addr),
            &prefix.prefix,
        );
        // Limits counted in Redis while it is there, locally while it is not.
        s.admission.rate_limits = RateLimits {
            search: "1000/min".parse().unwrap(),
            ..RateLimits::off()
        };
        // A search past its normal budget would answer 504.
        s.admission.timeouts.search = Duration::from_secs(2);
        s
    };
    let a = Replica::of(replica_settings()).await;
    let b = Replica::of(replica_settings()).await;

    assert_eq!(a.search("vorher").await, "semantic");
    assert!(prefix.await_embedding("vorher").await);
    assert_eq!(b.search("vorher").await, "semantic");
    assert_eq!(
        upstream.embedding_requests().len(),
        1,
        "shared through the proxy"
    );

    proxy.cut();
    let errors_before = counter(&a.scrape().await, "podmap_redis_errors_total");
    for i in 0..10 {
        for replica in [&a, &b] {
            assert_eq!(replica.search(&format!("ohne Redis {i}")).await, "semantic");
        }
    }
    // Each replica asked the API itself, once per query: nothing shared, nothing lost.
    assert_eq!(upstream.embedding_requests().len(), 1 + 20);
    let scrape = a.scrape().await;
    assert!(
        counter(&scrape, "podmap_redis_errors_total") > errors_before,
        "failed Redis calls are counted: {scrape}"
    );
    assert!(
        scrape.contains("podmap_upstream_breaker_state{upstream=\"redis\"}"),
        "{scrape}"
    );

    proxy.restore();
    // Each replica's breaker lets a probe through after its cool-down, and its connection comes
    // back by itself; until both have, a query may still cost two calls, so try fresh ones
    // until one costs a single call again.
    let mut shared_again = false;
    for i in 0..40 {
        let query = format!("nachher {i}");
        let calls = upstream.embedding_requests().len();
        assert_eq!(a.search(&query).await, "semantic");
        let end = format!(":{query}");
        let stored = prefix
            .await_key(
                |k| k.starts_with("emb:") && k.ends_with(&end),
                Duration::from_millis(500),
            )
            .await;
        assert_eq!(b.search(&query).await, "semantic");
        if stored && upstream.embedding_requests().len() == calls + 1 {
            shared_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(shared_again, "the replicas share through Redis again");
}

/// A port on loopback where nothing listens.
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_starts_and_answers_with_redis_unreachable() {
    let upstream = StandIn::start(Behaviour::default()).await;
    let nowhere = format!("redis://{}", closed_port().await);
    let mut s = settings(&upstream, &nowhere, "podmap_test:never_written:");
    s.admission.rate_limits = RateLimits {
        search: "3/min".parse().unwrap(),
        ..RateLimits::off()
    };
    s.admission.timeouts.search = Duration::from_secs(2);
    let replica = Replica::of(s).await;
    let errors_before = counter(&replica.scrape().await, "podmap_redis_");
    for _ in 0..3 {
        assert_eq!(replica.search("ohne Redis").await, "semantic");
    }
    assert_eq!(upstream.embedding_requests().len(), 1, "the local cache");
    let (status, retry_after, body) = replica
        .post(
            "/api/episodes/search",
            json!({"query": "ohne Redis", "podcastId": PODCAST}),
        )
        .await;
    assert_eq!(status, 429, "the limit holds locally: {body}");
    assert!(retry_after.is_some());
    let scrape = replica.scrape().await;
    assert!(
        counter(&scrape, "podmap_redis_") > errors_before,
        "failed and skipped Redis calls are counted: {scrape}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_postgres),
    ignore = "needs a PostgreSQL server: set PODMAP_POSTGRES_URL (tools/test.sh does when pg_isready answers)"
)]
async fn events_sent_to_two_replicas_are_counted_once_by_either() {
    let db = analytics_support::Db::postgres().await;
    let replica = || async {
        let mut s = common::unlimited(Settings {
            stats_auth_token: Some("stats".into()),
            ..Settings::default()
        });
        s.analytics.database_url = db.url.clone();
        s.analytics.ip_secret = Some("one key for the deployment".into());
        s.analytics.stats_ttl = Duration::ZERO;
        let analytics = Analytics::open(&s.analytics).await.unwrap();
        let catalog = load_mmap(common::fixtures_index()).unwrap();
        Replica::start(AppState::new(catalog, s).with_analytics(analytics)).await
    };
    let a = replica().await;
    let b = replica().await;
    for i in 0..6 {
        let replica = if i % 2 == 0 { &a } else { &b };
        let (status, _, body) = replica
            .post(
                "/api/analytics/track",
                json!({"path": format!("/replica/{i}"), "route_name": "replicas"}),
            )
            .await;
        assert_eq!((status, body), (200, json!({"success": true})));
    }
    for replica in [&a, &b] {
        let mut seen = Value::Null;
        for _ in 0..600 {
            seen = client()
                .get(format!("http://{}/api/analytics/stats", replica.addr))
                .header("x-auth-token", "stats")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if seen["total_page_views"] == 6 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(seen["total_page_views"], 6, "{}: {seen}", replica.addr);
    }
    assert_eq!(
        db.count("SELECT COUNT(*) AS n FROM page_views WHERE route_name = 'replicas'")
            .await,
        6,
        "each event stored once"
    );
    drop((a, b));
}
