//! Requests that make the serving layers count their own metrics, through the router over
//! the bundled fixtures: a request refused by a rate limit, one past its deadline, embeddings
//! calls that fail until the breaker opens, and searches degraded because the embeddings API
//! is slow or every slot is taken. The metrics tests use them to see every documented metric
//! in a scrape and to check the counts the layers make.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use podmap::server::admission::Admission;
use podmap::server::breaker::BreakerConfig;
use podmap::server::deadline::RouteTimeouts;
use podmap::server::limits::{Limit, Rate, RateLimits};
use podmap::server::{catalog, AppState, Settings};
use serde_json::json;

use super::chat::{post, settings, Answer};
use super::openai_standin::{Behaviour, ChatMode, EmbedMode, StandIn};

/// The router over the bundled fixtures with `settings`, and its state.
pub fn fixtures_app(settings: Settings) -> (axum::Router, Arc<AppState>) {
    let catalog = catalog::load_mmap(crate::common::fixtures_index()).unwrap();
    let state = Arc::new(AppState::new(catalog, settings));
    (podmap::server::router(state.clone()), state)
}

/// `settings` whose `other` route class allows one request a minute (search and chat off).
pub fn one_a_minute(settings: Settings) -> Settings {
    Settings {
        admission: Admission {
            rate_limits: RateLimits {
                other: Limit(Some(Rate::per_minute(1))),
                ..RateLimits::off()
            },
            ..settings.admission
        },
        ..settings
    }
}

async fn search(app: &axum::Router, query: &str) -> Answer {
    let body = json!({"query": query, "podcastId": "demo-raumfahrt"});
    post(app, "/api/episodes/search", &[], body).await
}

#[track_caller]
fn assert_lexical(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(
        answer.search_mode.as_deref(),
        Some("lexical"),
        "{}",
        answer.json
    );
}

/// Two `/api/podcasts` requests under a limit of one a minute: the second is refused (429),
/// counted as `podmap_rate_limited_total{class="other"}`.
pub async fn rate_limited() {
    let (app, _) = fixtures_app(one_a_minute(Settings::default()));
    let get = |app: axum::Router| async move {
        use tower::ServiceExt;
        let request = axum::http::Request::get("/api/podcasts")
            .body(axum::body::Body::empty())
            .unwrap();
        app.oneshot(request).await.unwrap().status()
    };
    assert_eq!(get(app.clone()).await, StatusCode::OK);
    assert_eq!(get(app).await, StatusCode::TOO_MANY_REQUESTS);
}

/// A chat whose LLM answers after its 300 ms deadline: 504, counted as
/// `podmap_http_timed_out_total{route="/api/chat"}`.
pub async fn timed_out() {
    let slow = StandIn::start(Behaviour {
        chat: ChatMode::Slow(Duration::from_secs(10)),
        ..Behaviour::default()
    })
    .await;
    let base = settings(Some(&slow), None);
    let (app, _) = fixtures_app(Settings {
        admission: Admission {
            timeouts: RouteTimeouts {
                chat: Duration::from_millis(300),
                ..RouteTimeouts::default()
            },
            ..base.admission.clone()
        },
        ..base
    });
    let body = json!({"query": "Raumfahrt", "podcastId": "demo-raumfahrt", "stream": false});
    let answer = post(&app, "/api/chat", &[], body).await;
    assert_eq!(
        answer.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        answer.json
    );
}

/// The attempts [`breaker_opened`]'s first search makes: all a search may make.
pub const FAILED_ATTEMPTS: usize = 4;

/// An embeddings API that always answers 500, behind a breaker that opens after four
/// failures: the first search makes its four attempts (three retries), all failed, which
/// opens the breaker, and is degraded (`upstream_error`); the second finds the breaker open
/// (`rejected_open`, `breaker_open`). Returns the state, whose breaker stays open for an hour.
pub async fn breaker_opened() -> Arc<AppState> {
    let failing = StandIn::start(Behaviour {
        embeddings: EmbedMode::AlwaysFail(500),
        ..Behaviour::default()
    })
    .await;
    let (app, state) = fixtures_app(Settings {
        breaker: BreakerConfig {
            failures: 4,
            cool_down: Duration::from_secs(3600),
        },
        search_embedding_wait: Duration::from_secs(20),
        ..settings(None, Some(&failing))
    });
    assert_lexical(&search(&app, "Raumfahrt kaputt").await);
    assert_eq!(failing.embedding_requests().len(), FAILED_ATTEMPTS);
    assert_lexical(&search(&app, "Teleskop kaputt").await);
    assert_eq!(
        failing.embedding_requests().len(),
        FAILED_ATTEMPTS,
        "an open breaker calls no more"
    );
    state
}

/// An embeddings API that answers after 3 s, one call at a time, and searches that wait 1 s
/// for their embedding: the first search is degraded for `timeout` (its call goes on and
/// holds the only slot), the second, asked while that call is under way, for `busy`
/// (`rejected_busy`).
pub async fn slow_and_busy() {
    let slow = StandIn::start(Behaviour {
        embed_delay: Duration::from_secs(3),
        ..Behaviour::default()
    })
    .await;
    let (app, _) = fixtures_app(Settings {
        embedding_max_concurrency: 1,
        search_embedding_wait: Duration::from_secs(1),
        ..settings(None, Some(&slow))
    });
    let (first, second) = tokio::join!(search(&app, "Mond langsam"), async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while slow.embedding_requests().is_empty() {
            assert!(Instant::now() < deadline, "the first call never arrived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        search(&app, "Sonne besetzt").await
    });
    assert_lexical(&first);
    assert_lexical(&second);
    assert_eq!(slow.embedding_requests().len(), 1);
}
