//! The stand-in OpenAI embeddings endpoint the bench's servers call for query vectors: the
//! generated vectors are random, so no real model fits them. Split from `main.rs` by concern.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};

struct StandInState {
    /// `data` bodies, serialised once: query vector `i` as an OpenAI embeddings answer.
    bodies: Vec<String>,
    calls: AtomicU64,
}

/// An OpenAI-compatible embeddings endpoint on loopback, in a thread of its own.
pub struct StandIn {
    pub base_url: String,
    state: Arc<StandInState>,
}

impl StandIn {
    pub fn start(queries: &[Vec<f32>]) -> StandIn {
        let bodies = queries
            .iter()
            .map(|v| {
                serde_json::json!({
                    "object": "list",
                    "data": [{"object": "embedding", "index": 0, "embedding": v}],
                    "model": "stand-in",
                    "usage": {"prompt_tokens": 1, "total_tokens": 1},
                })
                .to_string()
            })
            .collect();
        let state = Arc::new(StandInState {
            bodies,
            calls: AtomicU64::new(0),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the stand-in");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/v1/embeddings", post(stand_in_embeddings))
            .with_state(state.clone());
        std::thread::Builder::new()
            .name("embeddings-stand-in".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    axum::serve(listener, app).await.unwrap();
                });
            })
            .unwrap();
        StandIn {
            base_url: format!("http://{addr}/v1"),
            state,
        }
    }

    pub fn calls(&self) -> u64 {
        self.state.calls.load(Ordering::SeqCst)
    }
}

/// Query text `q{i}` gets vector `i`; any other text a vector picked by its hash.
fn vector_for(text: &str, n: usize) -> usize {
    match text.strip_prefix('q').and_then(|i| i.parse::<usize>().ok()) {
        Some(i) if i < n => i,
        _ => {
            let mut hasher = DefaultHasher::new();
            text.hash(&mut hasher);
            (hasher.finish() % n as u64) as usize
        }
    }
}

async fn stand_in_embeddings(
    State(state): State<Arc<StandInState>>,
    Json(request): Json<serde_json::Value>,
) -> impl IntoResponse {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let input = &request["input"];
    let text = input
        .as_str()
        .or_else(|| input.get(0).and_then(|v| v.as_str()))
        .unwrap_or("");
    let i = vector_for(text, state.bodies.len());
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.bodies[i].clone(),
    )
}
