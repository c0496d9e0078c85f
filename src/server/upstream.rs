//! What stands between a request and an upstream API (embeddings, LLM): a circuit breaker
//! ([`breaker`](super::breaker)) and a bound on the calls in flight, separate from the bound on
//! HTTP requests. A call that finds the breaker open, or no free slot within a short wait, is
//! refused at once ([`Refusal`]) and the caller degrades as it would for an outage; every call
//! that is let through is timed and counted.
//!
//! Metrics, with `upstream` = `embeddings` or `llm`:
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `podmap_upstream_breaker_state` | gauge: 0 closed, 1 half-open, 2 open | `upstream` |
//! | `podmap_upstream_requests_total` | counter | `upstream`, `outcome`: `ok`, `error`, `rejected_open`, `rejected_busy` |
//! | `podmap_upstream_request_duration_seconds` | histogram, calls that were sent | `upstream` |
//! | `podmap_upstream_retries_total` | counter | `upstream` |

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::breaker::{Breaker, BreakerConfig, Ticket};

/// How long a call waits for a free slot before it is refused as busy: long enough to ride out
/// a burst, short enough that a search still answers within its budget.
pub const PERMIT_WAIT: Duration = Duration::from_millis(250);

/// The embeddings API's metrics label.
pub const EMBEDDINGS: &str = "embeddings";
/// The LLM API's metrics label.
pub const LLM: &str = "llm";

/// Why a call was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the {} API failed repeatedly and is not called until it recovers (circuit open)", display(.0))]
    Open(&'static str),
    #[error("too many {} API calls are in flight; try again shortly", display(.0))]
    Busy(&'static str),
}

fn display(upstream: &str) -> &str {
    match upstream {
        LLM => "LLM",
        other => other,
    }
}

/// The limits of one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardConfig {
    /// Calls in flight at once.
    pub max_concurrency: usize,
    /// Wait for a free slot before the call is refused as busy.
    pub permit_wait: Duration,
    pub breaker: BreakerConfig,
}

impl GuardConfig {
    pub fn new(max_concurrency: usize, breaker: BreakerConfig) -> Self {
        GuardConfig {
            max_concurrency: max_concurrency.max(1),
            permit_wait: PERMIT_WAIT,
            breaker,
        }
    }
}

/// One upstream's breaker and slots; cheap to clone (shared).
#[derive(Clone)]
pub struct Guard {
    upstream: &'static str,
    breaker: Arc<Breaker>,
    slots: Arc<Semaphore>,
    permit_wait: Duration,
}

/// A call let through: it holds a slot and the breaker's ticket until [`Call::finish`].
pub struct Call {
    upstream: &'static str,
    ticket: Ticket,
    permit: OwnedSemaphorePermit,
    started: Instant,
}

impl Guard {
    pub fn new(upstream: &'static str, config: GuardConfig) -> Self {
        Guard::with_breaker(upstream, config, Breaker::new(upstream, config.breaker))
    }

    /// A guard over a given breaker (one on a test clock, say).
    pub fn with_breaker(
        upstream: &'static str,
        config: GuardConfig,
        breaker: Arc<Breaker>,
    ) -> Self {
        Guard {
            upstream,
            breaker,
            slots: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            permit_wait: config.permit_wait,
        }
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Admits a call: refused at once while the breaker is open, or after the permit wait
    /// when every slot stays taken.
    pub async fn admit(&self) -> Result<Call, Refusal> {
        let Ok(ticket) = self.breaker.try_call() else {
            self.count("rejected_open");
            return Err(Refusal::Open(self.upstream));
        };
        let slot = tokio::time::timeout(self.permit_wait, self.slots.clone().acquire_owned());
        let Ok(Ok(permit)) = slot.await else {
            // The ticket goes unrecorded: a probe gives its place to the next call.
            self.count("rejected_busy");
            return Err(Refusal::Busy(self.upstream));
        };
        Ok(Call {
            upstream: self.upstream,
            ticket,
            permit,
            started: Instant::now(),
        })
    }

    /// Counts a retry of a failed call.
    pub fn retried(&self) {
        metrics::counter!("podmap_upstream_retries_total", "upstream" => self.upstream)
            .increment(1);
    }

    fn count(&self, outcome: &'static str) {
        count(self.upstream, outcome);
    }
}

fn count(upstream: &'static str, outcome: &'static str) {
    metrics::counter!("podmap_upstream_requests_total", "upstream" => upstream, "outcome" => outcome)
        .increment(1);
}

/// How a call ended, for the breaker and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The upstream answered with an error caused by the request (4xx, an unusable body):
    /// counted as an error, but it is there, so the breaker takes it as an answer.
    Rejected,
    /// Transport error, timeout, 5xx or 429: counts towards opening the breaker.
    Transient,
}

impl Call {
    /// Records the outcome and frees the slot.
    pub fn finish(self, outcome: Outcome) {
        drop(self.finish_keeping_slot(outcome));
    }

    /// Records the outcome; returns the slot, which the caller keeps while it still reads
    /// from the upstream (a streamed answer) and drops when done.
    pub fn finish_keeping_slot(self, outcome: Outcome) -> OwnedSemaphorePermit {
        metrics::histogram!("podmap_upstream_request_duration_seconds", "upstream" => self.upstream)
            .record(self.started.elapsed().as_secs_f64());
        count(
            self.upstream,
            if outcome == Outcome::Ok {
                "ok"
            } else {
                "error"
            },
        );
        self.ticket.record(outcome == Outcome::Transient);
        self.permit
    }
}

/// The `Retry-After` of an answer in seconds (the HTTP-date form is not used by the APIs
/// podmap calls and is ignored).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max: usize, failures: u32) -> GuardConfig {
        GuardConfig {
            max_concurrency: max,
            permit_wait: Duration::from_millis(20),
            breaker: BreakerConfig {
                failures,
                cool_down: Duration::from_secs(3600),
            },
        }
    }

    #[tokio::test]
    async fn a_full_upstream_refuses_as_busy_and_frees_its_slot_when_done() {
        let guard = Guard::new(EMBEDDINGS, config(1, 5));
        let first = guard.admit().await.unwrap();
        assert_eq!(guard.admit().await.err(), Some(Refusal::Busy(EMBEDDINGS)));
        first.finish(Outcome::Ok);
        assert!(guard.admit().await.is_ok());
    }

    #[tokio::test]
    async fn transient_failures_open_the_breaker_and_rejections_do_not() {
        let guard = Guard::new(LLM, config(4, 2));
        for _ in 0..3 {
            guard.admit().await.unwrap().finish(Outcome::Rejected);
        }
        guard.admit().await.unwrap().finish(Outcome::Transient);
        guard.admit().await.unwrap().finish(Outcome::Transient);
        let refused = guard.admit().await.err().unwrap();
        assert_eq!(refused, Refusal::Open(LLM));
        assert!(refused.to_string().contains("LLM API"), "{refused}");
    }

    /// A recorder that writes down every metric operation as `name{labels} op`.
    #[derive(Clone, Default)]
    struct Log(Arc<std::sync::Mutex<Vec<String>>>);

    struct Handle(String, Log);

    impl Log {
        fn handle(&self, key: &metrics::Key) -> Arc<Handle> {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            Arc::new(Handle(name, self.clone()))
        }

        fn lines(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    impl Handle {
        fn push(&self, op: String) {
            (self.1).0.lock().unwrap().push(format!("{} {op}", self.0));
        }
    }

    impl metrics::CounterFn for Handle {
        fn increment(&self, value: u64) {
            self.push(format!("+{value}"));
        }
        fn absolute(&self, value: u64) {
            self.push(format!("={value}"));
        }
    }

    impl metrics::GaugeFn for Handle {
        fn increment(&self, value: f64) {
            self.push(format!("+{value}"));
        }
        fn decrement(&self, value: f64) {
            self.push(format!("-{value}"));
        }
        fn set(&self, value: f64) {
            self.push(format!("={value}"));
        }
    }

    impl metrics::HistogramFn for Handle {
        fn record(&self, _: f64) {
            self.push("observed".into());
        }
    }

    impl metrics::Recorder for Log {
        fn describe_counter(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_gauge(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_histogram(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn register_counter(
            &self,
            key: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Counter {
            metrics::Counter::from_arc(self.handle(key))
        }
        fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
            metrics::Gauge::from_arc(self.handle(key))
        }
        fn register_histogram(
            &self,
            key: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Histogram {
            metrics::Histogram::from_arc(self.handle(key))
        }
    }

    #[test]
    fn calls_breaker_states_and_retries_are_emitted() {
        let log = Log::default();
        metrics::with_local_recorder(&log, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            runtime.block_on(async {
                let guard = Guard::new(LLM, config(1, 2));
                guard.admit().await.unwrap().finish(Outcome::Ok);
                guard.admit().await.unwrap().finish(Outcome::Rejected);
                guard.retried();
                let held = guard.admit().await.unwrap();
                assert!(guard.admit().await.is_err(), "busy");
                held.finish(Outcome::Transient);
                guard.admit().await.unwrap().finish(Outcome::Transient);
                assert!(guard.admit().await.is_err(), "open");
            });
        });
        let lines = log.lines();
        let count = |line: &str| lines.iter().filter(|l| *l == line).count();
        let requests = "podmap_upstream_requests_total{upstream=llm,outcome=";
        assert_eq!(count(&format!("{requests}ok}} +1")), 1, "{lines:#?}");
        assert_eq!(count(&format!("{requests}error}} +1")), 3, "{lines:#?}");
        assert_eq!(count(&format!("{requests}rejected_busy}} +1")), 1);
        assert_eq!(count(&format!("{requests}rejected_open}} +1")), 1);
        assert_eq!(
            count("podmap_upstream_request_duration_seconds{upstream=llm} observed"),
            4
        );
        assert_eq!(count("podmap_upstream_retries_total{upstream=llm} +1"), 1);
        let states: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("podmap_upstream_breaker_state{upstream=llm}"))
            .collect();
        assert_eq!(
            states,
            [
                "podmap_upstream_breaker_state{upstream=llm} =0",
                "podmap_upstream_breaker_state{upstream=llm} =2"
            ]
        );
    }

    #[test]
    fn retry_after_in_seconds() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, " 3 ".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
