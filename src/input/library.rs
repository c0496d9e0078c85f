//! `podcasts/<podcast>/`: episode metadata, transcripts and speakers.
//!
//! These files are small (a transcript is at most ~0.5 MB), so each is read whole and parsed on
//! its own; the converter archives one transcript at a time, so memory still does not grow with
//! the podcast. Missing optional files are fine; a file that exists but is malformed is an error
//! that names it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::archive::records::{
    EntryRecord, EpisodeMetaRecord, SpeakerRecord, SpeakersRecord, TranscriptRecord, NO_SPEAKER,
};
use crate::error::{Error, Result};
use crate::transcript::parse_time;

/// Cover image extensions the original server checks, in its order.
pub const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

/// What `podcasts/<id>/` holds, from its directory listings alone.
#[derive(Debug, Clone, Default)]
pub struct LibraryScan {
    /// `episodes/<n>.json` by episode number.
    pub metadata: BTreeMap<u32, PathBuf>,
    /// `episodes/<n>-ts.json` by episode number.
    pub transcripts: BTreeMap<u32, PathBuf>,
    /// `episodes/<n>.{jpg,jpeg,png,webp}`.
    pub images: BTreeMap<u32, PathBuf>,
    /// `speakers/` itself, when it exists.
    pub speakers_dir: Option<PathBuf>,
    /// The files of `speakers/` that podmap reads (`index.json`, `*.md`, `*-meta.json`).
    pub speaker_files: Vec<PathBuf>,
}

impl LibraryScan {
    /// Every file whose content (or existence) ends up in the archive.
    pub fn files(&self) -> Vec<PathBuf> {
        let episode_files = self
            .metadata
            .values()
            .chain(self.transcripts.values())
            .chain(self.images.values());
        episode_files.chain(&self.speaker_files).cloned().collect()
    }

    /// Every episode number that has a metadata file or a transcript.
    pub fn episode_numbers(&self) -> BTreeSet<u32> {
        self.metadata
            .keys()
            .chain(self.transcripts.keys())
            .copied()
            .collect()
    }
}

/// Lists `podcast_dir/episodes/` and `podcast_dir/speakers/`. Either may be missing.
pub fn read_episode_dir(podcast_dir: &Path) -> Result<LibraryScan> {
    let mut scan = LibraryScan::default();
    let episodes = podcast_dir.join("episodes");
    for (name, path) in list(&episodes)? {
        if let Some(n) = numbered(&name, ".json") {
            scan.metadata.insert(n, path);
        } else if let Some(n) = numbered(&name, "-ts.json") {
            scan.transcripts.insert(n, path);
        } else if let Some(n) = IMAGE_EXTENSIONS
            .iter()
            .find_map(|ext| numbered(&name, &format!(".{ext}")))
        {
            // Several images for one episode count once; keep the first in the original's
            // order of extensions.
            let better = scan
                .images
                .get(&n)
                .is_none_or(|old| rank(old) > rank(&path));
            if better {
                scan.images.insert(n, path);
            }
        }
    }
    let speakers = podcast_dir.join("speakers");
    if speakers.is_dir() {
        for (name, path) in list(&speakers)? {
            if name == "index.json" || name.ends_with(".md") || name.ends_with("-meta.json") {
                scan.speaker_files.push(path);
            }
        }
        scan.speakers_dir = Some(speakers);
    }
    Ok(scan)
}

fn rank(path: &Path) -> usize {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    IMAGE_EXTENSIONS
        .iter()
        .position(|e| *e == ext)
        .unwrap_or(usize::MAX)
}

/// The UTF-8 names and paths of the regular files in `dir`; nothing if it does not exist.
fn list(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            let path = entry.path();
            if path.is_file() {
                files.push((name.to_owned(), path));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `n` when `name` is `<digits><suffix>` (the original's `^\d+\.json$` and friends).
fn numbered(name: &str, suffix: &str) -> Option<u32> {
    let digits = name.strip_suffix(suffix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::json(path, &e))
}

#[derive(Deserialize)]
struct EpisodeJson {
    title: Option<String>,
    number: Option<u32>,
    date: Option<String>,
    url: Option<String>,
    duration: Option<Vec<u32>>,
    description: Option<String>,
    speakers: Option<Vec<String>>,
    chapters: Option<Vec<String>>,
}

/// Reads `<n>.json`.
pub fn read_episode_meta(path: &Path) -> Result<EpisodeMetaRecord> {
    let e: EpisodeJson = read_json(path)?;
    Ok(EpisodeMetaRecord {
        title: e.title,
        number: e.number,
        date: e.date,
        url: e.url,
        duration: e.duration,
        description: e.description,
        speakers: e.speakers,
        chapters: e.chapters,
    })
}

#[derive(Deserialize)]
struct TranscriptJson {
    transcript: Vec<EntryJson>,
    #[serde(default)]
    duration: Option<f64>,
}

/// A transcript entry as the original server reads it: `time` and `text` are required.
#[derive(Deserialize)]
struct EntryJson {
    #[serde(default)]
    speaker: Option<String>,
    time: String,
    text: String,
    #[serde(default)]
    duration: Option<f64>,
}

/// Reads `<n>-ts.json`. A non-empty time that does not parse leaves its entry untimed (as the
/// original skips it) and adds a warning naming the file and the entry.
pub fn read_transcript(path: &Path, warnings: &mut Vec<String>) -> Result<TranscriptRecord> {
    let file: TranscriptJson = read_json(path)?;
    let mut speakers: Vec<String> = Vec::new();
    let mut entries = Vec::with_capacity(file.transcript.len());
    let (mut timed, mut starts) = (Vec::new(), Vec::new());
    for (i, e) in file.transcript.into_iter().enumerate() {
        let speaker = match e.speaker {
            None => NO_SPEAKER,
            Some(name) => match speakers.iter().position(|s| *s == name) {
                Some(id) => id as u32,
                None => {
                    speakers.push(name);
                    (speakers.len() - 1) as u32
                }
            },
        };
        let seconds = parse_time(&e.time);
        match seconds {
            Some(t) => {
                timed.push(i as u32);
                starts.push(t);
            }
            None if !e.time.trim().is_empty() => warnings.push(format!(
                "{}: entry {i}: time {:?} is not H:MM:SS, M:SS or seconds; the entry is untimed",
                path.display(),
                e.time
            )),
            None => {}
        }
        entries.push(EntryRecord {
            speaker,
            time: e.time,
            seconds,
            duration: e.duration,
            text: e.text,
        });
    }
    let sorted = starts.windows(2).all(|w| w[0] <= w[1]);
    Ok(TranscriptRecord {
        duration: file.duration,
        speakers,
        entries,
        timed,
        starts,
        sorted,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpeakerJson {
    speaker: String,
    slug: String,
    #[serde(default)]
    episodes_count: u64,
    #[serde(default)]
    utterances_count: u64,
    #[serde(default)]
    total_words: u64,
    #[serde(default)]
    episodes: Vec<u32>,
}

#[derive(Deserialize)]
struct SpeakerMetaJson {
    #[serde(default)]
    image: Option<String>,
}

/// Reads `speakers/index.json` with each row's `<slug>.md` and the `image` of
/// `<slug>-meta.json`. `None` without an index (the original then serves no speakers).
pub fn read_speakers(scan: &LibraryScan) -> Result<Option<SpeakersRecord>> {
    let Some(dir) = &scan.speakers_dir else {
        return Ok(None);
    };
    let index = dir.join("index.json");
    if !index.is_file() {
        return Ok(None);
    }
    let rows: Vec<SpeakerJson> = read_json(&index)?;
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
        // Slugs become file names here: one that could leave the folder is refused.
        if row.slug.is_empty() || row.slug.contains(['/', '\\', '\0']) || row.slug.starts_with('.')
        {
            return Err(Error::InvalidInput {
                path: index.clone(),
                reason: format!(
                    "speaker {:?} has an unusable slug {:?}",
                    row.speaker, row.slug
                ),
            });
        }
        let profile_path = dir.join(format!("{}.md", row.slug));
        let profile = if profile_path.is_file() {
            Some(std::fs::read_to_string(&profile_path).map_err(|e| Error::io(&profile_path, e))?)
        } else {
            None
        };
        let meta_path = dir.join(format!("{}-meta.json", row.slug));
        let image = if meta_path.is_file() {
            read_json::<SpeakerMetaJson>(&meta_path)?.image
        } else {
            None
        };
        records.push(SpeakerRecord {
            speaker: row.speaker,
            slug: row.slug,
            episodes_count: row.episodes_count,
            utterances_count: row.utterances_count,
            total_words: row.total_words,
            episodes: row.episodes,
            profile,
            image,
        });
    }
    let mut by_slug: Vec<u32> = (0..records.len() as u32).collect();
    by_slug.sort_by(|&a, &b| records[a as usize].slug.cmp(&records[b as usize].slug));
    Ok(Some(SpeakersRecord {
        rows: records,
        by_slug,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_file_names() {
        assert_eq!(numbered("12.json", ".json"), Some(12));
        assert_eq!(numbered("12-ts.json", "-ts.json"), Some(12));
        assert_eq!(numbered("12-ts.json", ".json"), None);
        assert_eq!(numbered(".json", ".json"), None);
        assert_eq!(numbered("1a.json", ".json"), None);
        assert_eq!(numbered("99999999999.json", ".json"), None);
    }

    #[test]
    fn transcript_interns_speakers_and_warns_on_bad_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("5-ts.json");
        std::fs::write(
            &path,
            r#"{"duration": 99, "transcript": [
                {"speaker": "A", "time": "0:01", "text": " eins "},
                {"speaker": "B", "time": "1:2:3:4", "text": "zwei"},
                {"speaker": "A", "time": "", "text": "drei", "duration": 1.5},
                {"time": "0:00:05", "text": "vier"}
            ]}"#,
        )
        .unwrap();
        let mut warnings = Vec::new();
        let t = read_transcript(&path, &mut warnings).unwrap();
        assert_eq!(t.speakers, vec!["A", "B"]);
        assert_eq!(
            t.entries.iter().map(|e| e.speaker).collect::<Vec<_>>(),
            vec![0, 1, 0, NO_SPEAKER]
        );
        assert_eq!(t.timed, vec![0, 3]);
        assert_eq!(t.starts, vec![1.0, 5.0]);
        assert!(t.sorted);
        assert_eq!(t.duration, Some(99.0));
        assert_eq!(t.entries[2].duration, Some(1.5));
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("5-ts.json: entry 1: time \"1:2:3:4\""),
            "{}",
            warnings[0]
        );
    }
}
