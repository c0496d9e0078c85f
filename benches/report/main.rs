//! The benchmark report: podmap (exact, int8, binary; the JSON path where it fits) against
//! numpy, FAISS and usearch on the same vectors, in one run on one machine, written as JSON
//! and rendered as `docs/BENCHMARKS.md` with SVG plots in `docs/bench/`.
//!
//! Datasets: generated podcasts of 1k, 4k, 16k and 64k items × 3,072 dims (podmap-gen, once,
//! into `target/bench-data/`) and the podcasts of the real corpus (`../shared/corpus`). Per
//! dataset: steady top-10 latency of every engine, open → first result (mapped archive and
//! JSON path), resident memory of a fresh process after open + one query, and recall@10 of
//! the quantized modes over a range of oversampling. Per generated size, K podcasts of as many
//! items in all are searched as one list against the one podcast (`cross`). See `tools/bench-report.sh`, which sets
//! up the peers' Python packages and runs this.
//!
//! Settings (environment):
//! - `PODMAP_REPORT_SIZES` generated item counts (default `1000,4000,16000,64000`),
//!   `PODMAP_REPORT_DIMS` (3072), `PODMAP_REPORT_CORPUS=0` leaves the corpus out;
//! - `PODMAP_REPORT_PODCASTS` the podcast counts K of the cross-podcast line (`4,16`; empty
//!   leaves it out);
//! - `PODMAP_REPORT_SECONDS` steady-loop time per engine and dataset (1.5);
//! - `PODMAP_REPORT_JSON_MAX` largest item count for the JSON path (16000);
//! - `PODMAP_PEERS_PYTHON` the Python with the peers' packages (`python3`);
//!   `PODMAP_REPORT_SKIP_NUMPY` / `_FAISS` / `_USEARCH`: a peer not to run, with the reason;
//! - `PODMAP_REPORT_RESULTS` the JSON file (`target/bench-report/results.json`),
//!   `PODMAP_REPORT_DOCS` where BENCHMARKS.md and `bench/*.svg` go (`docs`);
//! - `PODMAP_REPORT_RENDER=results.json` renders an earlier run again without measuring.

mod cross;
mod datasets;
mod machine;
mod markdown;
mod measure;
mod peers;
mod plots;
mod results;
#[path = "../support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};

use podmap::search::quant::{BINARY_OVERSAMPLE, INT8_OVERSAMPLE};
use podmap::{MmapIndex, SearchMode};

use datasets::Dataset;
use results::{DatasetResult, Latency, Machine, Report, Settings, Skipped};

const K: usize = 10;
const OVERSAMPLES: [u32; 6] = [1, 2, 4, 10, 20, 40];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn manifest_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn main() {
    let results_path = std::env::var_os("PODMAP_REPORT_RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_path("target/bench-report/results.json"));
    let docs = std::env::var_os("PODMAP_REPORT_DOCS")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_path("docs"));
    let report = match std::env::var_os("PODMAP_REPORT_RENDER") {
        Some(path) => {
            let text = std::fs::read_to_string(&path).expect("the results JSON to render");
            serde_json::from_str(&text).expect("results JSON of this report")
        }
        None => {
            let report = measure_all();
            std::fs::create_dir_all(results_path.parent().unwrap()).unwrap();
            std::fs::write(
                &results_path,
                serde_json::to_string_pretty(&report).unwrap(),
            )
            .unwrap();
            eprintln!("report: results in {}", results_path.display());
            report
        }
    };
    let plots = plots::write_all(&report, &docs.join("bench")).expect("the plots");
    let md = docs.join("BENCHMARKS.md");
    std::fs::write(&md, markdown::render(&report, &plots)).unwrap();
    eprintln!(
        "report: {} and {} plot(s) in {}",
        md.display(),
        plots.len(),
        docs.join("bench").display()
    );
}

fn measure_all() -> Report {
    let settings = Settings {
        seconds: env_or("PODMAP_REPORT_SECONDS", 1.5),
        threads: rayon::current_num_threads(),
        k: K,
        json_max_items: env_or("PODMAP_REPORT_JSON_MAX", 16_000),
        oversamples: OVERSAMPLES.to_vec(),
        default_oversample: (INT8_OVERSAMPLE, BINARY_OVERSAMPLE),
    };
    let sizes: Vec<usize> = std::env::var("PODMAP_REPORT_SIZES")
        .unwrap_or_else(|_| "1000,4000,16000,64000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let dims = env_or("PODMAP_REPORT_DIMS", 3072);
    let podcasts: Vec<usize> = std::env::var("PODMAP_REPORT_PODCASTS")
        .unwrap_or_else(|_| "4,16".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|&k| k > 1)
        .collect();
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let load_before = machine::load_average();
    let mut machine = machine::describe();
    let mut results = Vec::new();
    let mut across = Vec::new();
    for items in sizes {
        let set = datasets::generated(items, dims);
        results.push(measure_dataset(&set, &settings, &mut machine));
        for &k in podcasts.iter().filter(|&&k| k <= items) {
            across.push(cross::measure(&set, k, &settings));
        }
    }
    if env_or("PODMAP_REPORT_CORPUS", 1) != 0 {
        for set in datasets::corpus_podcasts() {
            results.push(measure_dataset(&set, &settings, &mut machine));
        }
    }
    Report {
        started,
        machine,
        settings,
        datasets: results,
        cross: across,
        load_before,
        load_after: machine::load_average(),
    }
}

/// Every measurement on one dataset, podmap exact timed before, between and after the peers.
fn measure_dataset(set: &Dataset, s: &Settings, machine: &mut Machine) -> DatasetResult {
    eprintln!(
        "report: {} ({} × {}, {} queries)",
        set.name,
        set.items,
        set.dims,
        set.queries.len()
    );
    let index = MmapIndex::open_podcast(&set.index_dir, &set.podcast).expect("the archive");
    let modes = [
        ("podmap exact", SearchMode::Exact),
        ("podmap int8", "int8".parse().unwrap()),
        ("podmap binary", "binary".parse().unwrap()),
    ];
    let mut searches: Vec<measure::Search> = modes
        .iter()
        .map(|&(engine, mode)| measure::mode_search(engine, &index, mode, s.k))
        .collect();
    searches.push(measure::read_limit(&index));
    let mut latency = measure::interleaved(&set.queries, s.seconds, searches);
    let mut skipped = Vec::new();
    let mut memory: Vec<_> = modes
        .iter()
        .map(|&(engine, mode)| measure::memory(engine, set, "mmap", mode, s.k))
        .collect();
    let with_json = set.items <= s.json_max_items;
    if with_json {
        latency.push(measure::json_latency(
            "podmap JSON path",
            set,
            s.k,
            s.seconds,
        ));
        memory.push(measure::memory(
            "podmap JSON path",
            set,
            "json",
            SearchMode::Exact,
            s.k,
        ));
    } else {
        skipped.push(Skipped {
            engine: "podmap JSON path".into(),
            reason: format!(
                "over {} items (its JSON file alone is {:.1} GB to parse)",
                s.json_max_items,
                set.json_bytes as f64 / 1e9
            ),
        });
    }
    let first_result = measure::first_results(set, s.k, with_json);

    let exact = measure::exact_rows(&index, set, s.k);
    let (matrix_file, query_file) = peers::write_inputs(set, &index);
    let archive = peers::Archive::of(&index);
    // podmap exact between the numpy rounds, and once more after the peers.
    let mut exact_runs = Vec::new();
    for peer in peers::PEERS {
        eprintln!("report: {} on {}", peer.label, set.name);
        // numpy is the target's reference: it runs in NUMPY_ROUNDS processes, each after a
        // run of podmap exact as long as it, so a quiet or busy spell of the machine is not
        // all one engine's.
        let rounds = if peer.name == "numpy" {
            NUMPY_ROUNDS
        } else {
            1
        };
        let seconds = s.seconds / rounds as f64;
        let files = (matrix_file.as_path(), query_file.as_path());
        let mut runs = Vec::new();
        for _ in 0..rounds {
            if rounds > 1 {
                exact_runs.push(exact_steady(&index, set, s, seconds));
            }
            match peers::run(peer, files, &archive, &exact, s.k, seconds, s.threads) {
                Ok(run) => runs.push(run),
                Err(reason) => {
                    skipped.push(Skipped {
                        engine: peer.label.into(),
                        reason,
                    });
                    break;
                }
            }
        }
        let Some(first) = runs.first() else {
            continue;
        };
        note_version(machine, "numpy", &first.numpy);
        note_version(machine, peer.name, &first.version);
        if machine.python.is_none() {
            machine.python = first.python.clone();
        }
        latency.push(median_of_runs(
            runs.iter().map(|r| r.latency.clone()).collect(),
        ));
        memory.push(runs.swap_remove(0).memory);
    }
    std::fs::remove_file(&matrix_file).ok();
    exact_runs.push(exact_steady(&index, set, s, s.seconds));
    let after = exact_runs.last().expect("the run after the peers").clone();
    let before = latency[0].clone();
    exact_runs.insert(0, before.clone());
    let mut exact_latency = median_of_runs(exact_runs);
    exact_latency.before_after_ms = Some((before.median_ms, after.median_ms));
    latency[0] = exact_latency;

    let truth = set.truth.as_ref().unwrap_or(&exact);
    let recall = ["int8", "binary"]
        .iter()
        .flat_map(|name| {
            let mode: SearchMode = name.parse().unwrap();
            s.oversamples.iter().map(move |&o| mode.with_oversample(o))
        })
        .map(|mode| measure::recall(&index, set, truth, mode, s.k, false))
        .collect();
    let served_recall = ["int8", "binary"]
        .iter()
        .map(|name| measure::recall(&index, set, truth, name.parse().unwrap(), s.k, true))
        .collect();
    DatasetResult {
        name: set.name.clone(),
        kind: set.kind.into(),
        items: set.items,
        dims: set.dims,
        queries: set.queries.len(),
        matrix_bytes: set.matrix_bytes,
        json_bytes: set.json_bytes,
        latency,
        first_result,
        memory,
        recall,
        served_recall,
        recall_truth: if set.truth.is_some() {
            "queries.json".into()
        } else {
            "exact".into()
        },
        skipped,
    }
}

/// Processes numpy (with either thread setting) runs in, each a share of the time.
const NUMPY_ROUNDS: usize = 3;

/// Steady latency of podmap exact for `seconds`.
fn exact_steady(index: &MmapIndex, set: &Dataset, s: &Settings, seconds: f64) -> Latency {
    measure::mode_latency("podmap exact", index, set, SearchMode::Exact, s.k, seconds)
}

/// One engine's runs as one: the median of their medians, the mean of their means, every
/// sample counted.
fn median_of_runs(mut runs: Vec<Latency>) -> Latency {
    runs.sort_by(|a, b| a.median_ms.total_cmp(&b.median_ms));
    let mut one = runs[runs.len() / 2].clone();
    if runs.len().is_multiple_of(2) {
        one.median_ms = (runs[runs.len() / 2 - 1].median_ms + one.median_ms) / 2.0;
    }
    one.mean_ms = runs.iter().map(|r| r.mean_ms).sum::<f64>() / runs.len() as f64;
    one.samples = runs.iter().map(|r| r.samples).sum();
    one
}

fn note_version(machine: &mut Machine, package: &str, version: &str) {
    if !machine.packages.iter().any(|(p, _)| p == package) {
        machine
            .packages
            .push((package.to_owned(), version.to_owned()));
    }
}
