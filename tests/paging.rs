//! Paging of `/api/episodes/search` and `/api/episodes/latest` at the far ends: every offset
//! from the first episode to `u64::MAX` answers a page (empty past the end, `hasMore: false`),
//! and a number that fits no offset is a JSON 4xx, never an overflow or a 500.

mod common;

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use podmap::server::catalog::load_mmap;
use podmap::server::{router, AppState, Settings};
use serde_json::{json, Value};
use tower::ServiceExt;

fn index_dir() -> &'static Path {
    common::fixtures_index()
}

fn app() -> axum::Router {
    let catalog = load_mmap(index_dir()).unwrap();
    router(Arc::new(AppState::new(catalog, Settings::default())))
}

/// POSTs `body` (raw JSON text, so numbers beyond `u64` can be sent) to `uri`.
async fn post(app: &axum::Router, uri: &str, body: String) -> (StatusCode, Value) {
    let request = Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

/// The requests paged here: each route, one podcast and (for search) all of them.
fn requests() -> Vec<(&'static str, Value)> {
    vec![
        (
            "/api/episodes/latest",
            json!({"podcastId": "demo-raumfahrt", "limit": 2}),
        ),
        (
            "/api/episodes/search",
            json!({"query": "Raumfahrt Forschung", "podcastId": "demo-text", "limit": 2}),
        ),
        (
            "/api/episodes/search",
            json!({"query": "Raumfahrt Forschung", "crossPodcast": true, "limit": 2}),
        ),
    ]
}

fn with(body: &Value, key: &str, value: Value) -> String {
    let mut body = body.clone();
    body[key] = value;
    body.to_string()
}

fn page(body: &Value) -> (usize, bool, u64) {
    (
        body["episodes"].as_array().expect("episodes").len(),
        body["hasMore"].as_bool().expect("hasMore"),
        body["total"].as_u64().expect("total"),
    )
}

#[tokio::test]
async fn offsets_up_to_u64_max_answer_a_page() {
    let app = app();
    for (uri, request) in requests() {
        let (status, first) = post(&app, uri, request.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{uri} {request}: {first}");
        let total = first["total"].as_u64().unwrap();
        assert!(
            total > 2,
            "{uri} {request}: too few episodes to page: {first}"
        );
        assert_eq!(page(&first), (2, true, total), "{uri} {request}");

        let (status, last) = post(&app, uri, with(&request, "offset", json!(total - 1))).await;
        assert_eq!(status, StatusCode::OK, "{uri} {request}: {last}");
        assert_eq!(page(&last), (1, false, total), "{uri} {request}");

        let mut past_the_end = vec![
            json!(total),
            json!(total + 1),
            json!(u32::MAX),
            json!(u64::from(u32::MAX) + 1),
            json!(i64::MAX),
        ];
        // u64::MAX fits an offset where usize is 64 bits wide (below, it is refused).
        if usize::BITS == 64 {
            past_the_end.extend([json!(u64::MAX - 1), json!(u64::MAX), json!(usize::MAX)]);
        }
        for offset in past_the_end {
            for limit in [json!(2), json!(50), json!(u64::MAX)] {
                let mut body = request.clone();
                body["offset"] = offset.clone();
                body["limit"] = limit;
                let (status, answer) = post(&app, uri, body.to_string()).await;
                assert_eq!(status, StatusCode::OK, "{uri} {body}: {answer}");
                assert_eq!(page(&answer), (0, false, total), "{uri} {body}: {answer}");
            }
        }
    }
}

#[tokio::test]
async fn offsets_that_fit_no_number_are_refused_as_json() {
    let app = app();
    let mut refused = vec![
        "18446744073709551616".to_owned(), // u64::MAX + 1
        "1e30".to_owned(),
        "-1".to_owned(),
        "1.5".to_owned(),
        "\"5\"".to_owned(),
    ];
    if usize::BITS < 64 {
        refused.push(u64::MAX.to_string());
    }
    for (uri, request) in requests() {
        for offset in &refused {
            let text = request.to_string();
            let body = format!("{},\"offset\":{offset}}}", &text[..text.len() - 1]);
            let (status, answer) = post(&app, uri, body.clone()).await;
            assert!(status.is_client_error(), "{uri} {body}: {status} {answer}");
            assert!(
                answer["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{uri} {body}: no JSON error: {answer}"
            );
        }
    }
}
