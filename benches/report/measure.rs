//! podmap's side of the report: steady top-k latency per mode, open → first result for the
//! mapped archive and the JSON path, resident memory of a fresh `podmap search` process, and
//! recall of the quantized modes.

use std::collections::HashSet;
use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use podmap::search::quant::top_k_by_codes;
use podmap::search::scan;
use podmap::{Filter, JsonIndex, MmapIndex, SearchIndex, SearchMode};

use crate::datasets::Dataset;
use crate::results::{FirstResult, Latency, Memory, Recall};

/// Per-query times of `search` over the queries, rotating, for about `seconds` (at least
/// three passes), after one pass that is not timed: what the peers measure the same way.
pub fn steady(
    engine: &str,
    queries: &[Vec<f32>],
    seconds: f64,
    mut search: impl FnMut(&[f32]),
) -> Latency {
    for q in queries {
        search(q);
    }
    let mut times = Vec::new();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut passes = 0;
    while Instant::now() < deadline || passes < 3 {
        timed_pass(queries, &mut search, &mut times);
        passes += 1;
    }
    latency(engine, times)
}

/// A search of the mapped archive, as [`interleaved`] takes it.
pub type Search<'a> = (&'a str, Box<dyn FnMut(&[f32]) + 'a>);

/// Rounds in which [`interleaved`] gives every engine its turn.
const ROUNDS: usize = 10;

/// [`steady`] for several engines at once, in turns: [`ROUNDS`] rounds, each giving every
/// engine a slice of `seconds` (at least one pass), so that a slow spell of a shared
/// machine falls on all of them alike and their ratios hold where their times move.
pub fn interleaved(queries: &[Vec<f32>], seconds: f64, engines: Vec<Search<'_>>) -> Vec<Latency> {
    let engines = engines.into_iter().map(|e| (queries, e)).collect();
    interleaved_each(seconds, engines)
}

/// [`interleaved`] with queries of each engine's own.
pub fn interleaved_each(seconds: f64, engines: Vec<(&[Vec<f32>], Search<'_>)>) -> Vec<Latency> {
    let mut engines = engines;
    for (queries, (_, search)) in &mut engines {
        for q in queries.iter() {
            search(q);
        }
    }
    let mut times = vec![Vec::new(); engines.len()];
    let slice = Duration::from_secs_f64(seconds / ROUNDS as f64);
    for _ in 0..ROUNDS {
        for ((queries, (_, search)), times) in engines.iter_mut().zip(&mut times) {
            let deadline = Instant::now() + slice;
            loop {
                timed_pass(queries, search, times);
                if Instant::now() >= deadline {
                    break;
                }
            }
        }
    }
    engines
        .iter()
        .zip(times)
        .map(|((_, (engine, _)), times)| latency(engine, times))
        .collect()
}

/// Each query searched once, its time (ms) appended to `times`.
fn timed_pass(queries: &[Vec<f32>], search: &mut dyn FnMut(&[f32]), times: &mut Vec<f64>) {
    for q in queries {
        let start = Instant::now();
        search(q);
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
}

/// Median and mean of `times` (ms).
fn latency(engine: &str, mut times: Vec<f64>) -> Latency {
    let mean_ms = times.iter().sum::<f64>() / times.len() as f64;
    times.sort_by(f64::total_cmp);
    Latency {
        engine: engine.to_owned(),
        mean_ms,
        median_ms: times[times.len() / 2],
        samples: times.len() as u64,
        agree: None,
        before_after_ms: None,
    }
}

/// Steady top-`k` latency of `mode` on the mapped archive.
pub fn mode_latency(
    engine: &str,
    index: &MmapIndex,
    set: &Dataset,
    mode: SearchMode,
    k: usize,
    seconds: f64,
) -> Latency {
    let (_, search) = mode_search(engine, index, mode, k);
    steady(engine, &set.queries, seconds, search)
}

/// What reading the matrix alone costs: every float summed in the exact scan's tasks on its
/// threads ([`scan::read_all`]), once per query as the steady loop runs it. The exact scan
/// cannot be faster than this; the report gives it as a share of this read limit.
pub fn read_limit(index: &MmapIndex) -> Search<'_> {
    (
        READ_LIMIT,
        Box::new(move |_| {
            black_box(scan::read_all(index));
        }),
    )
}

/// A top-`k` search of the mapped archive in `mode`, for [`interleaved`].
pub fn mode_search<'a>(
    engine: &'a str,
    index: &'a MmapIndex,
    mode: SearchMode,
    k: usize,
) -> Search<'a> {
    (
        engine,
        Box::new(move |q| {
            black_box(index.search_vector_in(q, k, &Filter::all(), mode).unwrap());
        }),
    )
}

/// The engine label of [`read_limit`] (not a column of the tables: a reference for exact).
pub const READ_LIMIT: &str = "podmap read limit";

/// `rounds` of open (or load) → one top-`k` query, each from a fresh index.
pub fn first_result<I: SearchIndex>(
    engine: &str,
    rounds: u32,
    k: usize,
    query: &[f32],
    open: impl Fn() -> I,
) -> FirstResult {
    let mut times = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        let index = open();
        black_box(index.search_vector(query, k, &Filter::all()).unwrap());
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    FirstResult {
        engine: engine.to_owned(),
        best_ms: times.iter().copied().fold(f64::INFINITY, f64::min),
        mean_ms: times.iter().sum::<f64>() / times.len() as f64,
        rounds,
    }
}

/// Steady latency of the JSON path (the original's in-memory index) after one load.
pub fn json_latency(engine: &str, set: &Dataset, k: usize, seconds: f64) -> Latency {
    let index = JsonIndex::load_podcast(&set.data_root, &set.podcast).expect("the JSON path");
    steady(engine, &set.queries, seconds, |q| {
        black_box(index.search_vector(q, k, &Filter::all()).unwrap());
    })
}

/// Open (or load) → one top-`k` JSON path and mapped archive, best and mean of a few rounds
/// (the JSON path fewer: one load of a 1 GB file takes seconds).
pub fn first_results(set: &Dataset, k: usize, with_json: bool) -> Vec<FirstResult> {
    let q = &set.queries[0];
    let mut out = vec![first_result("podmap mmap", 10, k, q, || {
        MmapIndex::open_podcast(&set.index_dir, &set.podcast).unwrap()
    })];
    if with_json {
        let rounds = if set.json_bytes > 200 << 20 { 2 } else { 4 };
        out.push(first_result("podmap JSON path", rounds, k, q, || {
            JsonIndex::load_podcast(&set.data_root, &set.podcast).unwrap()
        }));
    }
    out
}

/// Resident memory of a fresh `podmap search` process after open + one top-`k` query
/// (`--report-memory`, as in the engine bench), with `source` `mmap` or `json` and `mode`.
pub fn memory(engine: &str, set: &Dataset, source: &str, mode: SearchMode, k: usize) -> Memory {
    let query_file = set.scratch().join("query-1.json");
    std::fs::write(
        &query_file,
        serde_json::to_string(&set.queries[..1]).unwrap(),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_podmap"));
    cmd.args(["search", "--podcast", &set.podcast, "--report-memory"])
        .args(["--top-k", &k.to_string(), "--source", source])
        .args(["--mode", mode.name()])
        .args(["--oversample", &mode.oversample().to_string()])
        .arg("--vector")
        .arg(&query_file);
    match source {
        "json" => cmd.arg("--data").arg(&set.data_root),
        _ => cmd.arg("--index").arg(&set.index_dir),
    };
    let out = cmd.output().expect("run podmap search");
    assert!(
        out.status.success(),
        "podmap search: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().last().expect("a memory report");
    let v: serde_json::Value = serde_json::from_str(line).expect("the memory report as JSON");
    let kib = |key: &str| v[key].as_u64().expect("a memory figure");
    Memory {
        engine: engine.to_owned(),
        rss_kib: kib("rss_kib"),
        peak_rss_kib: kib("peak_rss_kib"),
        rss_anon_kib: kib("rss_anon_kib"),
        rss_file_kib: kib("rss_file_kib"),
    }
}

/// The exact top-`k` rows of every query (the truth for generated sets, and what the peers
/// are checked against).
pub fn exact_rows(index: &MmapIndex, set: &Dataset, k: usize) -> Vec<Vec<u32>> {
    set.queries
        .iter()
        .map(|q| {
            index
                .search_vector(q, k, &Filter::all())
                .unwrap()
                .iter()
                .map(|h| h.index)
                .collect()
        })
        .collect()
}

/// Mean and lowest recall@`k` of `mode` against `truth` (one row list per query).
pub fn recall(
    index: &MmapIndex,
    set: &Dataset,
    truth: &[Vec<u32>],
    mode: SearchMode,
    k: usize,
    served: bool,
) -> Recall {
    let per_query = set.queries.iter().zip(truth).map(|(q, truth)| {
        // The codes whatever the size and `k × oversample` candidates, or as a search
        // answers (`search_vector_in`: small matrices exactly, binary's candidate floor).
        let hits = if served {
            index.search_vector_in(q, k, &Filter::all(), mode)
        } else {
            top_k_by_codes(index, q, k, &Filter::all(), mode)
        };
        let found: HashSet<u32> = hits.unwrap().iter().map(|h| h.index).collect();
        truth.iter().filter(|t| found.contains(t)).count() as f64 / truth.len() as f64
    });
    recall_of(mode, per_query)
}

/// The mean and lowest of `mode`'s recall on each query.
pub fn recall_of(mode: SearchMode, per_query: impl IntoIterator<Item = f64>) -> Recall {
    let (mut sum, mut min, mut queries) = (0.0, f64::INFINITY, 0usize);
    for r in per_query {
        sum += r;
        min = min.min(r);
        queries += 1;
    }
    Recall {
        mode: mode.name().to_owned(),
        oversample: mode.oversample(),
        mean: sum / queries as f64,
        min,
    }
}
