//! `podmap serve` above its concurrency limit, over loopback: many more concurrent clients
//! than `--max-in-flight` slots, while every admitted search is held by a slow embeddings API.
//! The excess is shed at once with 503 JSON, the admitted searches all answer, health,
//! readiness and `/metrics` answer throughout, every request is counted exactly once, and
//! memory stays bounded. Then the metrics the other serving layers emit (rate limits,
//! deadlines, the upstream clients' breaker and degraded searches) are caused and counted.
//!
//! The metrics recorder is global to the test process: counts are read as deltas, and the
//! tests here take turns (`SERIAL`), since the in-flight gauge and the breaker gauge are
//! process-wide.

mod common;
mod loopback;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use loopback::{get, post_json, Reply, Server};
use podmap::server::Settings;
use serde_json::json;
use support::events;
use support::openai_standin::{Behaviour, StandIn};
use support::scrape::Scrape;

/// Request slots of the server under load.
const SLOTS: usize = 4;
/// Concurrent clients: six per slot.
const CLIENTS: usize = 6 * SLOTS;
/// How long the embeddings stand-in holds every admitted search.
const HOLD: Duration = Duration::from_secs(3);

const REQUESTS: &str = "podmap_http_requests_total";
const SHED: &str = "podmap_http_shed_total";
const IN_FLIGHT: &str = "podmap_http_in_flight";
const RSS: &str = "podmap_process_resident_memory_bytes";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn scrape(server: &Server) -> Scrape {
    let reply = get(server, "/metrics", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    Scrape::parse(reply.text)
}

/// Sends one search with its own query (so no two share an embeddings call) and times it.
async fn timed_search(server: Arc<Server>, n: usize) -> (Reply, Duration) {
    let started = Instant::now();
    let body = json!({"query": format!("Raumfahrt Teleskop {n}"), "podcastId": "demo-raumfahrt"});
    let reply = post_json(&server, "/api/episodes/search", &[], body).await;
    (reply, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_excess_is_shed_at_once_and_every_request_is_counted_once() {
    let _turn = SERIAL.lock().await;
    let slow = StandIn::start(Behaviour {
        embed_delay: HOLD,
        ..Behaviour::default()
    })
    .await;
    let server = Arc::new(
        loopback::start(Settings {
            max_in_flight: SLOTS,
            embedding_max_concurrency: CLIENTS,
            search_embedding_wait: Duration::from_secs(30),
            ..support::chat::settings(None, Some(&slow))
        })
        .await,
    );
    let before = scrape(&server).await;

    let searches: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(timed_search(server.clone(), n)))
        .collect();

    // While the admitted searches are held: health, readiness and metrics answer.
    let deadline = Instant::now() + Duration::from_secs(30);
    while slow.embedding_requests().len() < SLOTS {
        assert!(
            Instant::now() < deadline,
            "the admitted searches never reached the API"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let health = get(&server, "/api/health", &[]).await;
    assert_eq!(health.status, 200, "{}", health.text);
    let ready = get(&server, "/api/ready", &[]).await;
    assert!(
        ready.json.as_ref().and_then(|j| j.get("ready")).is_some(),
        "readiness answered for itself: {ready:?}"
    );
    let during = scrape(&server).await;
    // The searches held the slots while these answered (the scrape counts itself too).
    assert!(
        during.since(&before, IN_FLIGHT, &[]) >= SLOTS as f64,
        "{}",
        during.text
    );

    let (mut admitted, mut shed) = (0, 0);
    for search in searches {
        let (reply, took) = search.await.unwrap();
        match reply.status {
            200 => {
                admitted += 1;
                assert_eq!(reply.header("x-podmap-search-mode"), Some("semantic"));
                assert!(took >= HOLD, "an admitted search waits for its embedding");
            }
            503 => {
                shed += 1;
                assert!(!reply.error().is_empty());
                assert!(
                    reply
                        .header("content-type")
                        .unwrap()
                        .starts_with("application/json"),
                    "{reply:?}"
                );
                // Shed at once: long before an admitted search could have finished.
                assert!(took < HOLD, "a shed answer took {took:?}");
            }
            other => panic!("{other}: {}", reply.text),
        }
    }
    assert_eq!(admitted + shed, CLIENTS);
    assert!(admitted >= SLOTS, "{admitted} admitted");
    assert!(shed >= CLIENTS / 2, "only {shed} of {CLIENTS} shed");

    // Each in-flight request answered, the gauge is back where it started.
    let mut after = scrape(&server).await;
    while after.value(IN_FLIGHT, &[]) != before.value(IN_FLIGHT, &[]) {
        assert!(Instant::now() < deadline, "in flight: {}", after.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = scrape(&server).await;
    }
    let route = ("route", "/api/episodes/search");
    assert_eq!(after.since(&before, REQUESTS, &[route]), CLIENTS as f64);
    assert_eq!(
        after.since(&before, REQUESTS, &[route, ("status", "200")]),
        admitted as f64
    );
    assert_eq!(
        after.since(&before, REQUESTS, &[route, ("status", "503")]),
        shed as f64
    );
    assert_eq!(after.since(&before, SHED, &[]), shed as f64);
    for path in ["/api/health", "/api/ready"] {
        assert_eq!(after.since(&before, REQUESTS, &[("route", path)]), 1.0);
    }
    let rss = after.value(RSS, &[]);
    assert!(rss > 1e6, "{}", after.text);
    assert!(
        rss < before.value(RSS, &[]) + 200e6,
        "resident memory grew from {} to {rss}",
        before.value(RSS, &[])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_a_rate_limit_are_counted_by_class() {
    let _turn = SERIAL.lock().await;
    let server = loopback::start(events::one_a_minute(Settings::default())).await;
    let before = Scrape::now();
    let statuses = [
        get(&server, "/api/podcasts", &[]).await,
        get(&server, "/api/speakers?podcast_id=demo-raumfahrt", &[]).await,
        get(&server, "/api/podcasts", &[]).await,
    ];
    assert_eq!(statuses[0].status, 200, "{}", statuses[0].text);
    for refused in &statuses[1..] {
        assert_eq!(refused.status, 429, "{}", refused.text);
        assert!(refused.header("retry-after").is_some());
    }
    // Search and chat have their own limits (off here); health is never limited.
    assert_eq!(get(&server, "/api/health", &[]).await.status, 200);
    let after = Scrape::now();
    let limited = "podmap_rate_limited_total";
    assert_eq!(after.since(&before, limited, &[("class", "other")]), 2.0);
    assert_eq!(after.since(&before, limited, &[]), 2.0);
    let refused = [("status", "429")];
    assert_eq!(after.since(&before, REQUESTS, &refused), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_is_counted_by_route() {
    let _turn = SERIAL.lock().await;
    let before = Scrape::now();
    events::timed_out().await;
    let after = Scrape::now();
    let timed_out = "podmap_http_timed_out_total";
    assert_eq!(
        after.since(&before, timed_out, &[("route", "/api/chat")]),
        1.0
    );
    assert_eq!(after.since(&before, timed_out, &[]), 1.0);
    let chat = [("route", "/api/chat"), ("status", "504")];
    assert_eq!(after.since(&before, REQUESTS, &chat), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_calls_the_breaker_and_degraded_searches_are_counted() {
    let _turn = SERIAL.lock().await;
    let calls = "podmap_upstream_requests_total";
    let degraded = "podmap_search_degraded_total";
    let embeddings = ("upstream", "embeddings");

    let before = Scrape::now();
    let state = events::breaker_opened().await;
    let after = Scrape::now();
    let attempts = events::FAILED_ATTEMPTS as f64;
    assert_eq!(
        after.since(&before, calls, &[embeddings, ("outcome", "error")]),
        attempts
    );
    assert_eq!(
        after.since(&before, calls, &[embeddings, ("outcome", "rejected_open")]),
        1.0
    );
    assert_eq!(
        after.since(&before, "podmap_upstream_retries_total", &[embeddings]),
        attempts - 1.0
    );
    assert_eq!(
        after.since(
            &before,
            "podmap_upstream_request_duration_seconds_count",
            &[embeddings]
        ),
        attempts
    );
    assert_eq!(
        after.value("podmap_upstream_breaker_state", &[embeddings]),
        2.0,
        "open"
    );
    assert_eq!(
        state.embedder.as_ref().unwrap().guard().breaker().state(),
        podmap::server::breaker::State::Open
    );
    assert_eq!(
        after.since(&before, degraded, &[("reason", "upstream_error")]),
        1.0
    );
    assert_eq!(
        after.since(&before, degraded, &[("reason", "breaker_open")]),
        1.0
    );

    let before = Scrape::now();
    events::slow_and_busy().await;
    let after = Scrape::now();
    assert_eq!(
        after.since(&before, calls, &[embeddings, ("outcome", "rejected_busy")]),
        1.0
    );
    assert_eq!(
        after.since(&before, degraded, &[("reason", "timeout")]),
        1.0
    );
    assert_eq!(after.since(&before, degraded, &[("reason", "busy")]), 1.0);
    assert_eq!(after.since(&before, degraded, &[]), 2.0);
    // A new client's breaker starts closed, and says so.
    assert_eq!(
        after.value("podmap_upstream_breaker_state", &[embeddings]),
        0.0,
        "closed"
    );
}
