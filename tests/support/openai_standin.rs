//! A local stand-in for an OpenAI-compatible API, for tests of the server's upstream calls.
//!
//! It speaks the real wire protocol on `127.0.0.1:<free port>` and records every request it
//! receives:
//!
//! - `POST /v1/chat/completions`: a `chat.completion` object, or with `"stream": true` a
//!   `text/event-stream` of `chat.completion.chunk` lines (role first, then the content pieces,
//!   then an empty delta with `finish_reason`, then `data: [DONE]`), as OpenAI sends them;
//!   optionally a status error with OpenAI's error body.
//! - `POST /v1/embeddings`: one fixed vector per input, or one of the fault modes of
//!   [`EmbedMode`].
//!
//! [`EmbedMode::Drop`] serves raw TCP instead of HTTP: every connection is read once and closed
//! without an answer, whatever the path.

#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

/// How `POST /v1/embeddings` answers.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedMode {
    /// A vector of `dims` values per input.
    Ok,
    /// `status` (with OpenAI's error body) for the first `times` requests, then `Ok`.
    FailFirst { status: u16, times: usize },
    /// `status` for every request.
    AlwaysFail(u16),
    /// Waits this long before answering `Ok`.
    Slow(Duration),
    /// Accepts the connection, reads the request and closes the socket without an answer.
    Drop,
    /// A 200 JSON body that is not an embeddings list.
    WrongShape,
}

/// How `POST /v1/chat/completions` answers.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatMode {
    /// Non-streaming: `answer`; streaming: `pieces`, one chunk each.
    Ok,
    /// `status` with OpenAI's error body.
    Fail(u16),
    /// `status` for the first `times` requests, then `Ok`.
    FailFirst { status: u16, times: usize },
    /// Waits this long before answering as `Ok`.
    Slow(Duration),
}

/// What one stand-in does.
#[derive(Debug, Clone)]
pub struct Behaviour {
    pub chat: ChatMode,
    /// The non-streaming answer's content, sent as is (untrimmed).
    pub answer: String,
    /// The streamed answer's content pieces.
    pub pieces: Vec<String>,
    /// Pause before each streamed chunk.
    pub piece_delay: Duration,
    /// Send every streamed line as two body frames, split inside its first multi-byte
    /// character (or in the middle), with a pause between them: what TCP and TLS may do.
    pub split_frames: bool,
    pub embeddings: EmbedMode,
    /// Length of the embedding vectors (a request's `dimensions` field wins).
    pub dims: usize,
    /// Pause before every successful embeddings answer.
    pub embed_delay: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            chat: ChatMode::Ok,
            answer: "  ANSWER aus dem Stand-in (Episode 3, 0:00-0:00).\n  ".to_owned(),
            pieces: [
                "Raketen",
                "antriebe ",
                "gibt es ",
                "seit über ",
                "tausend Jahren.",
            ]
            .map(str::to_owned)
            .to_vec(),
            piece_delay: Duration::ZERO,
            split_frames: false,
            embeddings: EmbedMode::Ok,
            dims: 384,
            embed_delay: Duration::ZERO,
        }
    }
}

impl Behaviour {
    /// The answer the server should pass on: the non-streaming content, trimmed.
    pub fn trimmed_answer(&self) -> &str {
        self.answer.trim()
    }

    /// The streamed pieces joined.
    pub fn streamed_answer(&self) -> String {
        self.pieces.concat()
    }
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub authorization: Option<String>,
    /// The JSON body (`Value::String` with the raw text if it was not JSON, `Null` in
    /// [`EmbedMode::Drop`]).
    pub body: Value,
}

struct Shared {
    behaviour: Behaviour,
    log: Mutex<Vec<Recorded>>,
    embed_calls: AtomicUsize,
    chat_calls: AtomicUsize,
}

/// A running stand-in; it stops with the test's runtime.
#[derive(Clone)]
pub struct StandIn {
    /// `http://127.0.0.1:PORT/v1`
    pub base_url: String,
    shared: Arc<Shared>,
}

impl StandIn {
    /// Starts a stand-in on `127.0.0.1:0` in the current runtime.
    pub async fn start(behaviour: Behaviour) -> StandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let drop_mode = behaviour.embeddings == EmbedMode::Drop;
        let shared = Arc::new(Shared {
            behaviour,
            log: Mutex::new(Vec::new()),
            embed_calls: AtomicUsize::new(0),
            chat_calls: AtomicUsize::new(0),
        });
        if drop_mode {
            tokio::spawn(drop_connections(listener, shared.clone()));
        } else {
            let app = Router::new()
                .route("/v1/chat/completions", post(chat))
                .route("/v1/embeddings", post(embeddings))
                .with_state(shared.clone());
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
        }
        StandIn {
            base_url: format!("http://{addr}/v1"),
            shared,
        }
    }

    pub fn behaviour(&self) -> &Behaviour {
        &self.shared.behaviour
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Bodies of the chat completion requests.
    pub fn chat_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/chat/completions"))
            .collect()
    }

    /// Bodies of the embeddings requests.
    pub fn embedding_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/embeddings"))
            .collect()
    }
}

/// The fixed embedding of the stand-in: `dims` values, not all zero.
pub fn fixed_vector(dims: usize) -> Vec<f32> {
    (0..dims)
        .map(|i| ((i * 37) % 11) as f32 / 10.0 - 0.45)
        .collect()
}

fn record(shared: &Shared, path: &str, headers: &HeaderMap, body: &[u8]) -> Value {
    let body = serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
    shared.log.lock().unwrap().push(Recorded {
        path: path.to_owned(),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: body.clone(),
    });
    body
}

fn openai_error(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    let (kind, code) = if status == StatusCode::TOO_MANY_REQUESTS {
        ("requests", "rate_limit_exceeded")
    } else {
        ("server_error", "internal_error")
    };
    let mut response = (
        status,
        Json(json!({"error": {
            "message": format!("stand-in answers {}", status.as_u16()),
            "type": kind,
            "param": null,
            "code": code,
        }})),
    )
        .into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, "1".parse().unwrap());
    }
    response
}

async fn embeddings(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = record(&shared, "/v1/embeddings", &headers, &body);
    let n = shared.embed_calls.fetch_add(1, Ordering::SeqCst);
    let b = &shared.behaviour;
    match &b.embeddings {
        EmbedMode::FailFirst { status, times } if n < *times => return openai_error(*status),
        EmbedMode::AlwaysFail(status) => return openai_error(*status),
        EmbedMode::Slow(pause) => tokio::time::sleep(*pause).await,
        EmbedMode::WrongShape => {
            return Json(json!({"object": "list", "results": [[0.1, 0.2]]})).into_response()
        }
        _ => {}
    }
    tokio::time::sleep(b.embed_delay).await;
    let dims = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(b.dims, |d| d as usize);
    let inputs = match body.get("input") {
        Some(Value::Array(a)) => a.len(),
        _ => 1,
    };
    let data: Vec<Value> = (0..inputs)
        .map(|i| json!({"object": "embedding", "index": i, "embedding": fixed_vector(dims)}))
        .collect();
    Json(json!({
        "object": "list",
        "data": data,
        "model": body.get("model").cloned().unwrap_or(Value::Null),
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }))
    .into_response()
}

async fn chat(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let body = record(&shared, "/v1/chat/completions", &headers, &body);
    let b = &shared.behaviour;
    let n = shared.chat_calls.fetch_add(1, Ordering::SeqCst);
    match b.chat {
        ChatMode::Fail(status) => return openai_error(status),
        ChatMode::FailFirst { status, times } if n < times => return openai_error(status),
        ChatMode::Slow(pause) => tokio::time::sleep(pause).await,
        ChatMode::Ok | ChatMode::FailFirst { .. } => {}
    }
    let model = body.get("model").cloned().unwrap_or(Value::Null);
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        return Json(json!({
            "id": "chatcmpl-standin",
            "object": "chat.completion",
            "created": 1_767_225_600,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": b.answer, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
        }))
        .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        let line = json!({
            "id": "chatcmpl-standin",
            "object": "chat.completion.chunk",
            "created": 1_767_225_600,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        format!("data: {line}\n\n")
    };
    let mut lines = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    lines.extend(
        b.pieces
            .iter()
            .map(|p| chunk(json!({"content": p}), Value::Null)),
    );
    lines.push(chunk(json!({}), json!("stop")));
    lines.push("data: [DONE]\n\n".to_owned());
    let mut frames: Vec<(Duration, Bytes)> = Vec::new();
    for line in lines {
        let bytes = line.into_bytes();
        if b.split_frames {
            let cut = bytes
                .iter()
                .position(|&c| c >= 0xC0)
                .map_or(bytes.len() / 2, |i| i + 1);
            frames.push((b.piece_delay, Bytes::copy_from_slice(&bytes[..cut])));
            frames.push((
                Duration::from_millis(30),
                Bytes::copy_from_slice(&bytes[cut..]),
            ));
        } else {
            frames.push((b.piece_delay, Bytes::from(bytes)));
        }
    }
    let stream = futures_util::stream::iter(frames).then(|(pause, frame)| async move {
        tokio::time::sleep(pause).await;
        Ok::<_, Infallible>(frame)
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// [`EmbedMode::Drop`]: read what the client sends first, then close without answering.
async fn drop_connections(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("")
                .to_owned();
            let authorization = head
                .lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                })
                .map(|(_, v)| v.trim().to_owned());
            shared.embed_calls.fetch_add(1, Ordering::SeqCst);
            shared.log.lock().unwrap().push(Recorded {
                path,
                authorization,
                body: Value::Null,
            });
            drop(socket);
        });
    }
}
