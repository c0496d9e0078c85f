//! RAG items: the topics of each episode with their time windows, subjects, summaries and the
//! `text` that is embedded, as the original ingest pipeline writes them.

use std::collections::HashSet;

use serde::Serialize;

use crate::clusters::random_cluster;
use crate::episodes::Episode;
use crate::rng::{mix, Rng};
use crate::text::{noun, text, topic_phrase, COARSE_SUBJECTS};
use crate::time::hms;
use crate::transcripts;

/// One RAG item without its embedding (`rag` adds that as it writes the item).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub id: u64,
    key: String,
    episode_number: u32,
    episode_title: String,
    topic: String,
    subject: Option<Subject>,
    pub start_sec: u64,
    pub end_sec: u64,
    start_hms: String,
    end_hms: String,
    duration_sec: u64,
    summary: String,
    source: ItemSource,
    pub text: String,
    /// The cluster its random embedding is near.
    #[serde(skip)]
    pub cluster: usize,
}

#[derive(Serialize, Clone)]
struct Subject {
    coarse: Option<String>,
    fine: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SummaryMeta {
    transcript_found: bool,
    transcript_file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_sec: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_sec: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemSource {
    file: String,
    topic_index: u64,
    summary_meta: SummaryMeta,
}

/// `total` RAG items over `episodes` in ascending episode order. Items are `timed` (about two
/// in three get a time window) only in podcasts with embeddings; `has_transcript[n - 1]` tells
/// whether episode `n` has a transcript to cut the window from.
pub fn generate(
    seed: u64,
    total: usize,
    with_embeddings: bool,
    episodes: &[Episode],
    has_transcript: &[bool],
) -> Vec<Item> {
    let mut rng = Rng::new(mix(seed, 2));
    let n_eps = episodes.len();

    // Items per episode: even split, then random moves between episodes.
    let mut counts: Vec<usize> = (0..n_eps)
        .map(|e| total / n_eps + usize::from(e < total % n_eps))
        .collect();
    for _ in 0..n_eps {
        let a = rng.below(n_eps as u64) as usize;
        let b = rng.below(n_eps as u64) as usize;
        if counts[a] > 1 {
            counts[a] -= 1;
            counts[b] += 1;
        }
    }

    let mut items = Vec::with_capacity(total);
    let mut keys: HashSet<String> = HashSet::new();
    for (ep, &k) in episodes.iter().zip(&counts) {
        let n = ep.number;
        let ts_file = transcripts::file_name(n);
        let slot = ep.duration_sec / k.max(1) as u64;
        let first_id = items.len();
        for t in 0..k {
            let timed = with_embeddings && !rng.percent(33);
            let (start, end) = if timed {
                let s0 = slot * t as u64;
                (
                    s0 + rng.below(slot / 4 + 1),
                    s0 + slot - rng.below(slot / 4 + 1),
                )
            } else {
                (0, 0)
            };
            let key_of = |topic: &str| format!("{n}:{start}:{end}:{}", key_topic(topic));
            // Sometimes repeat an earlier topic of this episode (distinct key).
            let mut repeated = None;
            if t > 0 && rng.percent(12) {
                let prev: &Item = &items[first_id + rng.below(t as u64) as usize];
                let key = key_of(&prev.topic);
                if !keys.contains(&key) {
                    repeated = Some((key, prev.topic.clone(), prev.subject.clone(), prev.cluster));
                }
            }
            let (key, topic, subject, cluster) = match repeated {
                Some(x) => x,
                None => loop {
                    let mut topic = topic_phrase(&mut rng);
                    if rng.percent(2) {
                        topic = topic.replacen(' ', "  ", 1);
                    }
                    let key = key_of(&topic);
                    if keys.contains(&key) {
                        continue;
                    }
                    let subject = if rng.percent(3) {
                        None
                    } else {
                        Some(Subject {
                            coarse: Some((*rng.pick(COARSE_SUBJECTS)).to_string()),
                            fine: if rng.percent(4) {
                                None
                            } else {
                                Some(noun(&mut rng))
                            },
                        })
                    };
                    let cluster = if rng.percent(70) {
                        ep.theme
                    } else {
                        random_cluster(&mut rng)
                    };
                    break (key, topic, subject, cluster);
                },
            };
            keys.insert(key.clone());

            let summary = if rng.percent(10) {
                String::new()
            } else {
                let target = rng.range(40, 900) as usize;
                text(&mut rng, target, 900, 0)
            };
            let found = timed && has_transcript[(n - 1) as usize];
            let summary_meta = SummaryMeta {
                transcript_found: found,
                transcript_file: ts_file.clone(),
                method: found.then_some("time-window"),
                start_sec: found.then_some(start),
                end_sec: found.then_some(end),
            };
            let (start_hms, end_hms) = (hms(start), hms(end));
            let mut lines = vec![
                format!("Episode: {n} - {}", ep.title),
                format!("Topic: {topic}"),
            ];
            if let Some(s) = &subject {
                let parts: Vec<&str> = [&s.coarse, &s.fine]
                    .into_iter()
                    .flatten()
                    .map(String::as_str)
                    .filter(|p| !p.is_empty())
                    .collect();
                if !parts.is_empty() {
                    lines.push(format!("Subject: {}", parts.join(" / ")));
                }
            }
            lines.push(format!("Time: {start_hms} - {end_hms}"));
            if !summary.is_empty() {
                lines.push(format!("Summary: {summary}"));
            }
            items.push(Item {
                id: items.len() as u64,
                key,
                episode_number: n,
                episode_title: ep.title.clone(),
                topic,
                subject,
                start_sec: start,
                end_sec: end,
                start_hms,
                end_hms,
                duration_sec: end.saturating_sub(start),
                summary,
                source: ItemSource {
                    file: format!("{n}-extended-topics.json"),
                    topic_index: t as u64,
                    summary_meta,
                },
                text: lines.join("\n"),
                cluster,
            });
        }
    }
    items
}

/// Key normalisation: lowercase, whitespace runs collapsed to one space,
/// trimmed, at most 200 characters.
fn key_topic(topic: &str) -> String {
    let collapsed = topic.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.to_lowercase().chars().take(200).collect()
}
