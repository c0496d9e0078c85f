//! The original on-disk layout under a data root, read without changing it.
//!
//! ```text
//! <ROOT>/db/<podcast>/rag-embeddings.json        RAG items with embeddings (rag)
//! <ROOT>/podcasts/<podcast>/episodes/<n>.json    episode metadata          (library)
//! <ROOT>/podcasts/<podcast>/episodes/<n>-ts.json transcript                (library)
//! <ROOT>/podcasts/<podcast>/speakers/…           speaker index, profiles   (library)
//! ```
//!
//! A podcast is anything with a RAG file or a `podcasts/<id>/` folder: one without a RAG file
//! still has episodes, transcripts and speakers to serve.
//!
//! Beside it, [`npy`] reads query vectors from NumPy `.npy` files (`podmap search --vector`).

pub mod library;
pub mod npy;
pub mod rag;

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

pub use library::{read_episode_dir, LibraryScan};
pub use rag::{
    stream_rag_file, stream_rag_reader, ItemSink, RagHeader, RagTail, RawItem, RawSubject,
};

use crate::error::{Error, Result};

/// Name of the RAG file inside `db/<podcast>/`.
pub const RAG_FILE: &str = "rag-embeddings.json";

/// A podcast found under a data root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodcastSource {
    pub id: String,
    /// `db/<id>/rag-embeddings.json`, when it exists.
    pub rag_file: Option<PathBuf>,
    /// `podcasts/<id>/`, when it exists.
    pub podcast_dir: Option<PathBuf>,
    /// An input whose existence could not be checked (permission denied, I/O error): the
    /// podcast must fail rather than convert as if that input were absent.
    pub unreadable: Option<(PathBuf, String)>,
}

impl PodcastSource {
    /// The podcast `id` under `data_root`, with whichever inputs exist.
    pub fn at(data_root: &Path, id: &str) -> Self {
        let rag_file = data_root.join("db").join(id).join(RAG_FILE);
        let podcast_dir = data_root.join("podcasts").join(id);
        let mut unreadable = None;
        let mut check = |path: &Path, kind: fn(&std::fs::Metadata) -> bool| match probe(path) {
            Ok(meta) => meta.as_ref().is_some_and(kind),
            Err(e) => {
                unreadable.get_or_insert((path.to_path_buf(), e.to_string()));
                false
            }
        };
        let has_rag = check(&rag_file, std::fs::Metadata::is_file);
        let has_dir = check(&podcast_dir, std::fs::Metadata::is_dir);
        PodcastSource {
            id: id.to_owned(),
            rag_file: has_rag.then_some(rag_file),
            podcast_dir: has_dir.then_some(podcast_dir),
            unreadable,
        }
    }

    /// Fails when an input could not be checked (see [`PodcastSource::unreadable`]).
    pub fn check_readable(&self) -> Result<()> {
        match &self.unreadable {
            Some((path, reason)) => Err(Error::io(
                path,
                std::io::Error::other(format!("cannot be read: {reason}")),
            )),
            None => Ok(()),
        }
    }

    /// The file errors about this podcast should name first.
    pub fn main_input(&self) -> PathBuf {
        self.rag_file
            .clone()
            .or_else(|| self.podcast_dir.clone())
            .unwrap_or_else(|| PathBuf::from(&self.id))
    }
}

/// Every podcast under `data_root`: `db/*/rag-embeddings.json` (as the original server finds
/// them) and `podcasts/*/`. Sorted by id.
pub fn discover_podcasts(data_root: &Path) -> Result<Vec<PodcastSource>> {
    let mut ids = std::collections::BTreeSet::new();
    let mut any_folder = false;
    for (folder, wanted) in [("db", Some(RAG_FILE)), ("podcasts", None)] {
        let dir = data_root.join(folder);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        any_folder = true;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let path = entry.path();
            // An input that cannot be checked counts as present, so that its podcast fails
            // with the reason instead of silently converting without it.
            let present = match wanted {
                Some(file) => {
                    probe(&path.join(file)).map_or(true, |m| m.is_some_and(|m| m.is_file()))
                }
                None => probe(&path).map_or(true, |m| m.is_some_and(|m| m.is_dir())),
            };
            // Podcast ids are used in URLs and file names: a non-UTF-8 or hidden folder
            // cannot be one.
            match entry.file_name().to_str() {
                Some(id) if present && !id.starts_with('.') => {
                    ids.insert(id.to_owned());
                }
                _ => {}
            }
        }
    }
    if !any_folder {
        return Err(Error::io(
            data_root,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "neither db/ nor podcasts/ found: not a data root",
            ),
        ));
    }
    Ok(ids
        .iter()
        .map(|id| PodcastSource::at(data_root, id))
        .collect())
}

/// Longest podcast id: ids appear in URLs and are looked up by the server, which refuses
/// longer ones.
pub const MAX_PODCAST_ID_LEN: usize = 200;

/// Why a folder name cannot be a podcast id, if it cannot: the id is the folder name in the
/// index directory and the `podcastId` of every request, so it must survive both unchanged.
pub fn podcast_id_problem(id: &str) -> Option<String> {
    if id.is_empty() || id.len() > MAX_PODCAST_ID_LEN {
        return Some(format!(
            "the folder name is {} bytes long; podcast ids are 1 to {MAX_PODCAST_ID_LEN} bytes",
            id.len()
        ));
    }
    if id.trim() != id {
        return Some("the folder name starts or ends with white space, which requests trim".into());
    }
    if id.starts_with('.') || id.contains(['/', '\\']) || id.chars().any(char::is_control) {
        return Some("the folder name is hidden or contains a slash or a control character".into());
    }
    None
}

/// The metadata of `path` (following symlinks); `None` when it does not exist. Any other
/// failure (permission denied, I/O error) is an error: a file that cannot be checked is not
/// a file that is absent.
pub(crate) fn probe(path: &Path) -> std::io::Result<Option<std::fs::Metadata>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Total size and a hash of the names, sizes and mtimes of a set of input files: recorded in
/// the archive header so that unchanged inputs can be skipped without reading them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InputFingerprint {
    pub len: u64,
    pub hash: u64,
}

impl InputFingerprint {
    /// The fingerprint of one file.
    pub fn of(path: &Path) -> Result<Self> {
        Self::of_files(std::slice::from_ref(&path.to_path_buf()))
    }

    /// The fingerprint of several files (order does not matter).
    pub fn of_files(files: &[PathBuf]) -> Result<Self> {
        let mut sorted: Vec<&PathBuf> = files.iter().collect();
        sorted.sort();
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut len = 0;
        for path in sorted {
            let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
            let mtime_ns = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as u64);
            len += meta.len();
            hasher.update(path.as_os_str().as_encoded_bytes());
            hasher.update(&[0]);
            hasher.update(&meta.len().to_le_bytes());
            hasher.update(&mtime_ns.to_le_bytes());
        }
        Ok(InputFingerprint {
            len,
            hash: hasher.digest(),
        })
    }
}
