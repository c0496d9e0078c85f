//! `GET /metrics` and the logs of `podmap serve`: requests counted once by matched route,
//! method and status (`unmatched` for 404 fallbacks); the scrape answering while every
//! request slot is taken; per-podcast gauges following loads, replacements and refusals;
//! every metric docs/METRICS.md lists present in a scrape, and the Grafana
//! dashboard using documented names only. The JSON logs are tested in `server_logs.rs`.
//!
//! The recorder is global to the test process and the tests run in parallel, so counts are
//! read as deltas, each test on routes (or podcasts) no other test here uses.

mod common;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use podmap::server::catalog::{load_mmap, refresh};
use podmap::server::{router, AppState, Settings};
use serde_json::Value;
use tower::ServiceExt;

use support::scrape::Scrape;

fn app_on(index: &Path, settings: Settings) -> (axum::Router, Arc<AppState>) {
    let state = Arc::new(AppState::new(load_mmap(index).unwrap(), settings));
    (router(state.clone()), state)
}

async fn send(app: &axum::Router, request: Request<Body>) -> (StatusCode, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn post(uri: &str, body: Value) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn scrape(app: &axum::Router) -> Scrape {
    let response = app.clone().oneshot(get("/metrics")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let body = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .unwrap();
    Scrape::parse(String::from_utf8(body.to_vec()).unwrap())
}

const REQUESTS: &str = "podmap_http_requests_total";
const DURATION_COUNT: &str = "podmap_http_request_duration_seconds_count";

#[tokio::test]
async fn requests_are_counted_once_by_matched_route_method_and_status() {
    let (app, _) = app_on(common::fixtures_index(), Settings::default());
    let before = scrape(&app).await;
    for _ in 0..3 {
        let ok = send(&app, get("/api/speakers?podcast_id=demo-raumfahrt")).await;
        assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
    }
    for _ in 0..2 {
        let analytics = send(&app, get("/api/analytics/stats")).await;
        // Analytics is off in this state: no stats to give.
        assert_eq!(analytics.0, StatusCode::SERVICE_UNAVAILABLE);
    }
    for path in ["/no/such/route", "/wp-login.php", "/api/speakers/42"] {
        assert_eq!(send(&app, get(path)).await.0, StatusCode::NOT_FOUND);
    }
    let latest = serde_json::json!({"podcastId": "demo-raumfahrt", "limit": 2});
    assert_eq!(
        send(&app, post("/api/episodes/latest", latest)).await.0,
        StatusCode::OK
    );
    // The route matched, the method did not: counted under the route with its 405.
    let wrong_method = send(&app, get("/api/episodes/latest")).await;
    assert_eq!(wrong_method.0, StatusCode::METHOD_NOT_ALLOWED);
    let after = scrape(&app).await;

    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let speakers = [("route", "/api/speakers"), ("method", "GET")];
    assert_eq!(
        delta(REQUESTS, &[speakers[0], speakers[1], ("status", "200")]),
        3.0
    );
    assert_eq!(delta(DURATION_COUNT, &[("route", "/api/speakers")]), 3.0);
    let analytics = [("route", "/api/analytics/stats"), ("status", "503")];
    assert_eq!(delta(REQUESTS, &analytics), 2.0);
    let unmatched = [("route", "unmatched"), ("status", "404")];
    assert_eq!(delta(REQUESTS, &unmatched), 3.0);
    assert_eq!(delta(DURATION_COUNT, &[("route", "unmatched")]), 3.0);
    let latest = [("route", "/api/episodes/latest")];
    assert_eq!(
        delta(
            REQUESTS,
            &[latest[0], ("method", "POST"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        delta(REQUESTS, &[latest[0], ("method", "GET"), ("status", "405")]),
        1.0
    );
    // No raw path ever becomes a label.
    for raw in ["/no/such/route", "/wp-login.php", "/api/speakers/42"] {
        assert!(!after.text.contains(raw), "{raw} leaked into the labels");
    }
    // The scrape before this one was counted too, under its own route.
    assert!(delta(REQUESTS, &[("route", "/metrics"), ("status", "200")]) >= 1.0);
    assert_eq!(
        after.kind("podmap_http_request_duration_seconds"),
        Some("histogram")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_while_every_request_slot_is_taken() {
    // An embeddings endpoint that accepts connections and never answers keeps one search in
    // flight (until the client's 10 s timeout) while the next requests arrive.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", hung.local_addr().unwrap());
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = hung.accept().await {
            open.push(socket); // held open, never answered
        }
    });
    let settings = Settings {
        embedding_base_url: Some(url),
        max_in_flight: 1,
        ..Settings::default()
    };
    let (app, _) = app_on(common::fixtures_index(), settings);
    let before = scrape(&app).await;
    let busy = app.clone();
    let in_flight = tokio::spawn(async move {
        let search = serde_json::json!({"query": "Mond", "podcastId": "demo-raumfahrt"});
        busy.oneshot(post("/api/episodes/search", search)).await
    });
    // Wait (generously bounded) until the search holds the slot.
    let mut shed = (StatusCode::OK, String::new());
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        shed = send(&app, get("/api/podcasts")).await;
        if shed.0 == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
    }
    assert_eq!(shed.0, StatusCode::SERVICE_UNAVAILABLE, "{}", shed.1);
    let during = scrape(&app).await;
    assert!(during.value("podmap_http_in_flight", &[]) >= 1.0);
    assert!(
        during.value("podmap_http_shed_total", &[]) - before.value("podmap_http_shed_total", &[])
            >= 1.0
    );
    let refused = [("route", "/api/podcasts"), ("status", "503")];
    assert!(during.value(REQUESTS, &refused) - before.value(REQUESTS, &refused) >= 1.0);

    // A request whose client goes away is still counted once, as 499.
    in_flight.abort();
    let closed = [("route", "/api/episodes/search"), ("status", "499")];
    let mut counted = 0.0;
    for _ in 0..100 {
        let now = scrape(&app).await;
        counted = now.value(REQUESTS, &closed) - before.value(REQUESTS, &closed);
        if counted > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counted, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_embeddings),
    ignore = "needs an embeddings server: PODMAP_EMBEDDINGS_URL (tools/test.sh starts one)"
)]
async fn query_embeddings_are_counted_as_cache_misses_then_hits() {
    let url = std::env::var("PODMAP_EMBEDDINGS_URL").expect("PODMAP_EMBEDDINGS_URL");
    let settings = Settings {
        embedding_base_url: Some(url),
        ..Settings::default()
    };
    let (app, _) = app_on(common::fixtures_index(), settings);
    let before = scrape(&app).await;
    // The same query three times (whitespace does not make another query): one API call.
    for query in [
        "Wie weit ist der Mond entfernt? (cache metrics)",
        "Wie weit ist der Mond entfernt? (cache metrics)",
        "  Wie weit ist  der Mond entfernt? (cache metrics) ",
    ] {
        let search = serde_json::json!({"query": query, "podcastId": "demo-raumfahrt"});
        let response = app
            .clone()
            .oneshot(post("/api/episodes/search", search))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-podmap-search-mode"], "semantic");
    }
    let after = scrape(&app).await;
    let cache = [("cache", "query_embeddings")];
    let delta = |name: &str| after.value(name, &cache) - before.value(name, &cache);
    assert_eq!(delta("podmap_cache_misses_total"), 1.0);
    assert_eq!(delta("podmap_cache_hits_total"), 2.0);
}

#[tokio::test]
async fn a_panicking_handler_is_counted_with_its_500() {
    async fn boom() -> &'static str {
        panic!("a handler bug")
    }
    // The real layers around a route that panics, the request metrics layer outermost as
    // `router` puts it.
    let app = podmap::server::middleware::service_layers(
        axum::Router::new().route("/metrics-boom", axum::routing::get(boom)),
        &Settings::default(),
    )
    .layer(axum::middleware::from_fn(podmap::server::metrics::track));
    let handle = podmap::server::metrics::handle().expect("the recorder is podmap's");
    let before = Scrape::parse(handle.render());
    assert_eq!(
        send(&app, get("/metrics-boom")).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let after = Scrape::parse(handle.render());
    let panicked = "podmap_http_panicked_total";
    assert_eq!(
        after.value(panicked, &[]) - before.value(panicked, &[]),
        1.0
    );
    let answered = [("route", "/metrics-boom"), ("status", "500")];
    assert_eq!(after.value(REQUESTS, &answered), 1.0);
}

/// A data root with one podcast of `n` items, converted into `index`.
fn convert_podcast(work: &Path, id: &str, n: u32, index: &Path) {
    let data = work.join(format!("data-{n}"));
    common::small_root(&data, id, n, 8);
    common::convert_quietly(&data, index);
}

/// Puts `bytes` at `index/<id>/rag.podmap` by rename, as `podmap convert` replaces archives.
fn replace_archive(index: &Path, id: &str, bytes: &[u8]) {
    let dir = index.join(id);
    let tmp = dir.join(".rag.podmap.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join("rag.podmap")).unwrap();
}

#[tokio::test]
async fn per_podcast_gauges_follow_loads_replacements_and_refusals() {
    let work = tempfile::tempdir().unwrap();
    let index = work.path().join("index");
    let id = "metrics-gauges";
    convert_podcast(work.path(), id, 6, &index);
    let archive: PathBuf = index.join(id).join("rag.podmap");
    let first_len = std::fs::metadata(&archive).unwrap().len();
    let (app, state) = app_on(&index, Settings::default());
    let podcast = [("podcast", id)];

    let loaded = scrape(&app).await;
    assert_eq!(loaded.value("podmap_podcast_items", &podcast), 6.0);
    assert_eq!(
        loaded.value("podmap_podcast_mapped_bytes", &podcast),
        first_len as f64
    );
    assert!(loaded.value("podmap_podcast_load_seconds", &podcast) > 0.0);
    let generation = loaded.value("podmap_podcast_generation", &podcast);
    assert!(generation >= 1.0);

    // A truncated replacement is refused and counted; the previous archive keeps serving.
    let bytes = std::fs::read(&archive).unwrap();
    replace_archive(&index, id, &bytes[..bytes.len() / 2]);
    let next = refresh(&index, &state.catalog.load()).expect("the change is noticed");
    state.catalog.store(Arc::new(next));
    let refused = scrape(&app).await;
    let truncated = [("podcast", id), ("reason", "truncated")];
    assert_eq!(
        refused.value("podmap_archive_refused_total", &truncated),
        1.0
    );
    assert_eq!(refused.value("podmap_podcast_items", &podcast), 6.0);
    assert_eq!(
        refused.value("podmap_podcast_generation", &podcast),
        generation
    );

    // A valid replacement is published: a new generation with its own figures.
    let other = work.path().join("other-index");
    convert_podcast(work.path(), id, 9, &other);
    let replacement = std::fs::read(other.join(id).join("rag.podmap")).unwrap();
    replace_archive(&index, id, &replacement);
    let next = refresh(&index, &state.catalog.load()).expect("the change is noticed");
    state.catalog.store(Arc::new(next));
    let replaced = scrape(&app).await;
    assert_eq!(replaced.value("podmap_podcast_items", &podcast), 9.0);
    assert_eq!(
        replaced.value("podmap_podcast_mapped_bytes", &podcast),
        replacement.len() as f64
    );
    assert_eq!(
        replaced.value("podmap_podcast_generation", &podcast),
        generation + 1.0
    );

    // Removed from the index directory: counted as deleted, the gauges fall to zero.
    std::fs::remove_dir_all(index.join(id)).unwrap();
    let next = refresh(&index, &state.catalog.load()).expect("the removal is noticed");
    state.catalog.store(Arc::new(next));
    let removed = scrape(&app).await;
    let deleted = [("podcast", id), ("reason", "deleted")];
    assert_eq!(removed.value("podmap_archive_refused_total", &deleted), 1.0);
    for gauge in [
        "podmap_podcast_items",
        "podmap_podcast_mapped_bytes",
        "podmap_podcast_generation",
        "podmap_podcast_load_seconds",
    ] {
        assert_eq!(removed.value(gauge, &podcast), 0.0, "{gauge}");
    }
}

/// The metrics table of docs/METRICS.md: name → type.
fn documented_metrics() -> BTreeMap<String, String> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/METRICS.md"))
            .unwrap();
    let metrics: BTreeMap<String, String> = doc
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix("`podmap_")?.strip_suffix('`')?;
            Some((format!("podmap_{name}"), cells.get(2)?.to_string()))
        })
        .collect();
    assert!(metrics.len() >= 20, "{metrics:?}");
    metrics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_metric_appears_in_a_scrape() {
    // The events the other serving layers count: a rate-limited request, one past its
    // deadline, failing, slow and saturated embeddings calls (tests/server_overload.rs checks
    // their counts).
    support::events::rate_limited().await;
    support::events::timed_out().await;
    support::events::breaker_opened().await;
    support::events::slow_and_busy().await;
    let work = tempfile::tempdir().unwrap();
    let index = work.path().join("index");
    convert_podcast(work.path(), "metrics-docs", 3, &index);
    // A broken archive beside it: refused at load, and counted.
    std::fs::create_dir_all(index.join("metrics-docs-broken")).unwrap();
    std::fs::write(
        index.join("metrics-docs-broken").join("rag.podmap"),
        b"not an archive",
    )
    .unwrap();
    let settings = Settings {
        // Never called by these requests: an embedder only has to exist for its cache's
        // metrics.
        embedding_base_url: Some("http://127.0.0.1:9/v1".into()),
        ..Settings::default()
    };
    let (app, _) = app_on(&index, settings);
    // 503 until the archives are verified in the background, which this test does not run.
    send(&app, get("/api/ready")).await;
    assert_eq!(send(&app, get("/api/health")).await.0, StatusCode::OK);
    let scraped = scrape(&app).await;
    assert_eq!(
        scraped.value(
            "podmap_archive_refused_total",
            &[("podcast", "metrics-docs-broken"), ("reason", "corrupt")]
        ),
        1.0
    );
    assert_eq!(
        scraped.value(
            "podmap_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(scraped.value("podmap_process_resident_memory_bytes", &[]) > 1e6);
    let documented = documented_metrics();
    for (name, kind) in &documented {
        assert_eq!(
            scraped.kind(name),
            Some(kind.as_str()),
            "{name} ({kind}) is documented but not in the scrape:\n{}",
            scraped.text
        );
    }
}

#[test]
fn the_dashboard_parses_and_uses_only_documented_metrics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    let documented = documented_metrics();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 15, "{} queries", exprs.len());
    let mut used = std::collections::BTreeSet::new();
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("podmap_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix).filter(|base| {
                        documented.get(*base).map(String::as_str) == Some("histogram")
                    })
                })
                .unwrap_or(&name)
                .to_owned();
            assert!(
                documented.contains_key(&base),
                "{name} in {expr:?} is not in docs/METRICS.md"
            );
            used.insert(base);
        }
    }
    for panel in [
        "podmap_http_requests_total",
        "podmap_http_request_duration_seconds",
        "podmap_http_shed_total",
        "podmap_upstream_breaker_state",
        "podmap_cache_hits_total",
        "podmap_podcast_mapped_bytes",
        "podmap_process_resident_memory_bytes",
    ] {
        assert!(used.contains(panel), "no panel shows {panel}");
    }
}

fn collect_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match v {
                    Value::String(s) if key == "expr" => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}
