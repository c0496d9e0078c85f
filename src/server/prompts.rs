//! The chat's prompt texts as templates: podmap's built-in wording, or a JSON file named by
//! `--prompts` / `PROMPTS_FILE` / `rag.promptsFile` that replaces any of them.
//!
//! Each of the three voices (see [`Voice`](super::chat::Voice)) has a system and a user
//! template. A template is text with placeholders in braces, filled when a question is
//! answered; `{{` and `}}` stand for literal braces. Which placeholders a template may use
//! depends on its voice:
//!
//! | key | placeholders |
//! |---|---|
//! | `neutralSystem`, `neutralUser` | `{question}`, `{context}` |
//! | `personaSystem`, `personaUser` | `{question}`, `{context}`, `{name}`, `{profile}` |
//! | `discussionSystem`, `discussionUser` | `{question}`, `{context}`, `{name1}`, `{profile1}`, `{name2}`, `{profile2}` |
//!
//! `{context}` is the SOURCES blocks, `{name}`/`{profile}` the speaker's name and profile
//! Markdown. A key missing from the file keeps the built-in wording; an unknown key, a
//! placeholder a template may not use, an unclosed brace or an unreadable file is an error at
//! start-up that names the file, so a typo never reaches the LLM. `docs/prompts.example.json`
//! holds the built-in wording.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The rules every built-in prompt states.
const RULES: &str =
    "Use only the SOURCES below. Cite inline in the form (Episode 281, 12:38-17:19). \
Answer in German unless the question asks for another language.";

/// Why a prompts file cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum PromptsError {
    #[error("cannot read prompts file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("prompts file {} is not a JSON object of strings", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("prompts file {}: {reason}", path.display())]
    Template { path: PathBuf, reason: String },
}

/// The six prompt templates in force, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompts {
    pub neutral_system: String,
    pub neutral_user: String,
    pub persona_system: String,
    pub persona_user: String,
    pub discussion_system: String,
    pub discussion_user: String,
}

const NEUTRAL: &[&str] = &["question", "context"];
const PERSONA: &[&str] = &["question", "context", "name", "profile"];
const DISCUSSION: &[&str] = &[
    "question", "context", "name1", "profile1", "name2", "profile2",
];

impl Default for Prompts {
    /// podmap's built-in wording.
    fn default() -> Self {
        Prompts {
            neutral_system: format!(
                "You are a helpful assistant for a podcast archive. You answer questions from \
transcript excerpts and summaries only; if they are not enough, say so. {RULES} Be concise."
            ),
            neutral_user: "QUESTION:\n{question}\n\nSOURCES:\n{context}\n\nINSTRUCTIONS:\n\
- Answer only from the sources.\n- Quote short phrases where they help.\n\
- Cite the episode and time window of each claim."
                .to_owned(),
            persona_system: format!(
                "You are {{name}}. Stay in character: answer as this person would, with their \
vocabulary, humour and attitude, as described in this profile:\n\n{{profile}}\n\nIf the sources \
do not cover something, admit it in character. {RULES}"
            ),
            persona_user:
                "QUESTION:\n{question}\n\nSOURCES:\n{context}\n\nAnswer as {name}, grounded in the sources."
                    .to_owned(),
            discussion_system: format!(
                "Write a natural back-and-forth conversation between {{name1}} and {{name2}} about \
the question, each speaking as described in their profile, with lines labelled `Name: …` and \
their own perspectives, grounded only in the sources.\n\nProfile of {{name1}}:\n{{profile1}}\n\n\
Profile of {{name2}}:\n{{profile2}}\n\n{RULES}"
            ),
            discussion_user:
                "QUESTION:\n{question}\n\nSOURCES:\n{context}\n\nWrite the debate between {name1} and {name2}."
                    .to_owned(),
        }
    }
}

impl Prompts {
    /// The built-in wording with the templates of the JSON file at `path` put in.
    pub fn load(path: &Path) -> Result<Prompts, PromptsError> {
        let text = std::fs::read_to_string(path).map_err(|source| PromptsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: BTreeMap<String, String> =
            serde_json::from_str(&text).map_err(|source| PromptsError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        Prompts::with(file).map_err(|reason| PromptsError::Template {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// The built-in wording with `templates` (by their JSON key) put in, each checked.
    fn with(templates: BTreeMap<String, String>) -> Result<Prompts, String> {
        let mut prompts = Prompts::default();
        for (key, template) in templates {
            let (slot, allowed) = match key.as_str() {
                "neutralSystem" => (&mut prompts.neutral_system, NEUTRAL),
                "neutralUser" => (&mut prompts.neutral_user, NEUTRAL),
                "personaSystem" => (&mut prompts.persona_system, PERSONA),
                "personaUser" => (&mut prompts.persona_user, PERSONA),
                "discussionSystem" => (&mut prompts.discussion_system, DISCUSSION),
                "discussionUser" => (&mut prompts.discussion_user, DISCUSSION),
                _ => {
                    return Err(format!(
                        "unknown key {key:?} (known: neutralSystem, neutralUser, personaSystem, \
personaUser, discussionSystem, discussionUser)"
                    ))
                }
            };
            for name in placeholders(&template).map_err(|e| format!("{key}: {e}"))? {
                if !allowed.contains(&name) {
                    return Err(format!(
                        "{key}: unknown placeholder {{{name}}} (this template may use {})",
                        allowed
                            .iter()
                            .map(|a| format!("{{{a}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            *slot = template;
        }
        Ok(prompts)
    }
}

/// A template's pieces: literal text, or the name of a placeholder.
enum Piece<'a> {
    Text(&'a str),
    Field(&'a str),
}

/// Splits `template` into pieces; `{{`/`}}` are literal braces.
fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        out.push(Piece::Text(&rest[..at]));
        let (brace, after) = (&rest[at..at + 1], &rest[at + 1..]);
        if after.starts_with(brace) {
            out.push(Piece::Text(brace));
            rest = &after[1..];
        } else if brace == "}" {
            return Err("a lone `}` (write `}}` for a brace)".into());
        } else {
            let end = after
                .find('}')
                .ok_or("an unclosed `{` (write `{{` for a brace)")?;
            out.push(Piece::Field(&after[..end]));
            rest = &after[end + 1..];
        }
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// The placeholder names `template` uses.
fn placeholders(template: &str) -> Result<Vec<&str>, String> {
    Ok(pieces(template)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Field(name) => Some(name),
            Piece::Text(_) => None,
        })
        .collect())
}

/// `template` with each placeholder replaced by its value in `values`. Templates are checked
/// when loaded, so a placeholder without a value (which cannot happen) is left empty.
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let Ok(pieces) = pieces(template) else {
        return template.to_owned();
    };
    let mut out = String::with_capacity(template.len());
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Field(name) => {
                if let Some((_, value)) = values.iter().find(|(k, _)| *k == name) {
                    out.push_str(value);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_templates_use_only_their_placeholders() {
        let d = Prompts::default();
        let all = BTreeMap::from([
            ("neutralSystem".to_owned(), d.neutral_system.clone()),
            ("neutralUser".to_owned(), d.neutral_user.clone()),
            ("personaSystem".to_owned(), d.persona_system.clone()),
            ("personaUser".to_owned(), d.persona_user.clone()),
            ("discussionSystem".to_owned(), d.discussion_system.clone()),
            ("discussionUser".to_owned(), d.discussion_user.clone()),
        ]);
        assert_eq!(Prompts::with(all).unwrap(), d);
    }

    #[test]
    fn the_shipped_example_is_the_built_in_wording() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/prompts.example.json");
        assert_eq!(Prompts::load(&example).unwrap(), Prompts::default());
    }

    #[test]
    fn placeholders_are_filled_and_double_braces_are_literal() {
        let text = render(
            "{{x}} {name}: {question}{context}}}",
            &[("name", "Tim"), ("question", "Q?"), ("context", "{c}")],
        );
        assert_eq!(text, "{x} Tim: Q?{c}}");
    }

    #[test]
    fn missing_keys_keep_the_built_in_wording() {
        let p = Prompts::with(BTreeMap::from([(
            "personaUser".to_owned(),
            "Q={question} as {name}".to_owned(),
        )]))
        .unwrap();
        assert_eq!(p.persona_user, "Q={question} as {name}");
        assert_eq!(p.neutral_system, Prompts::default().neutral_system);
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        let one = |k: &str, v: &str| Prompts::with(BTreeMap::from([(k.to_owned(), v.to_owned())]));
        let e = one("neutralUser", "{question} by {name}").unwrap_err();
        assert!(e.contains("neutralUser: unknown placeholder {name}"), "{e}");
        assert!(one("neutralUser", "{question")
            .unwrap_err()
            .contains("unclosed"));
        assert!(one("neutralUser", "a } b").unwrap_err().contains("lone"));
        let e = one("neutralPrompt", "x").unwrap_err();
        assert!(e.contains("unknown key \"neutralPrompt\""), "{e}");
        assert!(one("discussionUser", "{name1} {profile2}").is_ok());
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let e = Prompts::load(&missing).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("cannot read prompts file {}", missing.display())
        );
        let bad = dir.path().join("prompts.json");
        std::fs::write(&bad, r#"{"neutralUser": 3}"#).unwrap();
        let e = Prompts::load(&bad).unwrap_err();
        assert!(e.to_string().contains(&*bad.to_string_lossy()), "{e}");
        std::fs::write(&bad, r#"{"neutralUser": "{frage}"}"#).unwrap();
        let e = Prompts::load(&bad).unwrap_err().to_string();
        assert!(
            e.contains(&*bad.to_string_lossy()) && e.contains("{frage}"),
            "{e}"
        );
    }
}
