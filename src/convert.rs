//! `podmap convert`: original JSON in, one archive per podcast out.
//!
//! Podcasts convert in parallel, each streamed item by item into an [`ArchiveWriter`]. One
//! podcast's failure does not stop the others; every outcome is reported. An archive whose
//! header records the same input size and mtime (and this build's format) is left alone unless
//! `force` is set.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::archive::format::{Header, FORMAT_VERSION, HEADER_SIZE};
use crate::archive::records::schema_hash;
use crate::archive::writer::WrittenArchive;
use crate::archive::{ArchiveWriter, InputFingerprint};
use crate::error::{Error, Result};
use crate::index::archive_path;
use crate::input::{self, ItemSink, PodcastSource, RagHeader, RawItem};

/// What to convert.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// The original data root (holds `db/` and `podcasts/`).
    pub data_root: PathBuf,
    /// Where archives go: `<out_dir>/<podcast>/rag.podmap`.
    pub out_dir: PathBuf,
    /// Podcasts to convert; empty means every podcast found.
    pub podcasts: Vec<String>,
    /// Convert even when the input is unchanged.
    pub force: bool,
}

/// How one podcast's conversion ended.
#[derive(Debug)]
pub enum Outcome {
    Converted(WrittenArchive),
    /// The archive already matches the input.
    Unchanged(PathBuf),
}

/// One line of the conversion summary.
#[derive(Debug)]
pub struct Report {
    pub podcast: String,
    pub input: PathBuf,
    pub input_bytes: u64,
    pub elapsed: Duration,
    pub result: Result<Outcome>,
}

/// Converts the selected podcasts in parallel. Progress bars go to `progress` (hidden when
/// it draws nowhere). Reports come back in podcast order, one per podcast.
pub fn convert_all(opts: &ConvertOptions, progress: &MultiProgress) -> Result<Vec<Report>> {
    let found = input::discover_podcasts(&opts.data_root)?;
    let mut selected: Vec<Result<PodcastSource, String>> = Vec::new();
    if opts.podcasts.is_empty() {
        selected.extend(found.into_iter().map(Ok));
    } else {
        for id in &opts.podcasts {
            match found.iter().find(|p| &p.id == id) {
                Some(p) => selected.push(Ok(p.clone())),
                None => selected.push(Err(id.clone())),
            }
        }
    }
    Ok(selected
        .into_par_iter()
        .map(|source| match source {
            Ok(source) => convert_one(&source, opts, progress),
            Err(id) => {
                let input = opts.data_root.join("db").join(&id).join(input::RAG_FILE);
                Report {
                    podcast: id,
                    input: input.clone(),
                    input_bytes: 0,
                    elapsed: Duration::ZERO,
                    result: Err(Error::io(
                        input,
                        std::io::Error::new(std::io::ErrorKind::NotFound, "no such podcast"),
                    )),
                }
            }
        })
        .collect())
}

fn convert_one(source: &PodcastSource, opts: &ConvertOptions, progress: &MultiProgress) -> Report {
    let started = Instant::now();
    let fingerprint = InputFingerprint::of(&source.rag_file);
    let input_bytes = fingerprint.as_ref().map_or(0, |f| f.len);
    let result = fingerprint.and_then(|fingerprint| {
        let out = archive_path(&opts.out_dir, &source.id);
        if !opts.force && is_current(&out, fingerprint) {
            return Ok(Outcome::Unchanged(out));
        }
        let bar = progress.add(ProgressBar::new(fingerprint.len));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>16} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(source.id.clone());
        let written = convert_podcast(source, &out, fingerprint, |file| {
            Box::new(bar.wrap_read(file))
        });
        bar.finish_and_clear();
        progress.remove(&bar);
        written.map(Outcome::Converted)
    });
    Report {
        podcast: source.id.clone(),
        input: source.rag_file.clone(),
        input_bytes,
        elapsed: started.elapsed(),
        result,
    }
}

/// Streams one podcast's RAG file into a new archive at `out`.
pub fn convert_podcast(
    source: &PodcastSource,
    out: &Path,
    fingerprint: InputFingerprint,
    wrap: impl FnOnce(File) -> Box<dyn Read>,
) -> Result<WrittenArchive> {
    let writer = ArchiveWriter::create(out, &source.id, &source.rag_file, fingerprint)?;
    let mut sink = Sink { writer };
    let tail = input::stream_rag_file(&source.rag_file, &mut sink, wrap)?;
    sink.writer.finish(&tail)
}

struct Sink {
    writer: ArchiveWriter,
}

impl ItemSink for Sink {
    fn begin(&mut self, header: &RagHeader) -> Result<()> {
        self.writer.begin(header)
    }

    fn item(&mut self, item: RawItem) -> Result<()> {
        self.writer.push(item)
    }
}

/// True when `archive` exists, is of this build's format, and was made from an input of
/// exactly this size and mtime. Only the header is read.
fn is_current(archive: &Path, fingerprint: InputFingerprint) -> bool {
    let Ok(mut file) = File::open(archive) else {
        return false;
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return false;
    };
    let mut head = vec![0u8; HEADER_SIZE];
    if file.read_exact(&mut head).is_err() {
        return false;
    }
    match Header::decode(&head, len) {
        Ok(h) => {
            h.version == FORMAT_VERSION
                && h.schema_hash == schema_hash()
                && h.input_len == fingerprint.len
                && h.input_mtime_ns == fingerprint.mtime_ns
        }
        Err(_) => false,
    }
}
