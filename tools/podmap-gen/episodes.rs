//! Episodes: their metadata (`podcasts/<id>/episodes/<n>.json`) and what the transcripts and
//! RAG items of a podcast are generated from (guests, duration, theme).

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::clusters::random_cluster;
use crate::files::write_pretty;
use crate::rng::{mix, Rng};
use crate::text::{noun, slugify, text, topic_phrase, FIRST_NAMES, LAST_NAMES};
use crate::time::{civil_from_days, days_from_civil, hms_parts};

/// The host of every episode, the first speaker of every transcript.
pub const HOST: &str = "Tim Pritlove";

/// One generated episode: what its metadata file says, and what its transcript and items
/// are generated from.
pub struct Episode {
    pub number: u32,
    pub title: String,
    pub date: String,
    pub url: String,
    pub duration_sec: u64,
    pub description: String,
    pub listed_speakers: Vec<String>,
    /// Guests talking in the transcript (2-4 speakers including the host).
    pub guests: Vec<String>,
    pub chapters: Vec<String>,
    /// The cluster most of its items' random embeddings are near.
    pub theme: usize,
}

/// The metadata file of an episode (field order = JSON key order).
#[derive(Serialize)]
struct EpisodeFile<'a> {
    title: &'a str,
    number: u32,
    date: &'a str,
    url: &'a str,
    duration: [u64; 3],
    description: &'a str,
    speakers: &'a [String],
    chapters: &'a [String],
}

/// Writes `dir/<n>.json`.
pub fn write(dir: &Path, ep: &Episode) -> Result<()> {
    let file = EpisodeFile {
        title: &ep.title,
        number: ep.number,
        date: &ep.date,
        url: &ep.url,
        duration: hms_parts(ep.duration_sec),
        description: &ep.description,
        speakers: &ep.listed_speakers,
        chapters: &ep.chapters,
    };
    write_pretty(&dir.join(format!("{}.json", ep.number)), &file, false)?;
    Ok(())
}

/// The code before the episode number in titles: the first three letters of the podcast id.
fn episode_code(id: &str) -> String {
    let code: String = id
        .chars()
        .filter(char::is_ascii_alphabetic)
        .take(3)
        .collect::<String>()
        .to_ascii_uppercase();
    if code.is_empty() {
        "EP".to_string()
    } else {
        code
    }
}

/// The episodes 1..=`n_eps` of podcast `id`.
pub fn generate(id: &str, seed: u64, n_eps: u32) -> Vec<Episode> {
    let mut rng = Rng::new(mix(seed, 1));
    let code = episode_code(id);

    // Recurring guests: a pool smaller than the number of episodes.
    let pool_size = (n_eps as usize).clamp(4, 40);
    let mut pool: Vec<String> = Vec::new();
    while pool.len() < pool_size {
        let name = format!("{} {}", rng.pick(FIRST_NAMES), rng.pick(LAST_NAMES));
        if !pool.contains(&name) && name != HOST {
            pool.push(name);
        }
    }

    // Dates: increasing, then a few adjacent pairs swapped.
    let mut day = days_from_civil(2010, 11, 8) + rng.below(30) as i64;
    let mut days: Vec<i64> = Vec::with_capacity(n_eps as usize);
    for _ in 0..n_eps {
        days.push(day);
        day += rng.range(10, 30) as i64;
    }
    if n_eps >= 2 {
        let swaps = (rng.range(2, 3) as usize).min(n_eps as usize / 2);
        let mut used = vec![false; n_eps as usize];
        let mut done = 0;
        let mut attempts = 0;
        while done < swaps && attempts < 1000 {
            attempts += 1;
            let k = rng.below(u64::from(n_eps) - 1) as usize;
            if used[k] || used[k + 1] {
                continue;
            }
            used[k] = true;
            used[k + 1] = true;
            days.swap(k, k + 1);
            done += 1;
        }
    }

    let mut episodes = Vec::with_capacity(n_eps as usize);
    for (i, &d) in days.iter().enumerate() {
        let number = i as u32 + 1;
        let title = format!("{code}{number:03} {}", topic_phrase(&mut rng));
        let (y, m, dd) = civil_from_days(d);
        let date = format!("{y:04}-{m:02}-{dd:02}");
        let url = format!(
            "https://{}.example.org/{y:04}/{m:02}/{dd:02}/{}/",
            slugify(id),
            slugify(&title)
        );
        let duration_sec = rng.range(35 * 60, 3 * 3600 + 30 * 60);
        let n_guests = match rng.below(100) {
            0..=69 => 1,
            70..=91 => 2,
            _ => 3,
        };
        let mut guests: Vec<String> = Vec::new();
        while guests.len() < n_guests {
            let g = rng.pick(&pool).clone();
            if !guests.contains(&g) {
                guests.push(g);
            }
        }
        let listed_speakers = if rng.percent(10) {
            Vec::new()
        } else {
            guests.clone()
        };
        let description = if rng.percent(60) {
            format!(
                "Ein Gespräch mit {} über {} und {}",
                guests.join(" und "),
                noun(&mut rng),
                noun(&mut rng)
            )
        } else {
            text(&mut rng, 30, 300, 0)
        };
        let chapters = if rng.percent(30) {
            let n = rng.range(3, 8);
            let mut c = vec!["Intro".to_string(), "Begrüßung".to_string()];
            for _ in 2..n {
                c.push(topic_phrase(&mut rng));
            }
            c.push("Ausklang".to_string());
            c
        } else {
            Vec::new()
        };
        episodes.push(Episode {
            number,
            title,
            date,
            url,
            duration_sec,
            description,
            listed_speakers,
            guests,
            chapters,
            theme: random_cluster(&mut rng),
        });
    }
    episodes
}
