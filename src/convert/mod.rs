//! `podmap convert`: the original files in, one archive per podcast out.
//!
//! Podcasts convert in parallel. Each one streams its RAG file item by item into an
//! [`ArchiveWriter`], then archives its transcripts one at a time, its episodes and speakers.
//! The input's plain values become archive records in `convert::records`, the one place that knows
//! both shapes.
//! One podcast's failure does not stop the others; every outcome is reported. An archive whose
//! header records the same input fingerprint (names, sizes and mtimes of every input file) and
//! this build's format is left alone unless `force` is set.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::archive::format::{Header, FORMAT_VERSION, HEADER_SIZE};
use crate::archive::records::{schema_hash, EpisodeRecord};
use crate::archive::{archive_path, ArchiveWriter, Provenance, WrittenArchive};
use crate::error::{Error, Result};
use crate::input::library::{self, LibraryScan};
use crate::input::{self, InputFingerprint, ItemSink, PodcastSource, RagHeader, RawItem};

mod records;

/// What to convert.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// The original data root (holds `db/` and `podcasts/`).
    pub data_root: PathBuf,
    /// Where archives go: `<out_dir>/<podcast>/rag.podmap`.
    pub out_dir: PathBuf,
    /// Podcasts to convert; empty means every podcast found.
    pub podcasts: Vec<String>,
    /// Convert even when the inputs are unchanged.
    pub force: bool,
}

/// How one podcast's conversion ended.
#[derive(Debug)]
pub enum Outcome {
    Converted(WrittenArchive),
    /// The archive already matches the inputs.
    Unchanged(PathBuf),
}

/// One line of the conversion summary.
#[derive(Debug)]
pub struct Report {
    pub podcast: String,
    pub input_bytes: u64,
    pub elapsed: Duration,
    pub result: Result<Outcome>,
    /// Problems that did not stop the conversion (unparseable transcript times).
    pub warnings: Vec<String>,
}

/// Converts the selected podcasts in parallel. Progress bars go to `progress` (hidden when it
/// draws nowhere). Reports come back in podcast order, one per podcast.
pub fn convert_all(opts: &ConvertOptions, progress: &MultiProgress) -> Result<Vec<Report>> {
    let found = input::discover_podcasts(&opts.data_root)?;
    let selected: Vec<Result<PodcastSource, String>> = if opts.podcasts.is_empty() {
        found.into_iter().map(Ok).collect()
    } else {
        opts.podcasts
            .iter()
            .map(|id| {
                found
                    .iter()
                    .find(|p| &p.id == id)
                    .cloned()
                    .ok_or(id.clone())
            })
            .collect()
    };
    Ok(selected
        .into_par_iter()
        .map(|source| match source {
            Ok(source) => convert_one(&source, opts, progress),
            Err(id) => Report {
                result: Err(Error::io(
                    opts.data_root.join("db").join(&id),
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("no podcast {id:?}: neither db/{id}/rag-embeddings.json nor podcasts/{id}/ exists"),
                    ),
                )),
                podcast: id,
                input_bytes: 0,
                elapsed: Duration::ZERO,
                warnings: Vec::new(),
            },
        })
        .collect())
}

fn convert_one(source: &PodcastSource, opts: &ConvertOptions, progress: &MultiProgress) -> Report {
    let started = Instant::now();
    let mut warnings = Vec::new();
    let mut input_bytes = 0;
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if let Some(reason) = input::podcast_id_problem(&source.id) {
            return Err(Error::InvalidInput {
                path: source.main_input(),
                reason: format!("cannot be served under this name: {reason}; rename the folder"),
            });
        }
        let (scan, fingerprint) = inputs(source)?;
        input_bytes = fingerprint.len;
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
        let written = convert_podcast_with(source, &scan, &out, fingerprint, &bar, &mut warnings);
        bar.finish_and_clear();
        progress.remove(&bar);
        written.map(Outcome::Converted)
    }));
    // A bug in one podcast's conversion must not take the others' reports with it.
    let result = attempt.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Error::InvalidInput {
            path: source.main_input(),
            reason: format!("conversion failed on an internal error ({what}); the previous archive is untouched"),
        })
    });
    Report {
        podcast: source.id.clone(),
        input_bytes,
        elapsed: started.elapsed(),
        result,
        warnings,
    }
}

/// Converts one podcast into a new archive at `out`, without progress output. Returns the
/// archive and the warnings.
pub fn convert_podcast(
    source: &PodcastSource,
    out: &Path,
) -> Result<(WrittenArchive, Vec<String>)> {
    let (scan, fingerprint) = inputs(source)?;
    let mut warnings = Vec::new();
    let bar = ProgressBar::hidden();
    let written = convert_podcast_with(source, &scan, out, fingerprint, &bar, &mut warnings)?;
    Ok((written, warnings))
}

/// Lists a podcast's input files and fingerprints them (their names, sizes and mtimes).
fn inputs(source: &PodcastSource) -> Result<(LibraryScan, InputFingerprint)> {
    source.check_readable()?;
    let scan = match &source.podcast_dir {
        Some(dir) => library::read_episode_dir(dir)?,
        None => LibraryScan::default(),
    };
    let mut files = scan.files();
    files.extend(source.rag_file.clone());
    let fingerprint = InputFingerprint::of_files(&files)?;
    Ok((scan, fingerprint))
}

fn convert_podcast_with(
    source: &PodcastSource,
    scan: &LibraryScan,
    out: &Path,
    fingerprint: InputFingerprint,
    bar: &ProgressBar,
    warnings: &mut Vec<String>,
) -> Result<WrittenArchive> {
    warnings.extend(scan.warnings.iter().cloned());
    let writer = ArchiveWriter::create(out, &source.id, &source.main_input())?;
    let mut sink = Sink {
        writer,
        topics: BTreeMap::new(),
        ids: HashMap::new(),
    };
    match &source.rag_file {
        Some(rag) => {
            let wrap = |file: File| -> Box<dyn Read> { Box::new(bar.wrap_read(file)) };
            let tail = input::stream_rag_file(rag, &mut sink, wrap)?;
            sink.writer.end_rag(Some(records::manifest(&tail)))?;
            let mut repeated: Vec<(u32, u32)> = sink
                .ids
                .iter()
                .filter(|(_, &n)| n > 1)
                .map(|(&id, &n)| (id, n))
                .collect();
            repeated.sort_unstable();
            for (id, n) in repeated {
                warnings.push(format!("{}: item id {id} appears {n} times", rag.display()));
            }
        }
        None => sink.writer.end_rag(None)?,
    }
    let Sink {
        mut writer, topics, ..
    } = sink;

    for (&number, path) in &scan.transcripts {
        let file = library::read_transcript(path)?;
        writer.push_transcript(number, &records::transcript(file, path, warnings))?;
        bar.inc(std::fs::metadata(path).map_or(0, |m| m.len()));
    }
    let numbers: std::collections::BTreeSet<u32> = scan
        .episode_numbers()
        .into_iter()
        .chain(topics.keys().copied())
        .collect();
    let mut episodes = Vec::with_capacity(numbers.len());
    for number in numbers {
        let meta = scan
            .metadata
            .get(&number)
            .map(|path| {
                library::read_episode_meta(path).map(|m| records::episode_meta(m, path, warnings))
            })
            .transpose()?;
        episodes.push(EpisodeRecord {
            number,
            meta,
            has_image: scan.images.contains_key(&number),
            has_transcript: scan.transcripts.contains_key(&number),
            topics: topics.get(&number).cloned().unwrap_or_default(),
        });
    }
    let speakers = library::read_speakers(scan)?.map(|rows| {
        let index = scan
            .speakers_dir
            .as_deref()
            .map(|d| d.join("index.json"))
            .unwrap_or_default();
        records::speakers(rows, &index, warnings)
    });
    let provenance = Provenance {
        len: fingerprint.len,
        fingerprint: fingerprint.hash,
    };
    writer.finish(episodes, speakers, provenance)
}

/// Streams RAG items into the writer and gathers each episode's topics on the way.
struct Sink {
    writer: ArchiveWriter,
    /// Episode → distinct non-blank topics, in item order.
    topics: BTreeMap<u32, Vec<String>>,
    /// How often each item id occurs (ids should be unique; repeats are reported).
    ids: HashMap<u32, u32>,
}

impl ItemSink for Sink {
    fn begin(&mut self, header: &RagHeader) -> Result<()> {
        self.writer.begin(header.embedding_dimensions)
    }

    fn item(&mut self, item: RawItem) -> Result<()> {
        if let Some(topic) = item.topic.as_deref().filter(|t| !t.trim().is_empty()) {
            let topics = self.topics.entry(item.episode_number).or_default();
            if !topics.iter().any(|t| t == topic) {
                topics.push(topic.to_owned());
            }
        }
        *self.ids.entry(item.id).or_default() += 1;
        let (record, embedding) = records::item(item);
        self.writer.push(record, embedding.as_deref())
    }
}

/// True when `archive` exists, is of this build's format, and was made from inputs with
/// exactly this fingerprint. Only the header is read.
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
                && h.input_fingerprint == fingerprint.hash
        }
        Err(_) => false,
    }
}
