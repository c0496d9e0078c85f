//! Archives are read whole before they are trusted: a replacement with a corrupt matrix is
//! refused before it is published; archives served at start-up are verified in the
//! background, `/api/ready` says so, and one that fails is withdrawn and counted. The folder
//! name is the id a podcast is served under.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podmap::server::catalog::{load_mmap, watch};
use podmap::server::{router, AppState, Settings};
use serde_json::{json, Value};

/// The matrix starts after the 4,096-byte header: bytes here are floats of the first rows.
const MATRIX_BYTES: u64 = 4096 + 64;

fn damage_matrix(path: &Path) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&[0x7f; 32], MATRIX_BYTES).unwrap();
}

/// Converts `n` items of podcast `id` into `index/<id>/rag.podmap`.
fn archive(dir: &Path, index: &Path, id: &str, n: u32) -> PathBuf {
    let data = dir.join(format!("data-{id}-{n}"));
    common::small_root(&data, id, n, 8);
    common::convert_quietly(&data, index);
    index.join(id).join("rag.podmap")
}

async fn serve(index: &Path) -> String {
    let state = Arc::new(AppState::new(
        load_mmap(index).unwrap(),
        Settings::default(),
    ));
    tokio::spawn(watch(index.to_path_buf(), state.catalog.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    base
}

async fn get(base: &str, route: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}{route}")).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn latest_status(base: &str, podcast: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/api/episodes/latest"))
        .json(&json!({ "podcastId": podcast }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls `/api/ready` until it answers 200, within 10 s.
async fn until_ready(base: &str) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = get(base, "/api/ready").await;
        if status == 200 {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_archive_at_start_up_is_served_then_withdrawn_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    let bad = archive(dir.path(), &index, "bad", 12);
    archive(dir.path(), &index, "good", 6);
    damage_matrix(&bad);
    // At start-up archives are served at once, before they are read whole: not ready yet.
    let catalog = load_mmap(&index).unwrap();
    assert_eq!(catalog.unverified(), ["bad", "good"]);
    let app = router(Arc::new(AppState::new(catalog, Settings::default())));
    let request = axum::http::Request::get("/api/ready")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
    assert_eq!(response.status(), 503);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["verifying"], json!(["bad", "good"]), "{body}");
    // The reloader verifies them off the request path and withdraws the corrupt one.
    let base = serve(&index).await;
    assert_eq!(latest_status(&base, "good").await, 200);
    let body = until_ready(&base).await;
    assert_eq!(body["withdrawn"], 1, "{body}");
    assert_eq!(body["podcasts"], 1, "{body}");
    assert_eq!(latest_status(&base, "bad").await, 404);
    assert_eq!(latest_status(&base, "good").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_with_a_corrupt_matrix_is_refused_before_it_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    let served = archive(dir.path(), &index, "p", 12);
    let base = serve(&index).await;
    until_ready(&base).await;
    // A 20-item replacement with a damaged matrix, renamed into place (the supported way).
    let other = dir.path().join("other");
    let replacement = archive(dir.path(), &other, "p", 20);
    damage_matrix(&replacement);
    std::fs::rename(&replacement, &served).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, podcasts) = get(&base, "/api/podcasts").await;
    assert_eq!(podcasts["podcasts"][0]["items"], 12, "{podcasts}");
    let body = until_ready(&base).await;
    assert_eq!(body["withdrawn"], 0, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_copied_into_another_folder_is_served_under_that_folder_name() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    let original = archive(dir.path(), &index, "p", 12);
    std::fs::create_dir_all(index.join("kopie")).unwrap();
    std::fs::copy(&original, index.join("kopie/rag.podmap")).unwrap();
    let base = serve(&index).await;
    let (_, podcasts) = get(&base, "/api/podcasts").await;
    let ids: Vec<&str> = podcasts["podcasts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["kopie", "p"]);
    assert_eq!(latest_status(&base, "kopie").await, 200);
    let (status, _) = get(&base, "/api/speakers?podcast_id=kopie").await;
    assert_eq!(status, 200);
}
