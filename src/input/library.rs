//! `podcasts/<podcast>/`: episode metadata, transcripts and speakers.
//!
//! These files are small (a transcript is at most ~0.5 MB), so each is read whole and parsed on
//! its own; the converter archives one transcript at a time, so memory still does not grow with
//! the podcast. Missing optional files are fine; a file that exists but is malformed is an error
//! that names it. What comes out are plain values in the original's shape; turning them into
//! archive records (interning speakers, parsing times) is the converter's job.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

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
    /// Problems that do not stop the conversion (two files for one episode number).
    pub warnings: Vec<String>,
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
            insert_numbered(&mut scan.metadata, n, path, &mut scan.warnings);
        } else if let Some(n) = numbered(&name, "-ts.json") {
            insert_numbered(&mut scan.transcripts, n, path, &mut scan.warnings);
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
    let is_dir = super::probe(&speakers)
        .map_err(|e| Error::io(&speakers, e))?
        .is_some_and(|m| m.is_dir());
    if is_dir {
        for (name, path) in list(&speakers)? {
            if name == "index.json" || name.ends_with(".md") || name.ends_with("-meta.json") {
                scan.speaker_files.push(path);
            }
        }
        scan.speakers_dir = Some(speakers);
    }
    Ok(scan)
}

/// Files `7.json` and `007.json` name the same episode. The one written without leading
/// zeros wins (else the first by name), whatever order the directory lists them in, and a
/// warning names both.
fn insert_numbered(
    files: &mut BTreeMap<u32, PathBuf>,
    n: u32,
    path: PathBuf,
    warnings: &mut Vec<String>,
) {
    let canonical = |p: &Path| {
        let name = p.file_name().and_then(|s| s.to_str()).unwrap_or("");
        name.strip_prefix(&n.to_string())
            .is_some_and(|rest| rest.starts_with(['.', '-']))
    };
    match files.get(&n) {
        None => {
            files.insert(n, path);
        }
        Some(kept) => {
            let (keep, drop) = if canonical(&path) && !canonical(kept) {
                (path, kept.clone())
            } else {
                (kept.clone(), path)
            };
            warnings.push(format!(
                "{} and {} both name episode {n}; using {}",
                keep.display(),
                drop.display(),
                keep.display()
            ));
            files.insert(n, keep);
        }
    }
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
            // A file that cannot be checked fails the podcast: skipping it would convert an
            // episode as if it did not exist.
            let meta = super::probe(&path).map_err(|e| Error::io(&path, e))?;
            if meta.is_some_and(|m| m.is_file()) {
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

/// Parses a JSON file as it is read, so the file's bytes and the parsed value are never both
/// in memory (a transcript can be over 100 MB).
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);
    let head = reader.fill_buf().map_err(|e| Error::io(path, e))?;
    if head.starts_with(b"\xEF\xBB\xBF") {
        reader.consume(3);
    }
    serde_json::from_reader(reader).map_err(|e| {
        if e.is_io() {
            Error::io(path, std::io::Error::other(e.to_string()))
        } else {
            Error::json(path, &e)
        }
    })
}

/// `episodes/<n>.json`: the 8 fields the original writes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct EpisodeMeta {
    pub title: Option<String>,
    pub number: Option<u32>,
    pub date: Option<String>,
    pub url: Option<String>,
    /// `[h, m, s]`.
    pub duration: Option<Vec<u32>>,
    pub description: Option<String>,
    pub speakers: Option<Vec<String>>,
    pub chapters: Option<Vec<String>>,
}

/// Reads `<n>.json`.
pub fn read_episode_meta(path: &Path) -> Result<EpisodeMeta> {
    read_json(path)
}

/// `episodes/<n>-ts.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TranscriptFile {
    #[serde(rename = "transcript")]
    pub entries: Vec<TranscriptEntry>,
    /// Top-level `duration` in seconds, when present.
    #[serde(default)]
    pub duration: Option<f64>,
}

/// A transcript entry as the original server reads it: `time` and `text` are required.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TranscriptEntry {
    #[serde(default)]
    pub speaker: Option<String>,
    pub time: String,
    pub text: String,
    #[serde(default)]
    pub duration: Option<f64>,
}

/// Reads `<n>-ts.json`.
pub fn read_transcript(path: &Path) -> Result<TranscriptFile> {
    read_json(path)
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

fn is_file(path: &Path) -> Result<bool> {
    Ok(super::probe(path)
        .map_err(|e| Error::io(path, e))?
        .is_some_and(|m| m.is_file()))
}

/// A row of `speakers/index.json` with its `<slug>.md` profile and the `image` of
/// `<slug>-meta.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeakerRow {
    pub speaker: String,
    pub slug: String,
    pub episodes_count: u64,
    pub utterances_count: u64,
    pub total_words: u64,
    pub episodes: Vec<u32>,
    pub profile: Option<String>,
    pub image: Option<String>,
}

/// Whether `slug` can name a speaker: it becomes a file name (`<slug>.md`) at conversion and
/// a lookup key in requests, so it must not leave its folder, hide, or exceed 200 bytes. The
/// one slug rule of the converter and the server.
pub fn valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= MAX_SLUG_LEN
        && !slug.starts_with('.')
        && !slug.contains(['/', '\\', '\0'])
}

/// Longest slug accepted (as the longest podcast id the server looks up).
pub const MAX_SLUG_LEN: usize = 200;

/// Reads `speakers/index.json` with each row's `<slug>.md` and the `image` of
/// `<slug>-meta.json`. `None` without an index (the original then serves no speakers).
pub fn read_speakers(scan: &LibraryScan) -> Result<Option<Vec<SpeakerRow>>> {
    let Some(dir) = &scan.speakers_dir else {
        return Ok(None);
    };
    let index = dir.join("index.json");
    if !is_file(&index)? {
        return Ok(None);
    }
    let rows: Vec<SpeakerJson> = read_json(&index)?;
    let mut speakers = Vec::with_capacity(rows.len());
    for row in rows {
        // Slugs become file names here: one that could leave the folder is refused.
        if !valid_slug(&row.slug) {
            return Err(Error::InvalidInput {
                path: index.clone(),
                reason: format!(
                    "speaker {:?} has an unusable slug {:?}",
                    row.speaker, row.slug
                ),
            });
        }
        let profile_path = dir.join(format!("{}.md", row.slug));
        let profile = if is_file(&profile_path)? {
            Some(std::fs::read_to_string(&profile_path).map_err(|e| Error::io(&profile_path, e))?)
        } else {
            None
        };
        let meta_path = dir.join(format!("{}-meta.json", row.slug));
        let image = if is_file(&meta_path)? {
            read_json::<SpeakerMetaJson>(&meta_path)?.image
        } else {
            None
        };
        speakers.push(SpeakerRow {
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
    Ok(Some(speakers))
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
    fn slugs_that_could_be_paths_are_invalid() {
        for bad in [
            "",
            "../x",
            "a/b",
            "a\\b",
            ".hidden",
            "a\0b",
            &"x".repeat(201),
        ] {
            assert!(!valid_slug(bad), "{bad:?}");
        }
        assert!(valid_slug("stefan-kröpelin"));
    }
}
