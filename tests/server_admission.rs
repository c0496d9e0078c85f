//! Admission over real sockets on loopback: per-client rate limits per route class (429 with
//! `Retry-After`), clients named by trusted proxies, health and readiness never limited,
//! deadlines answered as 504 JSON, and a started chat stream that outlives its deadline.

mod common;
mod loopback;
mod support;

use std::time::Duration;

use loopback::{get, post_json, send, start};
use podmap::server::admission::{Admission, AdmissionArgs};
use podmap::server::deadline::RouteTimeouts;
use podmap::server::limits::RateLimits;
use podmap::server::{Settings, SettingsArgs};
use serde_json::{json, Value};
use support::openai_standin::{Behaviour, EmbedMode, StandIn};

/// Settings with these rate limits and otherwise the defaults (loopback trusted).
fn limited(limits: RateLimits) -> Settings {
    Settings {
        admission: Admission {
            rate_limits: limits,
            ..Admission::default()
        },
        ..Settings::default()
    }
}

fn chat_body() -> Value {
    json!({"query": "Wie funktionieren Raketen?", "podcastId": "demo-raumfahrt"})
}

fn search_body() -> Value {
    json!({"query": "Raketen", "podcastId": "demo-raumfahrt"})
}

/// Asserts a 429 with a JSON error and a `Retry-After` of whole seconds within `max`.
fn assert_limited(reply: &loopback::Reply, max: u64) {
    assert_eq!(reply.status, 429, "{reply:?}");
    let retry: u64 = reply
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in seconds: {reply:?}"));
    assert!((1..=max).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        reply.error(),
        format!("too many requests; retry after {retry} s")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_chat_limit_gets_429_and_still_searches() {
    let server = start(limited(RateLimits {
        chat: "2/min".parse().unwrap(),
        ..RateLimits::default()
    }))
    .await;
    // No LLM is configured: chat answers 503, which is still an admitted request.
    for _ in 0..2 {
        let admitted = post_json(&server, "/api/chat", &[], chat_body()).await;
        assert_eq!(admitted.status, 503, "{admitted:?}");
    }
    let refused = post_json(&server, "/api/chat", &[], chat_body()).await;
    // 2/min: one request back every 30 s.
    assert_limited(&refused, 30);
    let search = post_json(&server, "/api/episodes/search", &[], search_body()).await;
    assert_eq!(search.status, 200, "{search:?}");
    assert!(search.json.unwrap()["episodes"].as_array().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_names_its_clients_and_each_has_its_own_quota() {
    let server = start(limited(RateLimits {
        chat: "2/min".parse().unwrap(),
        ..RateLimits::default()
    }))
    .await;
    let first = [("x-forwarded-for", "10.0.0.1")];
    let second = [("x-forwarded-for", "10.0.0.2")];
    for _ in 0..2 {
        assert_eq!(
            post_json(&server, "/api/chat", &first, chat_body())
                .await
                .status,
            503
        );
    }
    assert_limited(
        &post_json(&server, "/api/chat", &first, chat_body()).await,
        30,
    );
    // A spoofed left-most entry does not make the first client someone else.
    let spoofed = [("x-forwarded-for", "10.0.0.9, 10.0.0.1")];
    assert_eq!(
        post_json(&server, "/api/chat", &spoofed, chat_body())
            .await
            .status,
        429
    );
    for _ in 0..2 {
        assert_eq!(
            post_json(&server, "/api/chat", &second, chat_body())
                .await
                .status,
            503
        );
    }
    assert_eq!(
        post_json(&server, "/api/chat", &second, chat_body())
            .await
            .status,
        429
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_trusted_proxies_forwarded_headers_are_ignored() {
    let settings = Settings::load(SettingsArgs {
        admission: AdmissionArgs {
            trusted_proxies: Some("none".into()),
            rate_limit_chat: Some("2/min".into()),
            ..AdmissionArgs::default()
        },
        ..SettingsArgs::default()
    })
    .unwrap();
    let server = start(settings).await;
    let statuses = [
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-for", "10.0.0.2"),
        ("x-real-ip", "10.0.0.3"),
    ];
    let mut seen = Vec::new();
    for header in statuses {
        seen.push(
            post_json(&server, "/api/chat", &[header], chat_body())
                .await
                .status,
        );
    }
    assert_eq!(seen, [503, 503, 429], "one client: the peer 127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_preflights_are_never_limited() {
    let one_an_hour = "1/h".parse().unwrap();
    let server = start(limited(RateLimits {
        chat: one_an_hour,
        search: one_an_hour,
        other: one_an_hour,
    }))
    .await;
    assert_eq!(get(&server, "/api/podcasts", &[]).await.status, 200);
    assert_limited(&get(&server, "/api/podcasts", &[]).await, 3600);
    assert_eq!(
        post_json(&server, "/api/chat", &[], chat_body())
            .await
            .status,
        503
    );
    assert_eq!(
        post_json(&server, "/api/chat", &[], chat_body())
            .await
            .status,
        429
    );
    for _ in 0..20 {
        let health = get(&server, "/api/health", &[]).await;
        assert_eq!((health.status, health.text.as_str()), (200, "ok"));
        let ready = get(&server, "/api/ready", &[]).await;
        assert!(matches!(ready.status, 200 | 503), "{ready:?}");
        assert!(ready.json.unwrap().get("ready").is_some());
    }
    // A CORS preflight is answered before the limits: the front end can still ask.
    let preflight = send(
        &server,
        "OPTIONS",
        "/api/chat",
        &[
            ("origin", "https://front.example"),
            ("access-control-request-method", "POST"),
        ],
        None,
    )
    .await;
    assert_eq!(preflight.status, 200, "{preflight:?}");
    assert!(preflight.header("access-control-allow-origin").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_past_its_deadline_answers_504_json() {
    let slow = StandIn::start(Behaviour {
        embeddings: EmbedMode::Slow(Duration::from_secs(20)),
        ..Behaviour::default()
    })
    .await;
    let server = start(Settings {
        embedding_base_url: Some(slow.base_url.clone()),
        admission: Admission {
            timeouts: RouteTimeouts {
                search: Duration::from_secs(1),
                ..RouteTimeouts::default()
            },
            ..Admission::default()
        },
        ..Settings::default()
    })
    .await;
    let reply = post_json(&server, "/api/episodes/search", &[], search_body()).await;
    assert_eq!(reply.status, 504, "{reply:?}");
    assert_eq!(reply.error(), "no answer within 1 s; try again later");
    assert!(
        !slow.embedding_requests().is_empty(),
        "the search was waiting upstream"
    );
    // Other routes have their own deadline and answer.
    let latest = post_json(
        &server,
        "/api/episodes/latest",
        &[],
        json!({"podcastId": "demo-raumfahrt"}),
    )
    .await;
    assert_eq!(latest.status, 200, "{latest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_chat_stream_outlives_the_chat_deadline() {
    // Nine chunks (role, five pieces, finish, [DONE]) each 400 ms apart: the stream runs
    // for about 3.2 s, well past the 1 s deadline, which covers only its start.
    let standin = StandIn::start(Behaviour {
        piece_delay: Duration::from_millis(400),
        ..Behaviour::default()
    })
    .await;
    let server = start(Settings {
        llm_base_url: Some(standin.base_url.clone()),
        llm_api_key: Some("key".into()),
        embedding_base_url: Some(standin.base_url.clone()),
        admission: Admission {
            timeouts: RouteTimeouts {
                chat: Duration::from_secs(1),
                ..RouteTimeouts::default()
            },
            ..Admission::default()
        },
        ..Settings::default()
    })
    .await;
    let mut body = chat_body();
    body["stream"] = json!(true);
    let reply = post_json(&server, "/api/chat", &[], body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/event-stream"),
        "{reply:?}"
    );
    let deltas: String = reply
        .text
        .split("\n\n")
        .filter(|event| event.contains("event: delta"))
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|data| {
            serde_json::from_str::<Value>(data).unwrap()["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(deltas, standin.behaviour().streamed_answer());
    assert!(reply.text.contains("event: done"), "{}", reply.text);
}
