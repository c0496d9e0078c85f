//! Upstream resilience through the router, over the bundled fixtures and the OpenAI stand-in:
//! the circuit breaker opens after repeated failures and stops calling the API, half-opens
//! after its cool-down and closes on success; searches degrade to lexical when embeddings
//! cannot be had; chat answers 502/503 with its sources when the LLM fails or is not called;
//! a cross-podcast search over semantic and lexical podcasts ranks by reciprocal-rank fusion.

mod common;
mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;
use podmap::server::breaker::{BreakerConfig, State};
use podmap::server::{catalog, AppState, Settings};
use serde_json::{json, Value};

use support::chat::{post, settings, Answer, SOURCE_FIELDS};
use support::openai_standin::{Behaviour, ChatMode, EmbedMode, StandIn};

/// Matches items of every fixture podcast lexically.
const QUERY: &str = "Raumfahrt Physik Teleskop";

fn state(settings: Settings) -> Arc<AppState> {
    let catalog = catalog::load_mmap(common::fixtures_index()).unwrap();
    Arc::new(AppState::new(catalog, settings))
}

fn app(state: &Arc<AppState>) -> Router {
    podmap::server::router(state.clone())
}

/// A URL on loopback where nothing listens: the API is down.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/v1")
}

fn breaker(failures: u32, cool_down: Duration) -> BreakerConfig {
    BreakerConfig {
        failures,
        cool_down,
    }
}

async fn search(app: &Router, query: &str, podcast: &str) -> Answer {
    post(
        app,
        "/api/episodes/search",
        &[],
        json!({"query": query, "podcastId": podcast}),
    )
    .await
}

async fn chat(app: &Router, stream: bool) -> Answer {
    post(
        app,
        "/api/chat",
        &[],
        json!({"query": QUERY, "podcastId": "demo-raumfahrt", "topK": 3, "stream": stream}),
    )
    .await
}

#[track_caller]
fn assert_mode(answer: &Answer, mode: &str) {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(answer.search_mode.as_deref(), Some(mode), "{}", answer.json);
    assert_eq!(answer.json["searchMode"], mode);
    assert!(
        !answer.json["episodes"].as_array().unwrap().is_empty(),
        "{}",
        answer.json
    );
}

/// Asserts a chat answered `status` with a JSON error and the sources it found, shaped as a
/// successful answer's; returns the error message.
#[track_caller]
fn assert_unanswered(answer: &Answer, status: StatusCode) -> String {
    assert_eq!(answer.status, status, "{}", answer.json);
    assert!(answer.content_type.starts_with("application/json"));
    let keys: BTreeSet<&str> = answer
        .json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["error", "sources"]),
        "{}",
        answer.json
    );
    let sources = answer.json["sources"].as_array().unwrap();
    assert!(!sources.is_empty(), "{}", answer.json);
    for source in sources {
        let fields: BTreeSet<&str> = source
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields, BTreeSet::from(SOURCE_FIELDS));
    }
    answer.json["error"].as_str().unwrap().to_owned()
}

/// Waits until the stand-in has received a first request (within a generous bound).
async fn arrived(count: impl Fn() -> usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while count() == 0 {
        assert!(Instant::now() < deadline, "the first call never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn embeddings_state(state: &AppState) -> State {
    state.embedder.as_ref().unwrap().guard().breaker().state()
}

// ---------------------------------------------------------------------------------------------
// Embeddings: the breaker, and searches degraded to lexical

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_after_n_failures_and_stops_calling_the_api() {
    let upstream = StandIn::start(Behaviour {
        embeddings: EmbedMode::AlwaysFail(500),
        ..Behaviour::default()
    })
    .await;
    let state = state(Settings {
        breaker: breaker(3, Duration::from_secs(3600)),
        search_embedding_wait: Duration::from_secs(20),
        ..settings(None, Some(&upstream))
    });
    let app = app(&state);
    // Three failed attempts (of the four one search may make) open the breaker.
    assert_mode(&search(&app, QUERY, "demo-raumfahrt").await, "lexical");
    assert_eq!(upstream.embedding_requests().len(), 3);
    assert_eq!(embeddings_state(&state), State::Open);
    for query in ["Teleskop", "Raumstation", QUERY] {
        let started = Instant::now();
        let answer = search(&app, query, "demo-forschung").await;
        assert_mode(&answer, "lexical");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "refused at once"
        );
    }
    assert_eq!(
        upstream.embedding_requests().len(),
        3,
        "an open breaker calls no more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_half_opens_after_the_cool_down_and_closes_on_success() {
    let upstream = StandIn::start(Behaviour {
        embeddings: EmbedMode::FailFirst {
            status: 503,
            times: 2,
        },
        ..Behaviour::default()
    })
    .await;
    let cool_down = Duration::from_millis(600);
    let state = state(Settings {
        breaker: breaker(2, cool_down),
        search_embedding_wait: Duration::from_secs(20),
        ..settings(None, Some(&upstream))
    });
    let app = app(&state);
    assert_mode(&search(&app, QUERY, "demo-raumfahrt").await, "lexical");
    assert_eq!(embeddings_state(&state), State::Open);
    assert_eq!(upstream.embedding_requests().len(), 2);
    tokio::time::sleep(cool_down + Duration::from_millis(200)).await;
    // The next call is the probe; the stand-in answers it, so the breaker closes and the
    // semantic path is back.
    assert_mode(&search(&app, QUERY, "demo-raumfahrt").await, "semantic");
    assert_eq!(embeddings_state(&state), State::Closed);
    assert_mode(
        &search(&app, "Teleskop", "demo-raumfahrt").await,
        "semantic",
    );
    assert_eq!(upstream.embedding_requests().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_answers_lexically_within_the_wait_when_embeddings_are_down_or_hung() {
    let hung = StandIn::start(Behaviour {
        embeddings: EmbedMode::Slow(Duration::from_secs(60)),
        ..Behaviour::default()
    })
    .await;
    let down = closed_port().await;
    for base_url in [hung.base_url.clone(), down] {
        let state = state(Settings {
            embedding_base_url: Some(base_url.clone()),
            search_embedding_wait: Duration::from_millis(500),
            ..Settings::default()
        });
        let app = app(&state);
        let started = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            search(&app, QUERY, "demo-raumfahrt"),
        )
        .await
        .expect("answered despite the embeddings API");
        assert_mode(&answer, "lexical");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{base_url}: answered after the search's wait, not the retry budget: {:?}",
            started.elapsed()
        );
        // The same podcasts are semantic when the API answers.
        let up = StandIn::start(Behaviour::default()).await;
        let healthy = podmap::server::router(self::state(settings(None, Some(&up))));
        assert_mode(&search(&healthy, QUERY, "demo-raumfahrt").await, "semantic");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_that_finds_every_slot_taken_answers_lexically() {
    let slow = StandIn::start(Behaviour {
        embed_delay: Duration::from_secs(3),
        ..Behaviour::default()
    })
    .await;
    let state = state(Settings {
        embedding_max_concurrency: 1,
        search_embedding_wait: Duration::from_secs(20),
        ..settings(None, Some(&slow))
    });
    let app = app(&state);
    let (first, second) = tokio::join!(search(&app, "Teleskop", "demo-raumfahrt"), async {
        arrived(|| slow.embedding_requests().len()).await;
        // Another query needs its own call, and the one slot is taken.
        search(&app, QUERY, "demo-raumfahrt").await
    });
    assert_mode(&second, "lexical");
    assert_mode(&first, "semantic");
    assert_eq!(slow.embedding_requests().len(), 1);
    assert_eq!(
        embeddings_state(&state),
        State::Closed,
        "busy is no failure"
    );
}

// ---------------------------------------------------------------------------------------------
// Chat: 502/503 with the sources; retrieval degraded to lexical

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_with_the_llm_down_answers_502_then_503_with_its_sources() {
    let state = state(Settings {
        llm_base_url: Some(closed_port().await),
        breaker: breaker(2, Duration::from_secs(3600)),
        ..Settings::default()
    });
    let app = app(&state);
    for stream in [false, true] {
        let message = assert_unanswered(&chat(&app, stream).await, StatusCode::BAD_GATEWAY);
        assert!(message.contains("unreachable"), "{message}");
    }
    for stream in [false, true] {
        let message = assert_unanswered(&chat(&app, stream).await, StatusCode::SERVICE_UNAVAILABLE);
        assert!(message.contains("circuit open"), "{message}");
    }
    let llm = state.chat.as_ref().unwrap().guard().breaker().state();
    assert_eq!(llm, State::Open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_llm_breaker_stops_calling_and_a_failed_probe_reopens_it() {
    let failing = StandIn::start(Behaviour {
        chat: ChatMode::Fail(500),
        ..Behaviour::default()
    })
    .await;
    let cool_down = Duration::from_millis(500);
    let state = state(Settings {
        breaker: breaker(2, cool_down),
        ..settings(Some(&failing), None)
    });
    let app = app(&state);
    for _ in 0..2 {
        assert_unanswered(&chat(&app, false).await, StatusCode::BAD_GATEWAY);
    }
    for _ in 0..3 {
        assert_unanswered(&chat(&app, false).await, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(
        failing.chat_requests().len(),
        2,
        "refused calls are not sent"
    );
    tokio::time::sleep(cool_down + Duration::from_millis(200)).await;
    // The probe fails too: open again, for another cool-down.
    assert_unanswered(&chat(&app, false).await, StatusCode::BAD_GATEWAY);
    assert_unanswered(&chat(&app, false).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(failing.chat_requests().len(), 3);

    let llm = state.chat.as_ref().unwrap().guard().breaker().state();
    assert_eq!(llm, State::Open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_breaker_closes_after_a_good_probe() {
    let recovering = StandIn::start(Behaviour {
        chat: ChatMode::FailFirst {
            status: 503,
            times: 2,
        },
        ..Behaviour::default()
    })
    .await;
    let cool_down = Duration::from_millis(500);
    let state = state(Settings {
        breaker: breaker(2, cool_down),
        ..settings(Some(&recovering), None)
    });
    let app = app(&state);
    for _ in 0..2 {
        assert_unanswered(&chat(&app, false).await, StatusCode::BAD_GATEWAY);
    }
    assert_unanswered(&chat(&app, true).await, StatusCode::SERVICE_UNAVAILABLE);
    tokio::time::sleep(cool_down + Duration::from_millis(200)).await;
    let answer = chat(&app, false).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    let llm = state.chat.as_ref().unwrap().guard().breaker();
    assert_eq!(llm.state(), State::Closed);
    assert_eq!(chat(&app, false).await.status, StatusCode::OK);
    assert_eq!(recovering.chat_requests().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_that_finds_every_llm_slot_taken_is_503_with_its_sources() {
    let slow = StandIn::start(Behaviour {
        chat: ChatMode::Slow(Duration::from_secs(3)),
        ..Behaviour::default()
    })
    .await;
    let state = state(Settings {
        llm_max_concurrency: 1,
        ..settings(Some(&slow), None)
    });
    let app = app(&state);
    let (first, second) = tokio::join!(chat(&app, false), async {
        arrived(|| slow.chat_requests().len()).await;
        chat(&app, false).await
    });
    let message = assert_unanswered(&second, StatusCode::SERVICE_UNAVAILABLE);
    assert!(message.contains("in flight"), "{message}");
    assert_eq!(first.status, StatusCode::OK, "{}", first.json);
    assert_eq!(slow.chat_requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_retrieval_degrades_to_lexical_when_embeddings_are_down() {
    let llm = StandIn::start(Behaviour::default()).await;
    let state = state(Settings {
        embedding_base_url: Some(closed_port().await),
        search_embedding_wait: Duration::from_millis(500),
        ..settings(Some(&llm), None)
    });
    let answer = chat(&app(&state), false).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    let sources = answer.json["sources"].as_array().unwrap();
    assert!(!sources.is_empty());
    // Lexical scores are whole counts of matches, never cosines.
    assert!(
        sources.iter().all(|s| {
            let score = s["score"].as_f64().unwrap();
            score >= 1.0 && score.fract() == 0.0
        }),
        "{}",
        answer.json
    );
    assert_eq!(llm.chat_requests().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Mixed-mode cross-podcast search: reciprocal-rank fusion

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_search_interleaves_semantic_and_lexical_podcasts() {
    let upstream = StandIn::start(Behaviour::default()).await;
    let app = app(&state(settings(None, Some(&upstream))));
    // The premise: on their own, lexical scores are counts (1 and up), cosines are under 1.
    let scores = |answer: &Answer| -> Vec<f64> {
        answer.json["episodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["score"].as_f64().unwrap())
            .collect()
    };
    let lexical = search(&app, QUERY, "demo-text").await;
    assert_mode(&lexical, "lexical");
    assert!(
        scores(&lexical).iter().all(|&s| s >= 1.0),
        "{}",
        lexical.json
    );
    let semantic = search(&app, QUERY, "demo-raumfahrt").await;
    assert_mode(&semantic, "semantic");
    assert!(
        scores(&semantic).iter().all(|&s| s < 1.0),
        "{}",
        semantic.json
    );

    let mixed = post(
        &app,
        "/api/episodes/search",
        &[],
        json!({"query": QUERY, "crossPodcast": true, "limit": 50}),
    )
    .await;
    assert_mode(&mixed, "mixed");
    let episodes: Vec<(String, f64)> = mixed.json["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e: &Value| {
            (
                e["podcastId"].as_str().unwrap().to_owned(),
                e["score"].as_f64().unwrap(),
            )
        })
        .collect();
    // Each podcast's first episode, then each one's second, …: the first three places hold
    // one episode of each podcast, all with the fused score of rank 1.
    let first: BTreeSet<&str> = episodes[..3].iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        first,
        BTreeSet::from(["demo-forschung", "demo-raumfahrt", "demo-text"]),
        "{episodes:?}"
    );
    for (_, score) in &episodes[..3] {
        assert!((score - 1.0 / 61.0).abs() < 1e-6, "{episodes:?}");
    }
    let lexical_places: Vec<usize> = episodes
        .iter()
        .enumerate()
        .filter(|(_, (p, _))| p == "demo-text")
        .map(|(i, _)| i)
        .collect();
    assert!(lexical_places.len() >= 3, "{episodes:?}");
    assert_ne!(
        lexical_places,
        (0..lexical_places.len()).collect::<Vec<_>>(),
        "lexical episodes do not all come first: {episodes:?}"
    );
    assert!(
        episodes.windows(2).all(|w| w[0].1 >= w[1].1),
        "{episodes:?}"
    );
    // Within each podcast the order is its own search's.
    let own: Vec<String> = semantic.json["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["episodeNumber"].to_string())
        .collect();
    let fused: Vec<String> = mixed.json["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["podcastId"] == "demo-raumfahrt")
        .map(|e| e["episodeNumber"].to_string())
        .collect();
    assert_eq!(
        fused[..own.len().min(fused.len())],
        own[..own.len().min(fused.len())]
    );
}
