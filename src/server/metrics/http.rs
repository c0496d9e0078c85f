//! The request metrics layer: `podmap_http_requests_total{route,method,status}`,
//! `podmap_http_request_duration_seconds{route}` and `podmap_http_in_flight`.
//!
//! It is the outermost layer (see [`crate::server::router`]), so every request is counted
//! exactly once, including those the body layer, the load shedder or any limit inside them
//! refuse. It is added with `Router::layer`, which in axum 0.8 wraps each route *after*
//! routing: the request then carries the [`MatchedPath`] (the route template, such as
//! `/api/speakers`), which is the `route` label. Requests no route matched are labelled
//! `unmatched`: raw paths would make a new series for every URL a scanner tries.

use std::time::Instant;

use ::metrics::{counter, gauge, histogram};
use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

/// The `route` label of requests no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The `status` label of a request whose client went away before it was answered (nginx's
/// 499, "client closed request"): it is still counted once.
pub const CLIENT_CLOSED: &str = "499";

/// The layer's function (for `axum::middleware::from_fn`).
pub async fn track(request: Request, next: Next) -> Response {
    let route = route_label(&request);
    let mut guard = InFlight {
        route,
        method: method_label(request.method()),
        started: Instant::now(),
        answered: false,
    };
    gauge!("podmap_http_in_flight").increment(1.0);
    let response = next.run(request).await;
    guard.finish(response.status().as_str());
    response
}

/// The route template the router matched, or [`UNMATCHED`].
pub fn route_label(request: &Request) -> String {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |m| m.as_str().to_owned())
}

/// The API's methods by name; anything else as `other` (methods are client-chosen strings).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// One request in flight: counted when answered, or when dropped unanswered (the client
/// closed the connection, so the handler's future was dropped).
struct InFlight {
    route: String,
    method: &'static str,
    started: Instant,
    answered: bool,
}

impl InFlight {
    fn finish(&mut self, status: &str) {
        self.answered = true;
        let route = self.route.clone();
        counter!(
            "podmap_http_requests_total",
            "route" => route.clone(),
            "method" => self.method,
            "status" => status.to_owned()
        )
        .increment(1);
        histogram!("podmap_http_request_duration_seconds", "route" => route)
            .record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.answered {
            self.finish(CLIENT_CLOSED);
        }
        gauge!("podmap_http_in_flight").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[test]
    fn requests_without_a_matched_route_are_unmatched() {
        let request = Request::get("/wp-login.php").body(Body::empty()).unwrap();
        assert_eq!(route_label(&request), UNMATCHED);
    }

    #[test]
    fn unusual_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&odd), "other");
    }
}
