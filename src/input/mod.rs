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

pub mod library;
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
}

impl PodcastSource {
    /// The podcast `id` under `data_root`, with whichever inputs exist.
    pub fn at(data_root: &Path, id: &str) -> Self {
        let rag_file = data_root.join("db").join(id).join(RAG_FILE);
        let podcast_dir = data_root.join("podcasts").join(id);
        PodcastSource {
            id: id.to_owned(),
            rag_file: rag_file.is_file().then_some(rag_file),
            podcast_dir: podcast_dir.is_dir().then_some(podcast_dir),
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
            let present = match wanted {
                Some(file) => path.join(file).is_file(),
                None => path.is_dir(),
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
