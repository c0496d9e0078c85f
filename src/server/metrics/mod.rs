//! Prometheus metrics: the process-wide recorder, `GET /metrics`, and the counters the other
//! layers bump with one call each. docs/METRICS.md lists every metric, its labels and the
//! layer that counts it.
//!
//! Metrics go through the `metrics` facade, so any module counts with a macro and no registry
//! is handed around; [`handle`] installs the Prometheus recorder once per process (a test
//! binary builds many routers, a process has one global recorder). Every `*_seconds`
//! histogram gets fixed buckets from 1 ms to 60 s, so it is exported as a Prometheus
//! histogram (aggregatable across replicas), not as a summary.
//!
//! | module | holds |
//! |---|---|
//! | [`http`] | the outermost layer: requests by matched route, method and status, latency, in flight |
//! | [`podcasts`] | per-podcast gauges read from the catalog, and refused archives |
//!
//! Values that are cheap to read but not events (resident memory, cache sizes, the catalog)
//! are read at scrape time, in [`scrape`].

pub mod http;
pub mod podcasts;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::AppState;

pub use http::track;
pub use podcasts::{archive_refused, observe_catalog, Refusal};

/// Upper bounds of every `*_seconds` histogram: 1 ms to 60 s, about three per decade. A
/// search takes a few milliseconds, an embeddings call tens to hundreds, a chat seconds.
pub const SECONDS_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// How often histogram samples are folded into their buckets between scrapes, so that they
/// do not pile up in memory when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The name the query-embedding cache has in `podmap_cache_*{cache}`.
pub const QUERY_EMBEDDINGS_CACHE: &str = "query_embeddings";

/// The process's Prometheus recorder, installed on first use. `None` when another recorder
/// was installed first (a program embedding the library with its own): podmap's metrics then
/// go to that recorder, and `/metrics` answers 404.
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match install() {
            Ok(handle) => {
                describe();
                Some(handle)
            }
            Err(e) => {
                tracing::warn!("metrics are not exported at /metrics: {e}");
                None
            }
        })
        .as_ref()
}

fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)?
        .install_recorder()
}

/// HELP text of the metrics counted here, and the unlabelled counters registered at zero so
/// that a dashboard's rate() has a series before the first event.
fn describe() {
    describe_counter!(
        "podmap_http_requests_total",
        "Requests answered, by matched route, method and status"
    );
    describe_histogram!(
        "podmap_http_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to its response headers, by matched route"
    );
    describe_gauge!("podmap_http_in_flight", "Requests being handled now");
    describe_counter!(
        "podmap_http_shed_total",
        "Requests refused with 503 because every request slot was taken"
    );
    describe_counter!(
        "podmap_http_panicked_total",
        "Handlers that panicked (answered 500)"
    );
    describe_counter!(
        "podmap_cache_hits_total",
        "Lookups answered from a cache, by cache"
    );
    describe_counter!(
        "podmap_cache_misses_total",
        "Lookups that had to compute the value, by cache"
    );
    describe_gauge!("podmap_cache_entries", "Entries held by a cache, by cache");
    describe_gauge!(
        "podmap_process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory of the process (VmRSS), mapped archive pages included"
    );
    describe_gauge!(
        "podmap_build_info",
        "Always 1; the version label says which podmap runs"
    );
    podcasts::describe();
    crate::server::analytics::describe_metrics();
    crate::server::shared::describe_metrics();
    counter!("podmap_http_shed_total").increment(0);
    counter!("podmap_http_panicked_total").increment(0);
    gauge!("podmap_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// Folds histogram samples into their buckets every [`UPKEEP_INTERVAL`]; runs until the
/// process ends (`podmap serve` spawns it).
pub async fn upkeep() {
    let Some(handle) = handle() else {
        return;
    };
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

/// `GET /metrics`: every metric in the Prometheus text format. Answered outside the load
/// shedder and the body layer (see [`super::router`]), so it answers under overload.
pub async fn scrape(State(state): State<Arc<AppState>>) -> Response {
    let Some(handle) = handle() else {
        return super::ApiError::NoRoute.into_response();
    };
    observe_catalog(&state.catalog.load());
    if let Some(embedder) = &state.embedder {
        gauge!("podmap_cache_entries", "cache" => QUERY_EMBEDDINGS_CACHE)
            .set(embedder.cached_entries() as f64);
    }
    let rss = crate::mem::ProcessMemory::current().rss_kib;
    gauge!("podmap_process_resident_memory_bytes").set((rss * 1024) as f64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// Counts a request refused by the load shedder (in `middleware::overloaded`).
pub fn shed() {
    counter!("podmap_http_shed_total").increment(1);
}

/// Counts a handler that panicked (in `middleware::panicked`).
pub fn panicked() {
    counter!("podmap_http_panicked_total").increment(1);
}

/// Registers `cache`'s hit and miss counters at zero (they keep any count they have), so its
/// hit ratio has series before the first lookup.
pub fn register_cache(cache: &'static str) {
    handle(); // an embedder may be made before the first router
    counter!("podmap_cache_hits_total", "cache" => cache).increment(0);
    counter!("podmap_cache_misses_total", "cache" => cache).increment(0);
}

/// Counts one cache lookup: answered from `cache` (`hit`), or computed.
pub fn cache_lookup(cache: &'static str, hit: bool) {
    if hit {
        counter!("podmap_cache_hits_total", "cache" => cache).increment(1);
    } else {
        counter!("podmap_cache_misses_total", "cache" => cache).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_buckets_rise_from_a_millisecond_to_a_minute() {
        assert_eq!(SECONDS_BUCKETS[0], 0.001);
        assert_eq!(SECONDS_BUCKETS[SECONDS_BUCKETS.len() - 1], 60.0);
        assert!(SECONDS_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_recorder_is_installed_once_and_renders_histograms_with_buckets() {
        let first = handle().expect("no other recorder in this test binary");
        let again = handle().unwrap();
        assert!(std::ptr::eq(first, again));
        ::metrics::histogram!("podmap_unit_test_duration_seconds").record(0.003);
        let text = first.render();
        assert!(
            text.contains("# TYPE podmap_unit_test_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("podmap_unit_test_duration_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(text.contains("podmap_build_info{version=\""), "{text}");
    }
}
