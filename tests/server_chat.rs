//! `/api/chat` driven through the real router against the real corpus (converted once), with a
//! local OpenAI-compatible stand-in for the LLM: configuration, access and the neutral mode.
//! The speaker modes are in `server_chat_speakers.rs`, streaming and the upstream faults in
//! `server_chat_upstream.rs`, the shared set-up in `support/chat.rs`.

mod common;
mod support;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::{json, Value};

use support::chat::{
    app, app_in, convert, error_of, is_placeholder, messages_of, post, rag_items, settings,
    LLM_KEY, SOURCE_FIELDS,
};
use support::openai_standin::{Behaviour, ChatMode, StandIn};

// ---------------------------------------------------------------------------------------------
// Chat: configuration and access

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn chat_without_an_llm_is_503() {
    let app = app(settings(None, None));
    let answer = post(
        &app,
        "/api/chat",
        &[],
        json!({"query": "Raketenantriebe", "podcastId": "raumzeit"}),
    )
    .await;
    let message = error_of(&answer, StatusCode::SERVICE_UNAVAILABLE);
    assert!(message.contains("LLM_BASE_URL"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn chat_token_is_required_from_either_header() {
    let llm = StandIn::start(Behaviour::default()).await;
    let mut s = settings(Some(&llm), None);
    s.auth_token = Some("s3cret-token".to_owned());
    let app = app(s);
    let body = json!({"query": "Raketenantriebe", "podcastId": "raumzeit", "topK": 2});
    for headers in [
        &[][..],
        &[("x-auth-token", "wrong")][..],
        &[("x-auth-token", "s3cret-toke")][..],
        &[("authorization", "Bearer wrong")][..],
        &[("authorization", "s3cret-token")][..],
        &[("authorization", "Basic s3cret-token")][..],
        &[("x-auth-token", "")][..],
        &[("x-auth-token", ""), ("authorization", "Bearer ")][..],
        &[
            ("x-auth-token", "wrong"),
            ("authorization", "Bearer s3cret-token"),
        ][..],
    ] {
        let answer = post(&app, "/api/chat", headers, body.clone()).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{headers:?}");
        assert_eq!(
            answer.json,
            json!({"error": "permission denied"}),
            "{headers:?}"
        );
    }
    assert!(
        llm.chat_requests().is_empty(),
        "refused requests never reach the LLM"
    );
    for headers in [
        &[("x-auth-token", "s3cret-token")][..],
        &[("authorization", "Bearer s3cret-token")][..],
        &[("authorization", "bearer s3cret-token")][..],
        // An empty x-auth-token gives way to the bearer token, as in the original.
        &[
            ("x-auth-token", ""),
            ("authorization", "Bearer s3cret-token"),
        ][..],
        &[
            ("x-auth-token", "  "),
            ("authorization", "Bearer s3cret-token"),
        ][..],
    ] {
        let answer = post(&app, "/api/chat", headers, body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{headers:?}: {}",
            answer.json
        );
        assert_eq!(answer.json["answer"], llm.behaviour().trimmed_answer());
    }
    assert_eq!(llm.chat_requests().len(), 5);
}

// ---------------------------------------------------------------------------------------------
// Chat: neutral mode

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn neutral_chat_answers_with_sources_and_sends_the_context() {
    let llm = StandIn::start(Behaviour::default()).await;
    let app = app(settings(Some(&llm), None));
    let question = "Raketenantriebe Geschichte";
    let answer = post(
        &app,
        "/api/chat",
        &[],
        json!({"query": format!("  {question} "), "podcastId": "raumzeit", "topK": 3}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert!(answer.content_type.starts_with("application/json"));
    let body = answer.json.as_object().unwrap();
    assert_eq!(
        body.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["answer", "sources"])
    );
    assert_eq!(
        body["answer"], "ANSWER aus dem Stand-in (Episode 3, 0:00-0:00).",
        "the LLM's content, trimmed"
    );
    let sources = body["sources"].as_array().unwrap();
    assert!(
        !sources.is_empty() && sources.len() <= 3,
        "{} sources",
        sources.len()
    );
    for source in sources {
        let fields: BTreeSet<&str> = source
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields, BTreeSet::from(SOURCE_FIELDS), "{source}");
        assert!(source["episodeNumber"].is_u64() && source["score"].is_number());
        assert!(source["startSec"].is_number() && source["endSec"].is_number());
        assert!(source["excerpt"].is_string());
        for optional in [
            "episodeTitle",
            "startHms",
            "endHms",
            "topic",
            "subjectCoarse",
            "subjectFine",
        ] {
            assert!(
                source[optional].is_string() || source[optional].is_null(),
                "{source}"
            );
        }
    }
    // The best lexical hit: the item whose text holds the whole query.
    assert_eq!(sources[0]["episodeNumber"], 3);
    assert_eq!(sources[0]["topic"], "Geschichte der Raketenantriebe");
    let scores: Vec<f64> = sources
        .iter()
        .map(|s| s["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {scores:?}"
    );

    let calls = llm.chat_requests();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some(format!("Bearer {LLM_KEY}").as_str())
    );
    assert!(
        calls[0].body.get("stream").is_none(),
        "no stream field unless asked"
    );
    let (system, user) = messages_of(&calls[0].body);
    assert!(system.contains("(Episode 281, 12:38-17:19)"), "{system}");
    assert!(
        user.starts_with(&format!("QUESTION:\n{question}\n\nSOURCES:\n")),
        "{user}"
    );
    assert!(
        user.contains("SOURCE: Episode 3 (0:00 - 0:00) | Topic: Geschichte der Raketenantriebe\n")
    );
    assert_eq!(user.matches("SOURCE: Episode").count(), sources.len());
    for source in sources {
        assert!(user.contains(source["excerpt"].as_str().unwrap()));
    }
    assert!(
        llm.embedding_requests().is_empty(),
        "no embeddings endpoint: lexical"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn timed_items_send_transcript_excerpts() {
    let llm = StandIn::start(Behaviour::default()).await;
    let app = app(settings(Some(&llm), None));
    let answer = post(
        &app,
        "/api/chat",
        &[],
        json!({"query": "Dunkle Materie", "podcastId": "raumzeit", "topK": 6}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    let sources = answer.json["sources"].as_array().unwrap();
    let timed = sources
        .iter()
        .find(|s| s["episodeNumber"] == 38 && s["topic"] == "Dunkle Materie")
        .unwrap_or_else(|| panic!("episode 38's 'Dunkle Materie' among {sources:?}"));
    assert_eq!(
        (timed["startHms"].as_str(), timed["endHms"].as_str()),
        (Some("6:06"), Some("36:11"))
    );
    let excerpt = timed["excerpt"].as_str().unwrap();
    let first = excerpt.lines().next().unwrap();
    assert!(
        first.starts_with("[0:") && !is_placeholder(first) && first.contains("] "),
        "a transcript line `[time] speaker: text`: {first}"
    );
    assert!(excerpt.len() <= 4000 + "\n…".len(), "cut at 4000 bytes");
    let (_, user) = messages_of(&llm.chat_requests()[0].body);
    assert!(user.contains("SOURCE: Episode 38 (6:06 - 36:11) | Topic: Dunkle Materie\n"));
    assert!(user.contains(excerpt));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn untimed_items_send_their_summaries() {
    let llm = StandIn::start(Behaviour::default()).await;
    let app = app(settings(Some(&llm), None));
    let answer = post(
        &app,
        "/api/chat",
        &[],
        json!({"query": "Geschichte der Wissenschaften", "podcastId": "forschergeist", "topK": 5}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    let sources = answer.json["sources"].as_array().unwrap();
    assert!(!sources.is_empty() && sources.len() <= 5);
    let (_, user) = messages_of(&llm.chat_requests()[0].body);
    let items = rag_items("forschergeist");
    let mut summaries = 0;
    for source in sources {
        let item = items
            .iter()
            .find(|i| {
                i["episodeNumber"] == source["episodeNumber"] && i["topic"] == source["topic"]
            })
            .unwrap();
        let excerpt = source["excerpt"].as_str().unwrap();
        match item["summary"]
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(summary) => {
                assert_eq!(excerpt, format!("[summary] {summary}"));
                assert!(user.contains(&format!("[summary] {summary}")));
                summaries += 1;
            }
            None => assert!(is_placeholder(excerpt), "{excerpt}"),
        }
    }
    assert!(summaries > 0, "the context is more than placeholders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_keep_null_fields() {
    let root = tempfile::tempdir().unwrap();
    let mut blank = common::item(0, 1, "", None);
    blank["startHms"] = Value::Null;
    blank["endHms"] = Value::Null;
    blank["episodeTitle"] = json!("  ");
    blank["startSec"] = json!(75);
    blank["endSec"] = json!(3725);
    let other = common::item(1, 2, "Titan", None);
    common::write_rag(root.path(), "tiny", 4, vec![blank, other]);
    let index = convert(root.path());
    let llm = StandIn::start(Behaviour::default()).await;
    let app = app_in(index.path(), settings(Some(&llm), None));
    let answer = post(
        &app,
        "/api/chat",
        &[],
        json!({"query": "Titel", "podcastId": "tiny"}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    let sources = answer.json["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2, "{sources:?}");
    let blank = sources.iter().find(|s| s["episodeNumber"] == 1).unwrap();
    for null in ["episodeTitle", "startHms", "endHms", "topic", "subjectFine"] {
        assert!(
            blank.get(null).is_some_and(Value::is_null),
            "{null} is present as null: {blank}"
        );
    }
    assert_eq!(blank["subjectCoarse"], "Raumfahrt");
    let (_, user) = messages_of(&llm.chat_requests()[0].body);
    assert!(
        user.contains("SOURCE: Episode 1 (1:15 - 1:02:05)\n"),
        "hms from the seconds, no topic: {user}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn llm_failures_are_502_json() {
    let llm = StandIn::start(Behaviour {
        chat: ChatMode::Fail(500),
        ..Behaviour::default()
    })
    .await;
    let app = app(settings(Some(&llm), None));
    for stream in [false, true] {
        let answer = post(
            &app,
            "/api/chat",
            &[],
            json!({"query": "Raketenantriebe", "podcastId": "raumzeit", "stream": stream}),
        )
        .await;
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.json);
        let message = answer.json["error"].as_str().expect("a JSON error");
        assert!(message.contains("500"), "{message}");
        let sources = answer.json["sources"]
            .as_array()
            .expect("the sources found");
        assert!(!sources.is_empty(), "{}", answer.json);
    }
    assert_eq!(llm.chat_requests().len(), 2, "chat is not retried");
}
