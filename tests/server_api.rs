//! Every route of `podmap serve` through the router itself (no socket): status codes, error
//! bodies and response shapes field by field, tokens and hostile ids (CORS: `server_layers`).

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

fn app(settings: Settings) -> axum::Router {
    let catalog = load_mmap(index_dir()).unwrap();
    router(Arc::new(AppState::new(
        catalog,
        common::unlimited(settings),
    )))
}

async fn call(
    app: &axum::Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20).await.unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (parts.status, parts.headers, value)
}

fn post(uri: &str, body: Value) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode) {
    assert_eq!(status, want, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "no JSON error: {body}"
    );
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
}

#[tokio::test]
async fn health_and_podcasts() {
    let app = app(Settings::default());
    let response = app.clone().oneshot(get("/api/health")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 100)
        .await
        .unwrap();
    assert_eq!(&body[..], b"ok");

    let (status, _, body) = call(&app, get("/api/podcasts")).await;
    assert_eq!(status, StatusCode::OK);
    let podcasts = body["podcasts"].as_array().unwrap();
    let ids: Vec<&str> = podcasts.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["demo-forschung", "demo-raumfahrt", "demo-text"]);
    let first = &podcasts[0];
    assert_eq!(
        keys(first),
        [
            "dimensions",
            "embeddedItems",
            "embeddingModel",
            "id",
            "items",
            "semantic"
        ]
    );
    assert_eq!(
        (first["items"].as_u64(), first["dimensions"].as_u64()),
        (Some(16), Some(384))
    );
    assert_eq!(
        first["semantic"], false,
        "no embeddings endpoint configured"
    );
    assert_eq!(podcasts[2]["embeddingModel"], Value::Null);
}

#[tokio::test]
async fn latest_has_the_original_shape_and_paging() {
    let app = app(Settings::default());
    let (status, _, body) = call(
        &app,
        post(
            "/api/episodes/latest",
            json!({"podcastId": "demo-raumfahrt", "limit": 4}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(keys(&body), ["episodes", "hasMore", "total"]);
    assert_eq!(
        (body["total"].as_u64(), body["hasMore"].as_bool()),
        (Some(6), Some(true))
    );
    let episodes = body["episodes"].as_array().unwrap();
    let numbers: Vec<u64> = episodes
        .iter()
        .map(|e| e["episodeNumber"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [6, 5, 4, 3], "highest number first");
    let e = &episodes[0];
    assert_eq!(
        keys(e),
        [
            "date",
            "description",
            "durationSec",
            "episodeNumber",
            "hasImage",
            "hasTranscript",
            "podcastId",
            "score",
            "speakers",
            "title",
            "topics"
        ]
    );
    assert_eq!(e["score"], 1.0);
    assert_eq!(e["podcastId"], "demo-raumfahrt");
    assert!(e["title"].as_str().unwrap().starts_with("DEM006"));
    assert_eq!(e["hasTranscript"], true);
    assert!(!e["topics"].as_array().unwrap().is_empty());

    let (_, _, last) = call(
        &app,
        post(
            "/api/episodes/latest",
            json!({"podcastId": "demo-raumfahrt", "limit": 4, "offset": 4}),
        ),
    )
    .await;
    assert_eq!(last["episodes"].as_array().unwrap().len(), 2);
    assert_eq!(last["hasMore"], false);
    // limit is clamped to 1..=50 as in the original.
    let (_, _, clamped) = call(
        &app,
        post(
            "/api/episodes/latest",
            json!({"podcastId": "demo-raumfahrt", "limit": 0}),
        ),
    )
    .await;
    assert_eq!(clamped["episodes"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn search_without_embeddings_is_lexical_and_says_so() {
    let app = app(Settings::default());
    let request = post(
        "/api/episodes/search",
        json!({"query": "Raumfahrt Forschung", "podcastId": "demo-text", "limit": 3}),
    );
    let (status, headers, body) = call(&app, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["x-podmap-search-mode"], "lexical");
    assert_eq!(body["searchMode"], "lexical");
    assert_eq!(keys(&body), ["episodes", "hasMore", "searchMode", "total"]);
    let episodes = body["episodes"].as_array().unwrap();
    assert!(!episodes.is_empty() && episodes.len() <= 3);
    let e = &episodes[0];
    assert_eq!(
        keys(e),
        [
            "date",
            "description",
            "durationSec",
            "episodeNumber",
            "hasImage",
            "hasTranscript",
            "podcastId",
            "positionScores",
            "positionsSec",
            "score",
            "speakers",
            "title",
            "topics"
        ]
    );
    let scores: Vec<f64> = episodes
        .iter()
        .map(|e| e["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // total counts every matching episode, and paging walks through them without overlap.
    let total = body["total"].as_u64().unwrap() as usize;
    let mut seen = Vec::new();
    for offset in (0..total).step_by(3) {
        let page = post(
            "/api/episodes/search",
            json!({"query": "Raumfahrt Forschung", "podcastId": "demo-text", "limit": 3, "offset": offset}),
        );
        let (_, _, body) = call(&app, page).await;
        assert_eq!(body["total"].as_u64().unwrap() as usize, total);
        assert_eq!(body["hasMore"].as_bool().unwrap(), offset + 3 < total);
        seen.extend(
            body["episodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["episodeNumber"].as_u64().unwrap()),
        );
    }
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (total, total));
}

#[tokio::test]
async fn an_unknown_search_mode_is_refused_with_a_json_error() {
    let app = app(Settings::default());
    let (status, _, body) = call(
        &app,
        post(
            "/api/episodes/search",
            json!({"query": "Mond", "podcastId": "demo-text", "mode": "fast"}),
        ),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("exact, int8 or binary"),
        "{body}"
    );
    // A known mode is accepted; this podcast has no embeddings, so it is answered lexically.
    for mode in ["exact", "int8", "binary"] {
        let (status, _, body) = call(
            &app,
            post(
                "/api/episodes/search",
                json!({"query": "Mond", "podcastId": "demo-text", "mode": mode}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{mode}: {body}");
    }
}

#[tokio::test]
async fn cross_podcast_search_covers_every_podcast() {
    let app = app(Settings::default());
    let request = post(
        "/api/episodes/search",
        json!({"query": "Raumfahrt", "crossPodcast": true, "limit": 50}),
    );
    let (status, _, body) = call(&app, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let podcasts: std::collections::BTreeSet<&str> = body["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["podcastId"].as_str().unwrap())
        .collect();
    assert!(podcasts.len() >= 2, "{podcasts:?}");
}

#[tokio::test]
async fn speakers_have_the_original_shape() {
    let app = app(Settings::default());
    let (status, _, body) = call(&app, get("/api/speakers?podcast_id=demo-raumfahrt")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows = body["speakers"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(
        keys(&rows[0]),
        [
            "episodesCount",
            "hasProfile",
            "image",
            "slug",
            "speaker",
            "totalWords",
            "utterancesCount"
        ]
    );
    assert_eq!(rows[0]["slug"], "tim-pritlove");
    // image is omitted, not null, when a speaker has none.
    assert!(rows.iter().any(|r| r.get("image").is_none()));
    let words: Vec<u64> = rows
        .iter()
        .map(|r| r["totalWords"].as_u64().unwrap())
        .collect();
    assert!(words.windows(2).all(|w| w[0] >= w[1]), "index.json order");
}

#[tokio::test]
async fn a_podcast_not_served_has_no_speakers() {
    let app = app(Settings::default());
    // No freakshow among the fixtures and more than one podcast: no default podcast.
    for uri in [
        "/api/speakers",
        "/api/speakers?podcast_id=nope",
        "/api/speakers?podcast_id=",
        "/api/speakers?podcast_id=freakshow",
    ] {
        let (status, _, body) = call(&app, get(uri)).await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, json!({"speakers": []})),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn bad_requests_get_the_original_status_with_a_json_error() {
    let app = app(Settings::default());
    let cases = [
        (
            post(
                "/api/episodes/search",
                json!({"query": "  ", "podcastId": "demo-text"}),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            post("/api/episodes/search", json!({"podcastId": "demo-text"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            post("/api/episodes/search", json!({"query": 5})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Request::post("/api/episodes/search")
                .header("content-type", "application/json")
                .body(Body::from("{not json"))
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::post("/api/episodes/search")
                .body(Body::from("{}"))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            post("/api/episodes/search", json!({"query": "x"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            post("/api/episodes/latest", json!({"podcastId": "nope"})),
            StatusCode::NOT_FOUND,
        ),
        (
            post("/api/chat", json!({"query": "x", "podcastId": "demo-text"})),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            post("/api/chat", json!({"query": " ", "podcastId": "demo-text"})),
            StatusCode::BAD_REQUEST,
        ),
        // Analytics off (no store given): no stats, and test-data needs a stats token.
        (
            get("/api/analytics/stats?days=7"),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (get("/api/analytics/test-data"), StatusCode::FORBIDDEN),
        (get("/api/nothing-here"), StatusCode::NOT_FOUND),
    ];
    for (request, want) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let (status, _, body) = call(&app, request).await;
        assert_eq!(status, want, "{what}: {body}");
        assert!(body["error"].is_string(), "{what}: {body}");
    }
    let wrong_method = call(&app, get("/api/episodes/search")).await;
    assert_eq!(wrong_method.0, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn hostile_podcast_ids_and_slugs_touch_no_file() {
    let app = app(Settings {
        llm_base_url: Some("http://127.0.0.1:9/v1".into()),
        // Every chat below fails the same way; the breaker must not open between them.
        breaker: podmap::server::breaker::BreakerConfig {
            failures: 1_000,
            ..Default::default()
        },
        ..Settings::default()
    });
    let long = "a".repeat(4096);
    let ids = [
        "../../etc/passwd",
        "..%2f..%2fetc%2fpasswd",
        "/etc/passwd",
        "demo-text\u{0}",
        "demo-text/../demo-raumfahrt",
        long.as_str(),
    ];
    for id in ids {
        for request in [
            post(
                "/api/episodes/search",
                json!({"query": "x", "podcastId": id}),
            ),
            post("/api/episodes/latest", json!({"podcastId": id})),
            post("/api/chat", json!({"query": "x", "podcastId": id})),
        ] {
            let (status, _, body) = call(&app, request).await;
            assert!(
                status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
                "{id:?}: {status} {body}"
            );
            assert!(body["error"].is_string());
        }
        let encoded: String = id.bytes().map(|b| format!("%{b:02X}")).collect();
        let (status, _, body) =
            call(&app, get(&format!("/api/speakers?podcast_id={encoded}"))).await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, json!({"speakers": []})),
            "{id:?}: a podcast not served has no speakers"
        );
    }
    // A slug is only ever looked up in the archive: one that could be a path names no one
    // and is ignored, so the request goes on exactly as without it (here to the LLM, which
    // does not answer).
    let unnamed = call(
        &app,
        post(
            "/api/chat",
            json!({"query": "x", "podcastId": "demo-raumfahrt"}),
        ),
    )
    .await;
    assert_eq!(unnamed.0, StatusCode::BAD_GATEWAY, "{}", unnamed.2);
    for slug in [
        "../../../README",
        "/etc/passwd",
        "a\u{0}b",
        long.as_str(),
        "..%2fREADME",
    ] {
        for body in [
            json!({"query": "x", "podcastId": "demo-raumfahrt", "speakerSlug": slug}),
            json!({"query": "x", "podcastId": "demo-raumfahrt", "speakerSlug2": slug}),
        ] {
            let (status, _, body) = call(&app, post("/api/chat", body)).await;
            assert_eq!((status, &body), (unnamed.0, &unnamed.2), "{slug:?}");
        }
    }
}

#[tokio::test]
async fn chat_token_is_required_when_set() {
    let app = app(Settings {
        auth_token: Some("s3cret".into()),
        ..Settings::default()
    });
    let (status, _, body) = call(
        &app,
        post("/api/chat", json!({"query": "x", "podcastId": "demo-text"})),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::FORBIDDEN, json!({"error": "permission denied"}))
    );
    let wrong = Request::post("/api/chat")
        .header("content-type", "application/json")
        .header("x-auth-token", "s3cret!")
        .body(Body::from(
            json!({"query": "x", "podcastId": "demo-text"}).to_string(),
        ))
        .unwrap();
    assert_eq!(call(&app, wrong).await.0, StatusCode::FORBIDDEN);
    let right = Request::post("/api/chat")
        .header("content-type", "application/json")
        .header("authorization", "Bearer s3cret")
        .body(Body::from(
            json!({"query": "x", "podcastId": "demo-text"}).to_string(),
        ))
        .unwrap();
    let (status, _, body) = call(&app, right).await;
    assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE); // past the token, no LLM configured
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_answered_503_at_once_instead_of_queueing() {
    // An embeddings endpoint that accepts connections and never answers keeps one search
    // in flight (until it gives up waiting, after 2 s, and answers lexically) while the next
    // request arrives.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", hung.local_addr().unwrap());
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = hung.accept().await {
            open.push(socket); // held open, never answered
        }
    });
    let app = app(Settings {
        embedding_base_url: Some(url),
        max_in_flight: 1,
        ..Settings::default()
    });
    let busy = app.clone();
    let in_flight = tokio::spawn(async move {
        let request = post(
            "/api/episodes/search",
            json!({"query": "Mond", "podcastId": "demo-raumfahrt"}),
        );
        busy.oneshot(request).await.unwrap().status()
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let (status, _, body) = call(&app, get("/api/podcasts")).await;
    assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "shed at once, not queued"
    );
    in_flight.abort();
    // Once the slot is free again, requests are served.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(call(&app, get("/api/podcasts")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn start_up_errors_name_what_failed_and_keep_the_reason() {
    use podmap::server::{serve, ServeError, Source};
    use std::error::Error as _;

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-index");
    let e = serve(Source::Mmap(missing.clone()), Settings::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ServeError::IndexDir { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("cannot open the index directory {}", missing.display())
    );
    assert!(e.source().is_some(), "the reason is kept as the source");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let settings = Settings {
        listen: taken.local_addr().unwrap(),
        ..Settings::default()
    };
    let e = serve(Source::Mmap(dir.path().to_path_buf()), settings)
        .await
        .unwrap_err();
    assert!(matches!(e, ServeError::Listen { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("cannot listen on {}", taken.local_addr().unwrap())
    );
}
