//! Shared test helpers: the real corpus beside the checkout, and small hand-made data roots.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// `../shared/corpus` beside the checkout (or `PODMAP_CORPUS`). The tests that need it are
/// ignored, with that reason, when `build.rs` did not find it (`cfg(podmap_corpus)`), so this
/// panics only when one is forced to run without it (`--include-ignored`).
pub fn corpus() -> PathBuf {
    let dir = std::env::var_os("PODMAP_CORPUS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    assert!(
        dir.join("queries.json").is_file(),
        "the corpus is not at {}: put ../shared/corpus beside the checkout or set PODMAP_CORPUS",
        dir.display()
    );
    dir
}

/// A query of the corpus's `queries.json`: its embedding and the exact top-10 rows (with their
/// scores) of its podcast.
pub struct CorpusQuery {
    pub podcast: String,
    pub embedding: Vec<f32>,
    pub top10: Vec<u32>,
    pub top10_scores: Vec<f64>,
}

/// Every query of the corpus's `queries.json`.
pub fn corpus_queries() -> Vec<CorpusQuery> {
    let path = corpus().join("queries.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| CorpusQuery {
            podcast: q["podcast"].as_str().unwrap().to_owned(),
            embedding: serde_json::from_value(q["embedding"].clone()).unwrap(),
            top10: serde_json::from_value(q["top10"].clone()).unwrap(),
            top10_scores: serde_json::from_value(q["top10Scores"].clone()).unwrap(),
        })
        .collect()
}

/// A RAG item in the original format, with an embedding of `dims` values derived from `seed`.
pub fn item(id: u32, episode: u32, topic: &str, embedding: Option<Vec<f32>>) -> Value {
    json!({
        "id": id,
        "key": format!("{episode}:0:0:{}", topic.to_lowercase()),
        "episodeNumber": episode,
        "episodeTitle": format!("T{episode:03} Titel"),
        "topic": topic,
        "subject": {"coarse": "Raumfahrt", "fine": null},
        "startSec": 0,
        "endSec": 0,
        "startHms": "0:00",
        "endHms": "0:00",
        "durationSec": 0,
        "summary": format!("Es geht um {topic}."),
        "source": {"file": format!("{episode}-extended-topics.json"), "topicIndex": 0, "summaryMeta": null},
        "text": format!("Episode: {episode} - T{episode:03} Titel\nTopic: {topic}"),
        "embedding": embedding,
    })
}

/// A deterministic vector of `dims` values.
pub fn vector(dims: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    (0..dims)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) - 0.5
        })
        .collect()
}

/// Writes `<root>/db/<podcast>/rag-embeddings.json` as the original writer does (pretty JSON).
pub fn write_rag(root: &Path, podcast: &str, dims: usize, items: Vec<Value>) -> PathBuf {
    let doc = json!({
        "schemaVersion": 1,
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-01T00:00:00.000Z",
        "embeddingModel": "test/model",
        "embeddingDimensions": dims,
        "source": {"type": "extended-topics", "inDir": format!("podcasts/{podcast}/episodes"), "episodeCount": 3},
        "items": items,
        "stats": {"totalItems": 0, "skippedNoTime": 0, "filledNoTime": 0, "reusedEmbeddings": 0},
    });
    write_raw(
        root,
        podcast,
        &(serde_json::to_string_pretty(&doc).unwrap() + "\n"),
    )
}

/// Writes arbitrary text as a podcast's RAG file.
pub fn write_raw(root: &Path, podcast: &str, text: &str) -> PathBuf {
    let dir = root.join("db").join(podcast);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rag-embeddings.json");
    std::fs::write(&path, text).unwrap();
    path
}

/// A small, valid data root with `n` items of `dims` dimensions in one podcast.
pub fn small_root(root: &Path, podcast: &str, n: u32, dims: usize) -> PathBuf {
    let items = (0..n)
        .map(|i| {
            item(
                i,
                1 + i / 3,
                &format!("Thema {i}"),
                Some(vector(dims, i + 1)),
            )
        })
        .collect();
    write_rag(root, podcast, dims, items)
}

/// Converts every podcast under `data_root` into `out` with no progress output, asserting
/// that each one converted; returns the reports (for their warnings).
pub fn convert_quietly(data_root: &Path, out: &Path) -> Vec<podmap::convert::Report> {
    let opts = podmap::convert::ConvertOptions {
        data_root: data_root.to_path_buf(),
        out_dir: out.to_path_buf(),
        podcasts: Vec::new(),
        force: false,
    };
    let hidden =
        indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
    let reports = podmap::convert::convert_all(&opts, &hidden).unwrap();
    for r in &reports {
        assert!(
            matches!(r.result, Ok(podmap::convert::Outcome::Converted(_))),
            "{}: {:?}",
            r.podcast,
            r.result
        );
    }
    reports
}

/// The bundled fixtures (`fixtures/data`), converted once per test binary.
pub fn fixtures_index() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let out = tempfile::tempdir().unwrap();
        convert_quietly(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/data"),
            out.path(),
        );
        out
    })
    .path()
}

/// Runs the `podmap` binary as a user runs it.
pub fn podmap(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_podmap"))
        .args(args)
        .output()
        .expect("run podmap")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `settings` without rate limits: for tests that send many requests as one client (through
/// `oneshot` every request is the one unknown client). The limits have their own tests.
pub fn unlimited(settings: podmap::server::Settings) -> podmap::server::Settings {
    podmap::server::Settings {
        admission: podmap::server::admission::Admission {
            rate_limits: podmap::server::limits::RateLimits::off(),
            ..settings.admission
        },
        ..settings
    }
}

/// `podmap serve` on the fixtures, as a user runs it, with `args` added, JSON logs at INFO
/// and no analytics store (the default one would be created in the checkout). Its stderr
/// lines arrive on the receiver, read by a thread of their own so the server never blocks
/// on a full pipe.
pub fn serve_with_json_logs(
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_podmap"))
        .args(["serve", "--index", s(fixtures_index())])
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--analytics", "off"])
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("PODMAP_LOG_FORMAT")
        .env_remove("PODMAP_PRELOAD")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run podmap serve");
    let stderr = child.stderr.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            if lines.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    (child, received)
}
