//! What Redis as the second level of the query-embedding cache adds to a search: a search whose
//! embedding another replica put in Redis (a local miss, one `GET` on loopback) against the
//! same search answered from the local cache, side by side in one run.
//!
//! Two replicas of the bundled fixtures (`demo-raumfahrt`, 384 dimensions) in this process, each
//! with its own caches, on one Redis (`PODMAP_REDIS_URL`, default `redis://127.0.0.1:6379`)
//! under a key prefix of their own, deleted at the end. The writer replica searches every query
//! once, so its embedding is in Redis (from a stand-in embeddings endpoint that counts its
//! calls). Then, query by query, the measured replica searches it twice: first a local miss
//! that Redis answers (`shared`), then a local hit (`local`). Requests go through the full
//! router (`oneshot`, no socket: the Redis round trip is the only network in the difference).
//! The stand-in must see no call from the measured replica, or the run is void.
//!
//! `cargo bench --bench shared_cache`; `PODMAP_SHARED_QUERIES` (default 2000) queries. Without
//! a Redis server the bench says so and measures nothing.

#[path = "support/mod.rs"]
mod support;

#[path = "serve/stand_in.rs"]
mod stand_in;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use podmap::server::catalog::load_mmap;
use podmap::server::limits::RateLimits;
use podmap::server::shared::RedisSettings;
use podmap::server::{router, AppState, Settings};
use tower::ServiceExt;

use stand_in::StandIn;

const PODCAST: &str = "demo-raumfahrt";
const DIMS: usize = 384;

fn replica(index: &Path, embeddings: &StandIn, redis_url: &str, prefix: &str) -> Router {
    let mut settings = Settings {
        embedding_base_url: Some(embeddings.base_url.clone()),
        redis: Some(RedisSettings {
            key_prefix: prefix.to_owned(),
            ..RedisSettings::new(redis_url)
        }),
        ..Settings::default()
    };
    settings.admission.rate_limits = RateLimits::off();
    router(Arc::new(AppState::new(load_mmap(index).unwrap(), settings)))
}

/// One search through the router; its time.
async fn search(app: &Router, query: &str) -> Duration {
    let body = serde_json::json!({"query": query, "podcastId": PODCAST}).to_string();
    let request = Request::post("/api/episodes/search")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    let started = Instant::now();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(
        bytes.windows(10).any(|w| w == b"\"semantic\""),
        "a semantic search: {}",
        String::from_utf8_lossy(&bytes)
    );
    elapsed
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn keys(conn: &mut redis::Connection, prefix: &str) -> Vec<String> {
    let (mut cursor, mut all) = (0u64, Vec::new());
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query(conn)
            .unwrap();
        all.extend(batch);
        if next == 0 {
            return all;
        }
        cursor = next;
    }
}

fn main() {
    let redis_url =
        std::env::var("PODMAP_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut conn = match redis::Client::open(redis_url.as_str()).and_then(|c| c.get_connection()) {
        Ok(conn) => conn,
        Err(e) => {
            println!("shared_cache: no Redis at {redis_url} ({e}): nothing measured");
            return;
        }
    };
    let n = support::env_usize("PODMAP_SHARED_QUERIES", 2000);
    let prefix = format!("podmap_bench:{}:", std::process::id());
    let index = tempfile::tempdir().unwrap();
    support::convert(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/data"),
        index.path(),
        PODCAST,
    );
    let vector: Vec<f32> = (0..DIMS)
        .map(|i| ((i * 37) % 11) as f32 / 10.0 - 0.45)
        .collect();
    let embeddings = StandIn::start(&[vector]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (shared, local) = runtime.block_on(async {
        let writer = replica(index.path(), &embeddings, &redis_url, &prefix);
        let measured = replica(index.path(), &embeddings, &redis_url, &prefix);
        let queries: Vec<String> = (0..n).map(|i| format!("Raumfahrt Frage {i}")).collect();
        for query in &queries {
            search(&writer, query).await;
        }
        // The writer stores in the background: wait until every embedding is there.
        let deadline = Instant::now() + Duration::from_secs(60);
        while keys(&mut conn, &prefix).len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let calls = embeddings.calls();
        // Warm-up: the measured replica's first search connects to Redis.
        search(&measured, "Warm-up").await;
        let calls_after_warm_up = embeddings.calls();
        let (mut shared, mut local) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for query in &queries {
            shared.push(search(&measured, query).await);
            local.push(search(&measured, query).await);
        }
        assert_eq!(calls_after_warm_up, calls + 1, "the warm-up query is new");
        assert_eq!(
            embeddings.calls(),
            calls_after_warm_up,
            "every measured embedding came from Redis or the local cache"
        );
        (shared, local)
    });
    let stale = keys(&mut conn, &prefix);
    if !stale.is_empty() {
        let _: () = redis::cmd("DEL").arg(&stale).query(&mut conn).unwrap();
    }
    let (mut shared, mut local) = (shared, local);
    shared.sort();
    local.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("| search ({n} queries, fixtures, {DIMS} dims) | p50 µs | p99 µs |");
    println!("|---|---|---|");
    for (name, times) in [
        ("embedding in Redis, not local", &shared),
        ("embedding in the local cache", &local),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} |",
            us(percentile(times, 0.5)),
            us(percentile(times, 0.99))
        );
    }
    println!(
        "\nRedis as second level adds {:.0} µs at p50 and {:.0} µs at p99 ({:.2}× / {:.2}× the local search).",
        us(percentile(&shared, 0.5)) - us(percentile(&local, 0.5)),
        us(percentile(&shared, 0.99)) - us(percentile(&local, 0.99)),
        us(percentile(&shared, 0.5)) / us(percentile(&local, 0.5)),
        us(percentile(&shared, 0.99)) / us(percentile(&local, 0.99)),
    );
}
