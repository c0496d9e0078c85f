//! Per-route deadlines that answer like every other error: 504 with `{"error": "…"}`.
//!
//! | routes | deadline | default | why |
//! |---|---|---|---|
//! | `/api/episodes/latest`, `/api/speakers`, `/api/podcasts` | short | 5 s | reads of the mapped archives, milliseconds when healthy |
//! | `/api/episodes/search` | search | 15 s | one embeddings call (10 s with its retries) and a scan |
//! | `/api/chat` | chat | 120 s | retrieval, then the LLM until its answer *starts* |
//!
//! The deadline covers a request until its handler returns the response head. A streamed
//! chat answer (server-sent events) that has started is not cut: its events flow after the
//! handler has returned, outside the deadline, for as long as the LLM sends them (the LLM
//! client's own timeout bounds that). A non-streamed chat answer is one body, so the whole
//! LLM call is inside the deadline.
//!
//! On timeout the handler's future is dropped: its upstream calls are cancelled with it. Work
//! it had handed to the blocking pool (a scan, cutting excerpts) cannot be cancelled and
//! finishes in the background; its result is dropped. That work is bounded (one scan, a few
//! excerpts, milliseconds to a second), and the request slot is freed at once, so a late scan
//! costs CPU for its own short duration but cannot pile up unboundedly: new requests are
//! still capped by the concurrency limit. Each timeout is counted as
//! `podmap_http_timed_out_total{route}`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;

use super::error::ApiError;

/// The deadline of each group of routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTimeouts {
    /// `/api/episodes/latest`, `/api/speakers`, `/api/podcasts`.
    pub short: Duration,
    /// `/api/episodes/search`.
    pub search: Duration,
    /// `/api/chat`, until the answer starts.
    pub chat: Duration,
}

impl Default for RouteTimeouts {
    fn default() -> Self {
        RouteTimeouts {
            short: Duration::from_secs(5),
            search: Duration::from_secs(15),
            chat: Duration::from_secs(120),
        }
    }
}

/// A timeout setting: a positive number of seconds (`15`, `15s`, `0.5s`), milliseconds
/// (`500ms`) or minutes (`2min`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Duration);

/// A timeout setting that is not a positive duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a timeout: use seconds (15 or 15s), milliseconds (500ms) or minutes (2min), above zero")]
pub struct InvalidTimeout(pub String);

impl FromStr for Timeout {
    type Err = InvalidTimeout;

    fn from_str(text: &str) -> Result<Self, InvalidTimeout> {
        let invalid = || InvalidTimeout(text.to_owned());
        let trimmed = text.trim();
        let (number, scale) = if let Some(n) = trimmed.strip_suffix("ms") {
            (n, 0.001)
        } else if let Some(n) = trimmed.strip_suffix("min") {
            (n, 60.0)
        } else if let Some(n) = trimmed.strip_suffix('s') {
            (n, 1.0)
        } else {
            (trimmed, 1.0)
        };
        let value: f64 = number.trim().parse().map_err(|_| invalid())?;
        let seconds = value * scale;
        // At most a day: a longer deadline is no deadline, and the bound keeps the
        // conversion to a Duration exact and panic-free.
        if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
            return Err(invalid());
        }
        let duration = Duration::from_secs_f64(seconds);
        if duration.is_zero() {
            return Err(invalid());
        }
        Ok(Timeout(duration))
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} s", self.0.as_secs_f64())
    }
}

/// The deadline one route runs under, with the route's name for the metric.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    route: &'static str,
    after: Duration,
}

/// `route` (the handlers of one path, named `path`) under a deadline of `after`.
pub fn with_deadline<S>(
    route: MethodRouter<S>,
    path: &'static str,
    after: Duration,
) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let deadline = Deadline { route: path, after };
    route.layer(axum::middleware::from_fn_with_state(deadline, run_until))
}

/// Runs the rest of the request until its response head, or answers 504 at the deadline.
async fn run_until(State(deadline): State<Deadline>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(deadline.after, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("podmap_http_timed_out_total", "route" => deadline.route)
                .increment(1);
            tracing::warn!(
                route = deadline.route,
                "no answer within {}",
                Timeout(deadline.after)
            );
            ApiError::TimedOut {
                after: Timeout(deadline.after),
            }
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_and_print() {
        let ok = [
            ("15", 15_000),
            ("15s", 15_000),
            (" 0.5s ", 500),
            ("500ms", 500),
            ("2min", 120_000),
            ("1.5 min", 90_000),
        ];
        for (text, ms) in ok {
            let t: Timeout = text.parse().unwrap();
            assert_eq!(t.0, Duration::from_millis(ms), "{text}");
        }
        assert_eq!(Timeout(Duration::from_millis(1500)).to_string(), "1.5 s");
        assert_eq!(Timeout(Duration::from_secs(5)).to_string(), "5 s");
        for bad in [
            "",
            "0",
            "0s",
            "-1",
            "1h",
            "ten",
            "NaN",
            "inf",
            "1e300",
            "0.0000000001ms",
            "5 sec",
        ] {
            let e = bad.parse::<Timeout>().unwrap_err();
            assert_eq!(e, InvalidTimeout(bad.to_owned()), "{bad}");
        }
    }
}
