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

    // Two slugs that both resolve, of which only one has a profile: the excerpts are
    // per speaker (both names resolved); the voice is the first speaker's profile, so a
    // persona when the first has one and neutral when only the second has one.
    for (first, second, persona) in [
        ("tim-pritlove", "stefan-kröpelin", true),
        ("stefan-kröpelin", "tim-pritlove", false),
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
        assert_eq!(
            system.starts_with("You are Tim Pritlove."),
            persona,
            "{first}+{second}: {system}"
        );
        assert_eq!(system.contains(profile.trim()), persona);
        if !persona {
            assert!(
                system.starts_with("You are a helpful assistant"),
                "{system}"
            );
        }
        assert!(
            !system.contains("back-and-forth") && !user.contains("debate"),
            "not a discussion: {system}"
        );
        // forschergeist's items are untimed, so no window holds either speaker's lines and
        // with both names resolved every hit is skipped (the duo podcast below shows the
        // excerpts of a discussion).
        assert_eq!(answer.json["sources"], json!([]), "{first}+{second}");
    }
    assert_eq!(llm.chat_requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
async fn slugs_that_name_no_one_are_ignored() {
    let llm = StandIn::start(Behaviour::default()).await;
    let app = app(settings(Some(&llm), None));
    let ask = |podcast: &str, extra: Value| {
        let mut body = json!({"query": "Wissenschaft", "podcastId": podcast});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let neutral = post(&app, "/api/chat", &[], ask("forschergeist", json!({}))).await;
    assert_eq!(neutral.status, StatusCode::OK, "{}", neutral.json);
    let (neutral_system, _) = messages_of(&llm.chat_requests()[0].body);
    assert!(neutral_system.starts_with("You are a helpful assistant"));

    // Unknown, stale, empty or path-like slugs resolve to no one: neutral mode, the very
    // answer of a request without them. The second slug alone is neutral too.
    let long = "a".repeat(4096);
    for ignored in [
        json!({"speakerSlug": "nobody-here"}),
        json!({"speakerSlug": ""}),
        json!({"speakerSlug": " tim-pritlove"}),
        json!({"speakerSlug": "../../etc/passwd"}),
        json!({"speakerSlug": ".tim-pritlove"}),
        json!({"speakerSlug": "speakers\\tim-pritlove"}),
        json!({"speakerSlug": "speakers/tim-pritlove"}),
        json!({"speakerSlug": "tim-pritlove\u{0}"}),
        json!({"speakerSlug": long}),
        json!({"speakerSlug": "nobody-here", "speakerSlug2": "nobody-either"}),
        json!({"speakerSlug2": "tim-pritlove"}),
        json!({"speakerSlug": "nobody-here", "speakerSlug2": "tim-pritlove"}),
        json!({"speakerSlug": "", "speakerSlug2": "tim-pritlove"}),
    ] {
        let answer = post(
            &app,
            "/api/chat",
            &[],
            ask("forschergeist", ignored.clone()),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{ignored}: {}", answer.json);
        assert_eq!(answer.json["sources"], neutral.json["sources"], "{ignored}");
        let (system, _) = messages_of(&llm.chat_requests().last().unwrap().body);
        assert_eq!(system, neutral_system, "{ignored}");
    }

    // A second slug that names no one leaves the first speaker's persona as it is.
    let alone = post(
        &app,
        "/api/chat",
        &[],
        ask("forschergeist", json!({"speakerSlug": "tim-pritlove"})),
    )
    .await;
    let alone_system = messages_of(&llm.chat_requests().last().unwrap().body).0;
    for second in ["nobody-here", "../tim-pritlove", ""] {
        let answer = post(
            &app,
            "/api/chat",
            &[],
            ask(
                "forschergeist",
                json!({"speakerSlug": "tim-pritlove", "speakerSlug2": second}),
            ),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{second}: {}", answer.json);
        assert_eq!(answer.json["sources"], alone.json["sources"], "{second}");
        let (system, _) = messages_of(&llm.chat_requests().last().unwrap().body);
        assert_eq!(system, alone_system, "{second}");
        assert!(system.starts_with("You are Tim Pritlove."), "{system}");
    }

    // raumzeit has no speakers index: every slug names no one there.
    let raumzeit = post(&app, "/api/chat", &[], ask("raumzeit", json!({}))).await;
    let with_slug = post(
        &app,
        "/api/chat",
        &[],
        ask("raumzeit", json!({"speakerSlug": "tim-pritlove"})),
    )
    .await;
    assert_eq!(with_slug.status, StatusCode::OK, "{}", with_slug.json);
    assert_eq!(with_slug.json["sources"], raumzeit.json["sources"]);
    let (system, _) = messages_of(&llm.chat_requests().last().unwrap().body);
    assert_eq!(system, neutral_system);
}

/// A podcast of two speakers with profiles and one without: one episode with a transcript and
/// three timed items, 0:01:00–0:02:00 (Alice and Bob speak), 0:03:20–0:04:20 (Bob only),
/// 0:06:40–0:07:40 (Carl only, who has no profile).
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
        {"speaker": "Carl Cam", "time": "0:07:00", "text": "Ich habe kein Profil."},
    ]});
    std::fs::write(podcast.join("episodes/1-ts.json"), transcript.to_string()).unwrap();
    let index = json!([
        {"speaker": "Alice Ada", "slug": "alice-ada", "episodesCount": 1, "utterancesCount": 1,
         "totalWords": 4, "episodes": [1]},
        {"speaker": "Bob Bit", "slug": "bob-bit", "episodesCount": 1, "utterancesCount": 2,
         "totalWords": 7, "episodes": [1]},
        {"speaker": "Carl Cam", "slug": "carl-cam", "episodesCount": 1, "utterancesCount": 1,
         "totalWords": 4, "episodes": [1]},
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
        "a window where neither speaks (only Carl) is skipped"
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

/// The duo podcast's answer to "Mondbasis" with `extra` in the body (which must be a 200):
/// its excerpts and the system prompt the LLM was given.
async fn duo_ask(app: &axum::Router, llm: &StandIn, extra: Value) -> (Vec<String>, String) {
    let mut body = json!({"query": "Mondbasis", "podcastId": "duo"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let answer = post(app, "/api/chat", &[], body).await;
    assert_eq!(answer.status, StatusCode::OK, "{extra}: {}", answer.json);
    let excerpts = answer.json["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["excerpt"].as_str().unwrap().to_owned())
        .collect();
    let (system, _) = messages_of(&llm.chat_requests().last().unwrap().body);
    (excerpts, system)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_follow_the_names_and_profiles_that_resolve() {
    let index = duo_index();
    let llm = StandIn::start(Behaviour::default()).await;
    let app = app_in(index.path(), settings(Some(&llm), None));
    let neutral = duo_ask(&app, &llm, json!({})).await;
    assert_eq!(
        neutral.0,
        [
            "[0:01:05] Alice Ada: Wir bauen eine Mondbasis.\n[0:01:30] Bob Bit: Mit Regolith.",
            "[0:03:30] Bob Bit: Energie kommt aus Solarzellen.",
            "[0:07:00] Carl Cam: Ich habe kein Profil.",
        ]
    );
    assert!(
        neutral.1.starts_with("You are a helpful assistant"),
        "{}",
        neutral.1
    );

    // A speaker without a profile still resolves: their lines filter the excerpts (windows
    // without them are skipped), but the voice stays neutral.
    let carl = duo_ask(&app, &llm, json!({"speakerSlug": "carl-cam"})).await;
    assert_eq!(carl.0, ["[0:07:00] Carl Cam: Ich habe kein Profil."]);
    assert_eq!(carl.1, neutral.1);

    // Both names resolve: excerpts per speaker; the voice is the first speaker's profile.
    let carl_alice = duo_ask(
        &app,
        &llm,
        json!({"speakerSlug": "carl-cam", "speakerSlug2": "alice-ada"}),
    )
    .await;
    assert_eq!(
        carl_alice.0,
        [
            "Carl Cam:\n[no transcript entries found in window 1:00 - 2:00 \
             (filtered by speaker: Carl Cam)]\n\n\
             Alice Ada:\n[0:01:05] Alice Ada: Wir bauen eine Mondbasis.",
            "Carl Cam:\n[0:07:00] Carl Cam: Ich habe kein Profil.\n\n\
             Alice Ada:\n[no transcript entries found in window 6:40 - 7:40 \
             (filtered by speaker: Alice Ada)]",
        ]
    );
    assert_eq!(carl_alice.1, neutral.1, "the first speaker has no profile");
    let alice_carl = duo_ask(
        &app,
        &llm,
        json!({"speakerSlug": "alice-ada", "speakerSlug2": "carl-cam"}),
    )
    .await;
    assert_eq!(alice_carl.0.len(), 2);
    assert!(alice_carl.0[0].starts_with("Alice Ada:\n[0:01:05]"));
    assert!(
        alice_carl.1.starts_with("You are Alice Ada."),
        "{}",
        alice_carl.1
    );
    assert!(!alice_carl.1.contains("back-and-forth"));

    // The second slug alone is neutral mode, whether or not that speaker has a profile.
    for alone in [
        json!({"speakerSlug2": "bob-bit"}),
        json!({"speakerSlug2": "carl-cam"}),
        json!({"speakerSlug": "nobody", "speakerSlug2": "bob-bit"}),
        json!({"speakerSlug": "", "speakerSlug2": "bob-bit"}),
    ] {
        assert_eq!(duo_ask(&app, &llm, alone.clone()).await, neutral, "{alone}");
    }

    // Slugs that name no one, path-like ones included, are ignored.
    let persona = duo_ask(&app, &llm, json!({"speakerSlug": "bob-bit"})).await;
    assert!(persona.1.starts_with("You are Bob Bit."), "{}", persona.1);
    let long = "b".repeat(201);
    for slug in [
        "nobody",
        "",
        "../bob-bit",
        "speakers/bob-bit",
        "bob-bit\u{0}",
        "BOB-BIT",
        long.as_str(),
    ] {
        let first = duo_ask(&app, &llm, json!({"speakerSlug": slug})).await;
        assert_eq!(first, neutral, "{slug:?}");
        let second = duo_ask(
            &app,
            &llm,
            json!({"speakerSlug": "bob-bit", "speakerSlug2": slug}),
        )
        .await;
        assert_eq!(second, persona, "{slug:?}");
    }
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
