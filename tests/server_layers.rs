//! The layers around every route: request ids taken or made and echoed, panics answered as
//! 500 JSON that names no internals, compression by `Accept-Encoding` above 1 KiB.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use podmap::server::catalog::load_mmap;
use podmap::server::{middleware, router, AppState, Settings};
use serde_json::Value;
use tower::ServiceExt;

fn app() -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = (dir.path().join("data"), dir.path().join("index"));
    // 90 items over 30 episodes: a lexical search page of 30 episodes is well over 1 KiB.
    common::small_root(&data, "p", 90, 8);
    common::convert_quietly(&data, &index);
    let state = AppState::new(load_mmap(&index).unwrap(), Settings::default());
    (router(Arc::new(state)), dir)
}

fn search(accept_encoding: Option<&str>, request_id: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/api/episodes/search")
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"query": "Thema", "podcastId": "p", "limit": 50}"#,
        ))
        .unwrap();
    if let Some(encoding) = accept_encoding {
        request
            .headers_mut()
            .insert("accept-encoding", encoding.parse().unwrap());
    }
    if let Some(id) = request_id {
        request
            .headers_mut()
            .insert("x-request-id", id.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let (app, _dir) = app();
    let given = app
        .clone()
        .oneshot(search(None, Some("trace-me-42")))
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-me-42");
    let made = app.clone().oneshot(search(None, None)).await.unwrap();
    let first = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    let again = app.oneshot(search(None, None)).await.unwrap();
    let second = again.headers()["x-request-id"].to_str().unwrap();
    assert!(!first.is_empty() && first != second, "{first} {second}");
}

#[tokio::test]
async fn large_answers_are_compressed_as_the_client_asks() {
    let (app, _dir) = app();
    let plain = app.clone().oneshot(search(None, None)).await.unwrap();
    assert_eq!(plain.status(), StatusCode::OK);
    assert!(plain.headers().get("content-encoding").is_none());
    let bytes = axum::body::to_bytes(plain.into_body(), 1 << 20)
        .await
        .unwrap();
    assert!(bytes.len() > 1024, "{} bytes", bytes.len());
    for encoding in ["gzip", "br", "zstd"] {
        let response = app
            .clone()
            .oneshot(search(Some(encoding), None))
            .await
            .unwrap();
        assert_eq!(response.headers()["content-encoding"], encoding);
    }
    // Small answers are not worth it.
    let health = Request::get("/api/health")
        .header("accept-encoding", "gzip")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(health).await.unwrap();
    assert!(response.headers().get("content-encoding").is_none());
}

#[tokio::test]
async fn a_panicking_handler_answers_500_json_without_internals() {
    async fn boom() -> &'static str {
        panic!("secret detail /var/lib/podmap/x.podmap")
    }
    let app = middleware::service_layers(
        axum::Router::new().route("/boom", get(boom)),
        &Settings::default(),
    );
    let response = app
        .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(response.headers().get("x-request-id").is_some());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("x-request-id"), "{message}");
    assert!(!message.contains("secret"), "{message}");
}
