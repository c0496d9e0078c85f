//! The layers around every route: request ids taken or made and echoed, panics answered as
//! 500 JSON that names no internals, compression by `Accept-Encoding` above 1 KiB, CORS for
//! the front end on another origin.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::routing::get;
use podmap::server::catalog::load_mmap;
use podmap::server::{middleware, router, AppState, Settings};
use serde_json::Value;
use tower::ServiceExt;

fn app() -> (axum::Router, tempfile::TempDir) {
    app_with(Settings::default())
}

fn app_with(settings: Settings) -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = (dir.path().join("data"), dir.path().join("index"));
    // 90 items over 30 episodes: a lexical search page of 30 episodes is well over 1 KiB.
    common::small_root(&data, "p", 90, 8);
    common::convert_quietly(&data, &index);
    let state = AppState::new(load_mmap(&index).unwrap(), settings);
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

#[tokio::test]
async fn cors_allows_the_front_end_from_another_origin() {
    let (app, _dir) = app_with(Settings::default());
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/chat")
        .header("origin", "https://explorer.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-auth-token",
        )
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(preflight).await.unwrap();
    assert!(response.status().is_success());
    let h = response.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("POST") && methods.contains("GET") && methods.contains("OPTIONS"),
        "{methods}"
    );
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    for header in ["content-type", "authorization", "x-auth-token"] {
        assert!(allowed.contains(header), "{allowed}");
    }

    let (restricted, _dir2) = app_with_origins(&["https://explorer.example"]);
    let from = |origin: &'static str| {
        Request::get("/api/health")
            .header("origin", origin)
            .body(Body::empty())
            .unwrap()
    };
    let ok = restricted
        .clone()
        .oneshot(from("https://explorer.example"))
        .await
        .unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://explorer.example"
    );
    let other = restricted
        .oneshot(from("https://elsewhere.example"))
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

fn app_with_origins(origins: &[&str]) -> (axum::Router, tempfile::TempDir) {
    app_with(Settings {
        cors_origins: origins.iter().map(|o| o.to_string()).collect(),
        ..Settings::default()
    })
}
