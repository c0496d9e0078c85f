//! `/api/chat` with speakers, through the real router against the real corpus (and a small
//! hand-made podcast of two speakers): persona and discussion modes, slugs that are refused,
//! and the clamping of `topK` and the context. Split from `server_chat.rs` to keep each file
//! short; the shared set-up is in `support/chat.rs`.

mod common;
mod support;

use axum::http::StatusCode;
use serde_json::{json, Value};

use support::chat::{app, app_in, convert, error_of, is_placeholder, messages_of, post, settings};
use support::openai_standin::{self, Behaviour, StandIn};

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
