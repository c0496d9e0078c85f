//! The chat's context: the retrieved hits turned into sources by the original's rules (which
//! transcript window, whose lines, when a summary stands in), and the `SOURCES` text the
//! prompt carries, cut to the configured size.

use rayon::prelude::*;

use super::api::SourceOut;
use super::catalog::Podcast;
use crate::search::Hit;
use crate::transcript::{format_hms, Window};

/// Whose transcript lines the excerpts keep: chosen, as in the original, by the speaker
/// names that resolved (a speaker without a profile still filters the lines), independently
/// of the voice the answer is written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lines {
    /// Everyone's: no speaker named, or only the second one resolved.
    All,
    /// Only this speaker's (the first slug resolved, the second did not).
    One(String),
    /// Each speaker's separately (both slugs resolved).
    Two(String, String),
}

/// A source and the context block it contributes.
pub struct Source {
    pub out: SourceOut,
    pub block: String,
}

/// Up to `top_k` sources for the chat context, by the original's rules, excerpts cut
/// concurrently. A hit without transcript lines in its window falls back to its own summary
/// when all lines are kept and is skipped when they are filtered by speaker; a transcript
/// that cannot be read counts as having none, it does not fail the answer.
pub fn sources(
    podcast: &dyn Podcast,
    hits: &[Hit],
    lines: &Lines,
    top_k: usize,
) -> crate::Result<Vec<Source>> {
    let prepared: Vec<Option<Source>> = hits
        .par_iter()
        .map(|hit| source(podcast, hit, lines))
        .collect::<crate::Result<_>>()?;
    Ok(prepared.into_iter().flatten().take(top_k).collect())
}

/// The blocks of `sources` joined, cut at `max_chars` bytes (on a character boundary) with a
/// note saying so.
pub fn context(sources: &[Source], max_chars: usize) -> String {
    let mut context = sources
        .iter()
        .map(|s| s.block.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    if context.len() > max_chars {
        let mut cut = max_chars;
        while !context.is_char_boundary(cut) {
            cut -= 1;
        }
        context.truncate(cut);
        context.push_str("\n\n[context truncated]\n");
    }
    context
}

fn is_placeholder(text: &str) -> bool {
    text.starts_with("[no transcript entries found in window")
}

fn window(start: f64, end: f64, speaker: Option<&str>, max_chars: usize) -> Window<'_> {
    Window {
        start,
        end,
        speaker,
        max_chars,
    }
}

/// The excerpt of `episode` in `window`; the placeholder when its transcript is unreadable.
fn excerpt(podcast: &dyn Podcast, episode: u32, window: Window) -> String {
    podcast.excerpt(episode, &window).unwrap_or_else(|e| {
        tracing::warn!(
            podcast = podcast.id(),
            episode,
            "transcript unreadable: {e}"
        );
        crate::transcript::placeholder(&window)
    })
}

/// The source of one hit; `None` when the speakers named say nothing in its window.
fn source(podcast: &dyn Podcast, hit: &Hit, lines: &Lines) -> crate::Result<Option<Source>> {
    let item = podcast.index().item(hit.index as usize)?;
    let (episode, start, end) = (item.episode_number, item.start_sec, item.end_sec);
    let text = match lines {
        Lines::All => {
            let text = excerpt(podcast, episode, window(start, end, None, 4000));
            match item.summary.filter(|s| !s.trim().is_empty()) {
                Some(summary) if is_placeholder(&text) => format!("[summary] {}", summary.trim()),
                _ => text,
            }
        }
        Lines::One(name) => {
            let text = excerpt(podcast, episode, window(start, end, Some(name), 4000));
            if is_placeholder(&text) {
                return Ok(None);
            }
            text
        }
        Lines::Two(first, second) => {
            let a = excerpt(podcast, episode, window(start, end, Some(first), 2200));
            let b = excerpt(podcast, episode, window(start, end, Some(second), 2200));
            if is_placeholder(&a) && is_placeholder(&b) {
                return Ok(None);
            }
            format!("{first}:\n{a}\n\n{second}:\n{b}")
        }
    };
    let start_hms = item.start_hms.map(str::to_owned);
    let end_hms = item.end_hms.map(str::to_owned);
    let blank = |s: Option<&str>| s.filter(|s| !s.trim().is_empty()).map(str::to_owned);
    let topic = blank(item.topic);
    let block = format!(
        "SOURCE: Episode {episode} ({} - {}){}\n{text}\n",
        start_hms.clone().unwrap_or_else(|| format_hms(start)),
        end_hms.clone().unwrap_or_else(|| format_hms(end)),
        topic
            .as_ref()
            .map(|t| format!(" | Topic: {t}"))
            .unwrap_or_default()
    );
    Ok(Some(Source {
        out: SourceOut {
            episode_number: episode,
            episode_title: blank(item.episode_title),
            start_sec: start,
            end_sec: end,
            start_hms,
            end_hms,
            score: hit.score,
            topic,
            subject_coarse: item.subject_coarse.map(str::to_owned),
            subject_fine: item.subject_fine.map(str::to_owned),
            excerpt: text,
        },
        block,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str) -> Source {
        Source {
            out: SourceOut {
                episode_number: 1,
                episode_title: None,
                start_sec: 0.0,
                end_sec: 0.0,
                start_hms: None,
                end_hms: None,
                score: 1.0,
                topic: None,
                subject_coarse: None,
                subject_fine: None,
                excerpt: String::new(),
            },
            block: text.to_owned(),
        }
    }

    #[test]
    fn the_context_is_cut_on_a_character_boundary_and_says_so() {
        let sources = [block("aé"), block("b")];
        assert_eq!(context(&sources, 100), "aé\nb");
        assert_eq!(context(&sources, 2), "a\n\n[context truncated]\n");
    }
}
