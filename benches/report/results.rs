//! The report's measurements as data: what the run writes as JSON and what the markdown and
//! the plots are rendered from (so a report can be rendered again without measuring again).

use serde::{Deserialize, Serialize};

/// The engines of the latency and memory tables and plots, in their order: podmap's modes
/// and JSON path, then the peers (labels as `tools/peers.py`'s runs are named in `peers.rs`).
pub const ENGINES: [&str; 9] = [
    "podmap exact",
    "podmap int8",
    "podmap binary",
    "podmap JSON path",
    "numpy",
    "numpy 1 thread",
    "numpy on the archive",
    "FAISS IndexFlatIP",
    "usearch exact",
];

/// One run of the report.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    /// When the run started, UTC (RFC 3339).
    pub started: String,
    pub machine: Machine,
    pub settings: Settings,
    pub datasets: Vec<DatasetResult>,
    /// K podcasts searched as one list against one podcast of as many items.
    #[serde(default)]
    pub cross: Vec<Cross>,
    /// The load average (1 minute) when the run started and when it ended.
    pub load_before: f64,
    pub load_after: f64,
}

/// The machine the run measured.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cpus: String,
    pub memory: String,
    pub kernel: String,
    pub rustc: String,
    pub python: Option<String>,
    /// Peer package versions as the peers reported them (`numpy`, `faiss`, `usearch`).
    pub packages: Vec<(String, String)>,
}

/// How the run measured.
#[derive(Debug, Serialize, Deserialize)]
pub struct Settings {
    /// Time per engine and dataset for the steady query loop.
    pub seconds: f64,
    /// Threads every engine was given (rayon's, OpenBLAS's, OpenMP's, usearch's).
    pub threads: usize,
    pub k: usize,
    /// The JSON path runs on datasets up to this many items.
    pub json_max_items: usize,
    pub oversamples: Vec<u32>,
    /// The default oversampling of the int8 and binary modes, which the latency runs use.
    pub default_oversample: (u32, u32),
}

/// Everything measured on one dataset.
#[derive(Debug, Serialize, Deserialize)]
pub struct DatasetResult {
    pub name: String,
    /// `generated` (podmap-gen) or `corpus` (the real podcasts).
    pub kind: String,
    pub items: usize,
    pub dims: usize,
    pub queries: usize,
    pub matrix_bytes: u64,
    pub json_bytes: u64,
    /// Steady top-k latency per engine (podmap modes first, then the peers).
    pub latency: Vec<Latency>,
    /// Open (or load) → first result.
    pub first_result: Vec<FirstResult>,
    /// Resident memory of a fresh process after open + one query.
    pub memory: Vec<Memory>,
    /// Recall@k of the quantized modes against the truth (`recall_truth`).
    pub recall: Vec<Recall>,
    /// Recall@k of each quantized mode at its default oversampling as a search answers it
    /// (`search_vector_in`, with the size rules: exact below a size, binary's candidate floor).
    #[serde(default)]
    pub served_recall: Vec<Recall>,
    /// `queries.json` (the corpus's float64 ground truth) or `exact` (podmap's exact top-k).
    pub recall_truth: String,
    /// Engines that did not run here, and why.
    pub skipped: Vec<Skipped>,
}

/// Steady per-query latency of one engine on one dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    /// Engine label as shown in tables and plots, e.g. `podmap exact`, `numpy`.
    pub engine: String,
    pub mean_ms: f64,
    pub median_ms: f64,
    /// Queries timed.
    pub samples: u64,
    /// Queries whose top-k rows are podmap exact's (peers only).
    pub agree: Option<usize>,
    /// podmap exact only: the medians right before and right after the peers ran (its
    /// figures are those of all its runs: before, between the numpy rounds and after).
    pub before_after_ms: Option<(f64, f64)>,
}

/// Open or load, then one top-k query, from a warm page cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FirstResult {
    pub engine: String,
    /// Best of the rounds (the least disturbed by other work).
    pub best_ms: f64,
    pub mean_ms: f64,
    pub rounds: u32,
}

/// Memory of a fresh process after open (or load) + one query, in KiB.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Memory {
    pub engine: String,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
    pub rss_anon_kib: u64,
    pub rss_file_kib: u64,
}

/// Recall@k of one quantized mode at one oversampling.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recall {
    pub mode: String,
    pub oversample: u32,
    pub mean: f64,
    pub min: f64,
}

/// A search of `podcasts` generated podcasts as one list against the generated podcast of
/// `one_items` items, each side with queries near its own items.
#[derive(Debug, Serialize, Deserialize)]
pub struct Cross {
    /// Items of the podcasts together (`one_items` rounded down to a multiple of `podcasts`).
    pub items: usize,
    pub one_items: usize,
    pub dims: usize,
    pub podcasts: usize,
    /// Steady top-k latency of `one <mode>` and `across <mode>`, timed in turns.
    pub latency: Vec<Latency>,
    /// Recall@k of the quantized searches across against the exact search across.
    pub recall: Vec<Recall>,
}

impl Cross {
    pub fn median_ms(&self, engine: &str) -> Option<f64> {
        self.latency
            .iter()
            .find(|l| l.engine == engine)
            .map(|l| l.median_ms)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skipped {
    pub engine: String,
    pub reason: String,
}

impl DatasetResult {
    pub fn latency(&self, engine: &str) -> Option<&Latency> {
        self.latency.iter().find(|l| l.engine == engine)
    }

    pub fn first_result(&self, engine: &str) -> Option<&FirstResult> {
        self.first_result.iter().find(|l| l.engine == engine)
    }

    pub fn memory(&self, engine: &str) -> Option<&Memory> {
        self.memory.iter().find(|m| m.engine == engine)
    }

    pub fn recall(&self, mode: &str, oversample: u32) -> Option<&Recall> {
        self.recall
            .iter()
            .find(|r| r.mode == mode && r.oversample == oversample)
    }
}
