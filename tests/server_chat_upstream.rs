//! What comes back from the upstream APIs: `/api/chat` streamed over loopback HTTP as
//! server-sent events, and the embeddings client's faults (429, 500, hung, dropped, wrong
//! shapes: the search degrades to lexical) and its query cache, through
//! `/api/episodes/search`. The breaker and the bounds on upstream calls are tested in
//! `server_upstream_faults.rs`. Split from `server_chat.rs` to
//! keep each file short; the shared set-up is in `support/chat.rs`.

mod common;
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use axum::Router;
use futures_util::StreamExt;
use serde_json::{json, Value};

use support::chat::{
    app, error_of, messages_of, post, serve, settings, Answer, CORPUS_MODEL, EMBED_KEY,
    SOURCE_FIELDS,
};
use support::openai_standin::{Behaviour, EmbedMode, StandIn};

// ---------------------------------------------------------------------------------------------
// Chat: streaming over loopback

/// Server-sent events of a body, as (event, data) pairs, with the time each arrived.
async fn read_events(response: reqwest::Response) -> Vec<(String, String, Instant)> {
    let mut events = Vec::new();
    let mut buffer: Vec<u8> = Vec::new();
    let mut bytes = response.bytes_stream();
    while let Some(chunk) = bytes.next().await {
        buffer.extend_from_slice(&chunk.unwrap());
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buffer.drain(..end + 2).collect();
            let block = String::from_utf8(block).expect("events are UTF-8");
            let (mut event, mut data) = (String::from("message"), Vec::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                }
            }
            if !data.is_empty() {
                events.push((event, data.join("\n"), Instant::now()));
            }
        }
    }
    events
}

async fn stream_chat(behaviour: Behaviour) -> (StandIn, Vec<(String, String, Instant)>) {
    let llm = StandIn::start(behaviour).await;
    let app = app(settings(Some(&llm), None));
    let base = serve(app).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/api/chat"))
        .json(
            &json!({"query": "Raketenantriebe Geschichte", "podcastId": "raumzeit",
                      "topK": 2, "stream": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let events = read_events(response).await;
    (llm, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn streamed_chat_sends_sources_then_deltas_then_done() {
    let behaviour = Behaviour {
        piece_delay: Duration::from_millis(80),
        ..Behaviour::default()
    };
    let (llm, events) = stream_chat(behaviour).await;
    let names: Vec<&str> = events.iter().map(|(e, _, _)| e.as_str()).collect();
    assert_eq!(names.first(), Some(&"sources"), "{names:?}");
    assert_eq!(names.last(), Some(&"done"), "{names:?}");
    assert!(
        names[1..names.len() - 1].iter().all(|n| *n == "delta"),
        "{names:?}"
    );
    let sources: Value = serde_json::from_str(&events[0].1).unwrap();
    let sources = sources.as_array().expect("sources is a JSON array");
    assert!(!sources.is_empty() && sources.len() <= 2);
    assert_eq!(
        sources[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(SOURCE_FIELDS)
    );
    let deltas: Vec<String> = events[1..events.len() - 1]
        .iter()
        .map(|(_, data, _)| {
            let v: Value = serde_json::from_str(data).unwrap();
            v["content"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        deltas,
        llm.behaviour().pieces,
        "one delta per piece, the empty role chunk and the finish chunk left out"
    );
    // Forwarded as they come: the first piece arrived well before the stand-in finished.
    let first_delta = events[1].2;
    let done = events.last().unwrap().2;
    assert!(
        done - first_delta >= Duration::from_millis(250),
        "deltas were buffered: {:?} between the first and done",
        done - first_delta
    );
    let calls = llm.chat_requests();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].body["stream"], true);
    let (_, user) = messages_of(&calls[0].body);
    assert!(user.contains("SOURCE: Episode 3"));
}

/// A UTF-8 character split between two network reads must come out whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn streamed_chat_keeps_characters_split_between_reads() {
    let behaviour = Behaviour {
        split_frames: true,
        ..Behaviour::default()
    };
    let (llm, events) = stream_chat(behaviour).await;
    let text: String = events
        .iter()
        .filter(|(e, _, _)| e == "delta")
        .map(|(_, data, _)| {
            let v: Value = serde_json::from_str(data).unwrap();
            v["content"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, llm.behaviour().streamed_answer());
}

// ---------------------------------------------------------------------------------------------
// Embeddings: faults, through /api/episodes/search

async fn search_app(behaviour: Behaviour) -> (StandIn, Router) {
    let upstream = StandIn::start(behaviour).await;
    let app = app(settings(None, Some(&upstream)));
    (upstream, app)
}

/// Asserts a search answered lexically, in the header and the body.
#[track_caller]
fn assert_lexical(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(answer.search_mode.as_deref(), Some("lexical"));
    assert_eq!(answer.json["searchMode"], "lexical");
    assert!(!answer.json["episodes"].as_array().unwrap().is_empty());
}

async fn search(app: &Router, query: &str, offset: usize) -> Answer {
    post(
        app,
        "/api/episodes/search",
        &[],
        json!({"query": query, "podcastId": "raumzeit", "offset": offset}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn semantic_search_sends_an_openai_embeddings_request() {
    let (upstream, app) = search_app(Behaviour::default()).await;
    let answer = search(&app, "Schwarze Löcher", 0).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(answer.search_mode.as_deref(), Some("semantic"));
    assert_eq!(answer.json["searchMode"], "semantic");
    assert_eq!(answer.json["episodes"].as_array().unwrap().len(), 10);
    let calls = upstream.embedding_requests();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].body,
        json!({"model": CORPUS_MODEL, "input": ["Schwarze Löcher"]})
    );
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some(format!("Bearer {EMBED_KEY}").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn rate_limits_are_retried() {
    let upstream = StandIn::start(Behaviour {
        embeddings: EmbedMode::FailFirst {
            status: 429,
            times: 2,
        },
        ..Behaviour::default()
    })
    .await;
    // Two Retry-After waits of a second are longer than a search waits by default.
    let app = app(podmap::server::Settings {
        search_embedding_wait: Duration::from_secs(20),
        ..settings(None, Some(&upstream))
    });
    let started = Instant::now();
    let answer = search(&app, "Mondlandung", 0).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(answer.search_mode.as_deref(), Some("semantic"));
    assert_eq!(upstream.embedding_requests().len(), 3);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1900),
        "each retry waited the stand-in's Retry-After of 1 s: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn server_errors_degrade_to_lexical_within_bounds() {
    let (upstream, app) = search_app(Behaviour {
        embeddings: EmbedMode::AlwaysFail(500),
        ..Behaviour::default()
    })
    .await;
    let started = Instant::now();
    let answer = search(&app, "Mondlandung", 0).await;
    let elapsed = started.elapsed();
    assert_lexical(&answer);
    let attempts = upstream.embedding_requests().len();
    assert!((1..=4).contains(&attempts), "{attempts} attempts");
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    // Retries go on in the background after the search has answered; let them end.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts = upstream.embedding_requests().len();
    assert!((2..=4).contains(&attempts), "{attempts} attempts");
    // A failure is not cached: the next request tries again.
    search(&app, "Mondlandung", 0).await;
    assert!(upstream.embedding_requests().len() > attempts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn a_hung_upstream_degrades_to_lexical_after_the_wait() {
    let (upstream, app) = search_app(Behaviour {
        embeddings: EmbedMode::Slow(Duration::from_secs(60)),
        ..Behaviour::default()
    })
    .await;
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(40), search(&app, "Mondlandung", 0))
        .await
        .expect("the server answers despite a hung upstream");
    let elapsed = started.elapsed();
    assert_lexical(&answer);
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(1900),
        "waited the search's 2 s for the embedding: {elapsed:?}"
    );
    assert!(!upstream.embedding_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn dropped_connections_are_retried_then_lexical() {
    let (upstream, app) = search_app(Behaviour {
        embeddings: EmbedMode::Drop,
        ..Behaviour::default()
    })
    .await;
    let started = Instant::now();
    let answer = search(&app, "Mondlandung", 0).await;
    assert_lexical(&answer);
    // Retries go on in the background after the search has answered; let them end.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts = upstream.requests();
    assert!(
        (2..=4).contains(&attempts.len()),
        "{} attempts",
        attempts.len()
    );
    assert!(attempts.iter().all(|r| r.path == "/v1/embeddings"));
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn embeddings_of_the_wrong_dimension_are_502() {
    let (upstream, app) = search_app(Behaviour {
        dims: 10,
        ..Behaviour::default()
    })
    .await;
    let answer = search(&app, "Mondlandung", 0).await;
    let message = error_of(&answer, StatusCode::BAD_GATEWAY);
    assert!(message.contains("dimensions"), "{message}");
    assert!(
        message.contains("10") && message.contains("384"),
        "{message}"
    );
    assert_eq!(upstream.embedding_requests().len(), 1, "not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn answers_of_the_wrong_shape_degrade_to_lexical() {
    let (upstream, app) = search_app(Behaviour {
        embeddings: EmbedMode::WrongShape,
        ..Behaviour::default()
    })
    .await;
    let answer = search(&app, "Mondlandung", 0).await;
    assert_lexical(&answer);
    assert_eq!(upstream.embedding_requests().len(), 1, "not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn query_embeddings_are_cached() {
    let (upstream, app) = search_app(Behaviour::default()).await;
    let first = search(&app, "Schwarze Löcher", 0).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.json);
    let again = search(&app, "Schwarze Löcher", 0).await;
    assert_eq!(again.json, first.json);
    let spaced = search(&app, "  Schwarze \n  Löcher ", 0).await;
    assert_eq!(spaced.json, first.json);
    assert_eq!(upstream.embedding_requests().len(), 1);
    let page2 = search(&app, "Schwarze Löcher", 10).await;
    assert_eq!(page2.status, StatusCode::OK, "{}", page2.json);
    assert!(!page2.json["episodes"].as_array().unwrap().is_empty());
    assert_ne!(page2.json["episodes"][0], first.json["episodes"][0]);
    assert_eq!(
        upstream.embedding_requests().len(),
        1,
        "paging costs no call"
    );
    search(&app, "schwarze löcher", 0).await;
    assert_eq!(
        upstream.embedding_requests().len(),
        2,
        "case is part of the key"
    );

    // Concurrent requests for a new query share one call.
    let slow = StandIn::start(Behaviour {
        embed_delay: Duration::from_millis(300),
        ..Behaviour::default()
    })
    .await;
    let app = self::app(settings(None, Some(&slow)));
    let answers =
        futures_util::future::join_all((0..5).map(|_| search(&app, "Venus Atmosphäre", 0))).await;
    assert!(answers.iter().all(|a| a.status == StatusCode::OK));
    assert_eq!(slow.embedding_requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn semantic_chat_embeds_the_question_once() {
    // One stand-in serves both APIs, as one OpenAI base URL does.
    let upstream = StandIn::start(Behaviour::default()).await;
    let app = app(settings(Some(&upstream), Some(&upstream)));
    for _ in 0..2 {
        let answer = post(
            &app,
            "/api/chat",
            &[],
            json!({"query": "Wie funktioniert ein Ionenantrieb?", "podcastId": "raumzeit", "topK": 4}),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
        let sources = answer.json["sources"].as_array().unwrap();
        assert_eq!(sources.len(), 4, "every item has a score in semantic mode");
    }
    assert_eq!(upstream.embedding_requests().len(), 1, "cached");
    assert_eq!(upstream.chat_requests().len(), 2);
    let paths: Vec<String> = upstream.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/v1/embeddings",
            "/v1/chat/completions",
            "/v1/chat/completions"
        ]
    );
}
