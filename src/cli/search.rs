//! `podmap search`: one podcast by query vectors read from a file, or by text, from the
//! archive or (as the baseline) the original JSON; prints hits as a table or JSON lines.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use podmap::input::npy::{self, NpyVectors};
use podmap::mem::ProcessMemory;
use podmap::{Filter, JsonIndex, MmapIndex, SearchIndex, SearchMode};

use super::{Source, DATA_REQUIRED, INDEX_REQUIRED};

#[derive(Debug, Args)]
pub(super) struct SearchArgs {
    /// Index directory written by `podmap convert` (with --source mmap).
    #[arg(long, value_name = "INDEX_DIR")]
    index: Option<PathBuf>,
    /// Podcast id.
    #[arg(long, value_name = "ID")]
    podcast: String,
    /// Query vectors: a JSON file with one vector (an array of floats) or several (an array of
    /// arrays), or a NumPy .npy file (float32 '<f4', shape (d,) or (n, d); chosen by the .npy
    /// extension or the file's magic bytes), as `np.save` writes embeddings.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "text",
        required_unless_present = "text"
    )]
    vector: Option<PathBuf>,
    /// Lexical search with the original server's scoring (for podcasts without embeddings).
    #[arg(long, value_name = "QUERY")]
    text: Option<String>,
    /// Number of hits per query.
    #[arg(long, default_value_t = 10, value_name = "K")]
    top_k: usize,
    /// Only episodes in FROM..=TO, e.g. `--episodes 10..20`.
    #[arg(long, value_name = "FROM..TO", value_parser = parse_range)]
    episodes: Option<(u32, u32)>,
    /// Only this episode (repeatable); combine several for a set.
    #[arg(long = "episode", value_name = "N", conflicts_with = "episodes")]
    episode_set: Vec<u32>,
    /// How to scan: every f32 row (exact), or the int8 or sign-bit codes for
    /// `top-k × oversample` candidates rescored exactly (the same scores, possibly other hits).
    #[arg(long, value_name = "MODE", default_value = "exact", value_parser = parse_mode)]
    mode: SearchMode,
    /// Candidates per hit for the int8 and binary modes (default: 4 for int8, 20 for binary).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    oversample: Option<u32>,
    /// Print one JSON line per query instead of a table.
    #[arg(long)]
    json: bool,
    /// Where to read the podcast from.
    #[arg(long, value_enum, default_value_t = Source::Mmap)]
    source: Source,
    /// Data root in the original layout (with --source json).
    #[arg(long, value_name = "ROOT")]
    data: Option<PathBuf>,
    /// Print this process's memory use to stderr as JSON when done (for benchmarks).
    #[arg(long, hide = true)]
    report_memory: bool,
}

fn parse_mode(s: &str) -> Result<SearchMode, String> {
    s.parse()
        .map_err(|e: podmap::search::UnknownMode| e.to_string())
}

fn parse_range(s: &str) -> Result<(u32, u32), String> {
    let (from, to) = s
        .split_once("..")
        .ok_or_else(|| format!("expected FROM..TO, got {s:?}"))?;
    let from: u32 = from
        .trim()
        .parse()
        .map_err(|e| format!("bad FROM {from:?}: {e}"))?;
    let to: u32 = to
        .trim()
        .parse()
        .map_err(|e| format!("bad TO {to:?}: {e}"))?;
    if from > to {
        return Err(format!("FROM {from} is after TO {to}"));
    }
    Ok((from, to))
}

pub(super) fn run(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let index: Box<dyn SearchIndex> = match args.source {
        Source::Mmap => {
            let dir = args.index.as_deref().context(INDEX_REQUIRED)?;
            Box::new(MmapIndex::open_podcast(dir, &args.podcast)?)
        }
        Source::Json => {
            let root = args.data.as_deref().context(DATA_REQUIRED)?;
            Box::new(JsonIndex::load_podcast(root, &args.podcast)?)
        }
    };
    let filter = match (&args.episodes, args.episode_set.is_empty()) {
        (Some((from, to)), _) => Filter::episode_range(*from, *to),
        (None, false) => Filter::episode_set(args.episode_set.clone()),
        (None, true) => Filter::all(),
    };
    let mode = match args.oversample {
        Some(n) => args.mode.with_oversample(n),
        None => args.mode,
    };
    let mut out = std::io::stdout().lock();
    if let Some(text) = &args.text {
        let hits = index.search_text(text, args.top_k, &filter)?;
        print_hits(&mut out, index.as_ref(), 0, &hits, args.json)?;
    } else {
        let path = args.vector.as_deref().expect("required by clap");
        for (i, query) in read_queries(path)?.rows().enumerate() {
            let hits = index
                .search_vector_in(query, args.top_k, &filter, mode)
                .with_context(|| format!("query {i} of {}", path.display()))?;
            print_hits(&mut out, index.as_ref(), i, &hits, args.json)?;
        }
    }
    if args.report_memory {
        eprintln!("{}", serde_json::to_string(&ProcessMemory::current())?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Query vectors as read from `--vector`.
enum Queries {
    Json(Vec<Vec<f32>>),
    Npy(NpyVectors),
}

impl Queries {
    fn rows(&self) -> Box<dyn Iterator<Item = &[f32]> + '_> {
        match self {
            Queries::Json(rows) => Box::new(rows.iter().map(Vec::as_slice)),
            Queries::Npy(npy) => Box::new(npy.rows()),
        }
    }
}

/// Reads a `.npy` file (by extension or magic bytes), else JSON: one query vector (`[f, …]`)
/// or several (`[[f, …], …]`).
fn read_queries(path: &Path) -> anyhow::Result<Queries> {
    let npy_extension = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if npy_extension || starts_with_npy_magic(path)? {
        return Ok(Queries::Npy(npy::read_npy(path)?));
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let nested = value
        .as_array()
        .and_then(|a| a.first())
        .is_some_and(serde_json::Value::is_array);
    let parsed = if nested {
        serde_json::from_value::<Vec<Vec<f32>>>(value)
    } else {
        serde_json::from_value::<Vec<f32>>(value).map(|v| vec![v])
    };
    parsed.map(Queries::Json).with_context(|| {
        format!(
            "{}: expected an array of numbers or an array of such arrays",
            path.display()
        )
    })
}

/// Whether the file begins with the `.npy` magic (a `.npy` saved under another name).
fn starts_with_npy_magic(path: &Path) -> anyhow::Result<bool> {
    let mut head = Vec::with_capacity(npy::NPY_MAGIC.len());
    std::fs::File::open(path)
        .and_then(|f| f.take(npy::NPY_MAGIC.len() as u64).read_to_end(&mut head))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(npy::is_npy(&head))
}

/// One hit as `--json` prints it; the score stays an f32 so it prints as the shortest decimal.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct HitJson<'a> {
    id: u32,
    episode_number: u32,
    topic: Option<&'a str>,
    start_sec: f64,
    end_sec: f64,
    score: f32,
}

fn print_hits(
    out: &mut impl Write,
    index: &dyn SearchIndex,
    query: usize,
    hits: &[podmap::Hit],
    as_json: bool,
) -> anyhow::Result<()> {
    if as_json {
        let hits = hits
            .iter()
            .map(|h| {
                let item = index.item(h.index as usize)?;
                Ok(HitJson {
                    id: item.id,
                    episode_number: item.episode_number,
                    topic: item.topic,
                    start_sec: item.start_sec,
                    end_sec: item.end_sec,
                    score: h.score,
                })
            })
            .collect::<podmap::Result<Vec<HitJson>>>()?;
        #[derive(serde::Serialize)]
        struct Line<'a> {
            query: usize,
            hits: Vec<HitJson<'a>>,
        }
        writeln!(out, "{}", serde_json::to_string(&Line { query, hits })?)?;
        return Ok(());
    }
    if query > 0 {
        writeln!(out)?;
    }
    writeln!(out, "query {query}: {} hits", hits.len())?;
    writeln!(
        out,
        "{:>6} {:>7} {:>9} {:>9} {:>9}  topic",
        "id", "episode", "startSec", "endSec", "score"
    )?;
    for h in hits {
        let item = index.item(h.index as usize)?;
        writeln!(
            out,
            "{:>6} {:>7} {:>9} {:>9} {:>9.6}  {}",
            item.id,
            item.episode_number,
            item.start_sec,
            item.end_sec,
            h.score,
            item.topic.unwrap_or("")
        )?;
    }
    Ok(())
}
