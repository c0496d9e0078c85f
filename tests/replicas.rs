//! Several replicas of `podmap serve` sharing state, each a `podmap serve` process of its own
//! on a loopback port (its own caches, limiters, connections and metrics):
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

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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

/// The command-line options of a replica beside `--index` and `--listen`, by flag: setting a
/// flag again replaces its value.
#[derive(Clone)]
struct Options(Vec<(&'static str, String)>);

impl Options {
    /// No analytics and no rate limits.
    fn new() -> Options {
        Options(Vec::new())
            .set("--analytics", "off")
            .set("--rate-limit-chat", "off")
            .set("--rate-limit-search", "off")
            .set("--rate-limit-other", "off")
    }

    fn set(mut self, flag: &'static str, value: impl Into<String>) -> Options {
        let value = value.into();
        match self.0.iter_mut().find(|(f, _)| *f == flag) {
            Some(slot) => slot.1 = value,
            None => self.0.push((flag, value)),
        }
        self
    }
}

/// One `podmap serve` process on the fixtures at `127.0.0.1:<free port>`; killed when
/// dropped.
struct Replica {
    addr: SocketAddr,
    child: Child,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address where nothing listens (at the time of asking).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl Replica {
    /// Starts a replica with `options` and waits until its `/api/ready` answers 200.
    async fn of(options: &Options) -> Replica {
        // The free port may be taken by another test before the replica binds it: then it
        // exits, and another port is tried.
        let mut log = Vec::new();
        for _ in 0..3 {
            let addr = free_addr();
            let mut command = Command::new(env!("CARGO_BIN_EXE_podmap"));
            command
                .args(["serve", "--index", common::s(common::fixtures_index())])
                .args(["--listen", &addr.to_string()]);
            for (flag, value) in &options.0 {
                command.args([*flag, value.as_str()]);
            }
            let mut child = command
                // Only the options above configure it, whatever the test's environment says.
                .env_clear()
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start podmap serve");
            // Its log, read by a thread of its own so that it never blocks on a full pipe, is
            // shown if it does not get ready.
            let stderr = child.stderr.take().unwrap();
            let reader = std::thread::spawn(move || {
                std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                    .collect::<Vec<_>>()
            });
            let mut replica = Replica { addr, child };
            if replica.until_ready().await {
                return replica;
            }
            drop(replica);
            log = reader.join().unwrap_or_default();
        }
        panic!(
            "podmap serve {:?} did not get ready:\n{}",
            options.0,
            log.join("\n")
        );
    }

    /// Waits up to 30 s for `/api/ready` to answer 200; false if the process exited first.
    async fn until_ready(&mut self) -> bool {
        let probe = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let url = format!("http://{}/api/ready", self.addr);
        let start = Instant::now();
        loop {
            if probe
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return true;
            }
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{url} never answered 200"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

/// Options of a replica with embeddings at `embeddings`, Redis at `redis_url` under `prefix`,
/// and no rate limits.
fn options(embeddings: &StandIn, redis_url: &str, prefix: &str) -> Options {
    Options::new()
        .set("--embedding-base-url", embeddings.base_url.clone())
        .set("--redis-url", redis_url)
        .set("--redis-key-prefix", prefix)
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
    let options = options(&upstream, &redis_url(), &prefix.prefix);
    let a = Replica::of(&options).await;
    let b = Replica::of(&options).await;

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
    // Each process counts its own lookups.
    let shared_hits = "podmap_cache_hits_total{cache=\"query_embeddings_shared\"}";
    let shared_misses = "podmap_cache_misses_total{cache=\"query_embeddings_shared\"}";
    let scrape = a.scrape().await;
    assert_eq!(counter(&scrape, shared_hits), 0.0, "{scrape}");
    assert_eq!(
        counter(&scrape, shared_misses),
        2.0,
        "A found neither query in Redis: {scrape}"
    );
    let scrape = b.scrape().await;
    assert_eq!(
        counter(&scrape, shared_hits),
        1.0,
        "B found its first query in Redis: {scrape}"
    );
    assert_eq!(counter(&scrape, shared_misses), 0.0, "{scrape}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_redis),
    ignore = "needs a Redis server: set PODMAP_REDIS_URL (tools/test.sh does when redis-cli ping answers)"
)]
async fn a_chat_limit_holds_across_replicas() {
    let prefix = Prefix::new();
    let llm = StandIn::start(Behaviour::default()).await;
    let options = options(&llm, &redis_url(), &prefix.prefix)
        .set("--llm-base-url", llm.base_url.clone())
        .set("--rate-limit-chat", "4/min");
    let a = Replica::of(&options).await;
    let b = Replica::of(&options).await;
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
    for replica in [&a, &b] {
        let scrape = replica.scrape().await;
        assert_eq!(
            counter(&scrape, "podmap_rate_limited_total{class=\"chat\"}"),
            1.0,
            "{} refused one chat: {scrape}",
            replica.addr
        );
    }
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
    let options = options(
        &upstream,
        &format!("redis://{}", proxy.addr),
        &prefix.prefix,
    )
    // Limits counted in Redis while it is there, locally while it is not.
    .set("--rate-limit-search", "1000/min")
    // A search past its normal budget would answer 504.
    .set("--timeout-search", "2s");
    let a = Replica::of(&options).await;
    let b = Replica::of(&options).await;

    assert_eq!(a.search("vorher").await, "semantic");
    assert!(prefix.await_embedding("vorher").await);
    assert_eq!(b.search("vorher").await, "semantic");
    assert_eq!(
        upstream.embedding_requests().len(),
        1,
        "shared through the proxy"
    );

    proxy.cut();
    let mut errors_before = Vec::new();
    for replica in [&a, &b] {
        errors_before.push(counter(
            &replica.scrape().await,
            "podmap_redis_errors_total",
        ));
    }
    for i in 0..10 {
        for replica in [&a, &b] {
            assert_eq!(replica.search(&format!("ohne Redis {i}")).await, "semantic");
        }
    }
    // Each replica asked the API itself, once per query: nothing shared, nothing lost.
    assert_eq!(upstream.embedding_requests().len(), 1 + 20);
    for (replica, before) in [&a, &b].into_iter().zip(errors_before) {
        let scrape = replica.scrape().await;
        assert!(
            counter(&scrape, "podmap_redis_errors_total") > before,
            "{} counted its failed Redis calls: {scrape}",
            replica.addr
        );
        assert!(
            scrape.contains("podmap_upstream_breaker_state{upstream=\"redis\"}"),
            "{scrape}"
        );
    }

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
    let replica = Replica::of(
        &options(&upstream, &nowhere, "podmap_test:never_written:")
            .set("--rate-limit-search", "3/min")
            .set("--timeout-search", "2s"),
    )
    .await;
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
    let options = Options::new()
        .set("--analytics", "on")
        .set("--database-url", db.url.clone())
        .set("--stats-auth-token", "stats")
        .set("--analytics-ip-secret", "one key for the deployment")
        .set("--analytics-stats-ttl-secs", "0");
    let a = Replica::of(&options).await;
    let b = Replica::of(&options).await;
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
