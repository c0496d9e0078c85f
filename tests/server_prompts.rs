//! Prompt templates from a prompts file (`--prompts`) reach the LLM verbatim, their
//! placeholders filled, in each of the three voices: `/api/chat` through the real router over
//! the converted fixtures, with the local OpenAI-compatible stand-in as the LLM.

mod common;
mod support;

use std::path::Path;

use serde_json::{json, Value};

use podmap::server::{Settings, SettingsArgs};
use support::chat::{app_in, messages_of, post, CHAT_MODEL, LLM_KEY};
use support::openai_standin::{Behaviour, StandIn};

/// Settings as `podmap serve --prompts FILE` loads them, with the chat API at `llm`.
fn settings_with(prompts: Option<&Path>, llm: &StandIn) -> Settings {
    Settings::load(SettingsArgs {
        llm_base_url: Some(llm.base_url.clone()),
        llm_api_key: Some(LLM_KEY.to_owned()),
        llm_model: Some(CHAT_MODEL.to_owned()),
        prompts_file: prompts.map(Path::to_path_buf),
        ..SettingsArgs::default()
    })
    .unwrap()
}

/// The system and user messages the LLM received for one chat request.
async fn sent(settings: Settings, llm: &StandIn, body: Value) -> (String, String) {
    let app = app_in(common::fixtures_index(), settings);
    let before = llm.chat_requests().len();
    let answer = post(&app, "/api/chat", &[], body).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let calls = llm.chat_requests();
    assert_eq!(calls.len(), before + 1);
    messages_of(&calls[before].body)
}

/// The SOURCES text of a user message in the built-in wording.
fn context_of(user: &str) -> String {
    let start = user.find("SOURCES:\n").expect("a SOURCES block") + "SOURCES:\n".len();
    let end = user.rfind("\n\n").expect("text after the sources");
    user[start..end].to_owned()
}

fn profile(slug: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/data/podcasts/demo-raumfahrt/speakers")
        .join(format!("{slug}.md"));
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_from_the_prompts_file_reach_the_llm_with_their_placeholders_filled() {
    let llm = StandIn::start(Behaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prompts.json");
    std::fs::write(
        &file,
        json!({
            "neutralSystem": "Archiv-Assistent {{streng}}. Frage war: {question}",
            "neutralUser": "F: {question}\nQ:\n{context}\nENDE",
            "personaSystem": "Sei {name}.\n---\n{profile}\n---",
            "personaUser": "{name} antwortet auf {question} aus:\n{context}",
            "discussionSystem": "{name1} & {name2}\n{profile1}\n{profile2}",
            "discussionUser": "{question}|{name2}|{name1}\n{context}",
        })
        .to_string(),
    )
    .unwrap();
    let custom = settings_with(Some(&file), &llm);
    let builtin = settings_with(None, &llm);
    let ask = |slugs: &[&str]| {
        let mut body = json!({"query": "  Mond und Mars  ", "podcastId": "demo-raumfahrt"});
        for (key, slug) in ["speakerSlug", "speakerSlug2"].iter().zip(slugs) {
            body[key] = json!(slug);
        }
        body
    };
    let question = "Mond und Mars";

    // Neutral: the same sources as with the built-in wording, in the custom frame.
    let (_, user) = sent(builtin.clone(), &llm, ask(&[])).await;
    let context = context_of(&user);
    assert!(context.starts_with("SOURCE: Episode "), "{context}");
    let (system, user) = sent(custom.clone(), &llm, ask(&[])).await;
    assert_eq!(
        system,
        format!("Archiv-Assistent {{streng}}. Frage war: {question}")
    );
    assert_eq!(user, format!("F: {question}\nQ:\n{context}\nENDE"));

    // Persona: name and profile from the archive.
    let (_, user) = sent(builtin.clone(), &llm, ask(&["tim-pritlove"])).await;
    let context = context_of(&user);
    let (system, user) = sent(custom.clone(), &llm, ask(&["tim-pritlove"])).await;
    assert_eq!(
        system,
        format!("Sei Tim Pritlove.\n---\n{}\n---", profile("tim-pritlove"))
    );
    assert_eq!(
        user,
        format!("Tim Pritlove antwortet auf {question} aus:\n{context}")
    );

    // Discussion: both speakers, each in their place.
    let slugs = ["tim-pritlove", "käthe-kröpelin"];
    let (_, user) = sent(builtin, &llm, ask(&slugs)).await;
    let context = context_of(&user);
    let (system, user) = sent(custom, &llm, ask(&slugs)).await;
    assert_eq!(
        system,
        format!(
            "Tim Pritlove & Käthe Kröpelin\n{}\n{}",
            profile("tim-pritlove"),
            profile("käthe-kröpelin")
        )
    );
    assert_eq!(
        user,
        format!("{question}|Käthe Kröpelin|Tim Pritlove\n{context}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_keys_keep_the_built_in_wording() {
    let llm = StandIn::start(Behaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prompts.json");
    std::fs::write(&file, r#"{"neutralUser": "{question}"}"#).unwrap();
    let body = json!({"query": "Mond", "podcastId": "demo-raumfahrt"});
    let (builtin_system, _) = sent(settings_with(None, &llm), &llm, body.clone()).await;
    let (system, user) = sent(settings_with(Some(&file), &llm), &llm, body).await;
    assert_eq!(system, builtin_system);
    assert!(system.contains("(Episode 281, 12:38-17:19)"), "{system}");
    assert_eq!(user, "Mond");
}
