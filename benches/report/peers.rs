//! The peers on the same vectors: `tools/peers.py` once per engine and dataset, in a fresh
//! Python process each (so its memory figures are its own), on `.npy` copies of the archive's
//! matrix and the dataset's queries.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use podmap::{MmapIndex, SearchIndex};

use crate::datasets::Dataset;
use crate::results::{Latency, Memory};
use crate::support::write_npy;

/// A peer engine: its `--engine` name in `tools/peers.py`, its label in the report, and its
/// thread count when not every core's.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub name: &'static str,
    pub label: &'static str,
    pub threads: Option<usize>,
    /// Whether it reads podmap's archive through a mapping (`np.memmap` of the matrix
    /// section) instead of a `.npy` copy loaded into its own memory.
    pub mapped: bool,
}

/// numpy runs twice: with a BLAS thread per core, like every other engine, and with one,
/// because OpenBLAS's threads on a small `sgemv` can cost more than they save (waking and
/// yielding on a busy machine), and a comparison with numpy at its worst says little.
/// The label of numpy over the archive's own pages.
pub const NUMPY_MAPPED: &str = "numpy on the archive";

pub const PEERS: [Peer; 5] = [
    Peer {
        name: "numpy",
        label: "numpy",
        threads: None,
        mapped: false,
    },
    Peer {
        name: "numpy",
        label: "numpy 1 thread",
        threads: Some(1),
        mapped: false,
    },
    // The same pages as podmap: on a virtual machine the speed of memory depends on where
    // its pages lie (a podmap scan of one archive took 2.75 or 3.9 ms on 16,000 × 3,072
    // depending on where the page cache put it when it was read in), so numpy's own copy can
    // land on faster or slower memory than the archive. Over the archive's own pages only
    // the kernels and their threads differ.
    Peer {
        name: "numpy",
        label: NUMPY_MAPPED,
        threads: None,
        mapped: true,
    },
    Peer {
        name: "faiss",
        label: "FAISS IndexFlatIP",
        threads: None,
        mapped: false,
    },
    Peer {
        name: "usearch",
        label: "usearch exact",
        threads: None,
        mapped: false,
    },
];

/// What one peer run gave: its latency and memory, and its package versions.
pub struct PeerRun {
    pub latency: Latency,
    pub memory: Memory,
    pub version: String,
    pub numpy: String,
    pub python: Option<String>,
}

/// Where the matrix lies in podmap's archive, for a peer that maps it.
pub struct Archive {
    pub path: std::path::PathBuf,
    pub matrix_offset: u64,
    pub rows: usize,
    pub dims: usize,
}

impl Archive {
    pub fn of(index: &MmapIndex) -> Self {
        let matrix = index
            .header()
            .sections
            .iter()
            .find(|s| s.kind == podmap::archive::SectionKind::Matrix)
            .expect("an archive has a matrix");
        Archive {
            path: index.path().to_path_buf(),
            matrix_offset: matrix.offset,
            rows: index.len(),
            dims: index.dims(),
        }
    }
}

/// The matrix and queries of `set` as `.npy` files for the peers; returns their paths.
pub fn write_inputs(set: &Dataset, index: &MmapIndex) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = set.scratch();
    let (matrix_file, query_file) = (dir.join("matrix.npy"), dir.join("queries.npy"));
    write_npy(&matrix_file, set.items, set.dims, index.matrix());
    let queries: Vec<f32> = set.queries.iter().flatten().copied().collect();
    write_npy(&query_file, set.queries.len(), set.dims, &queries);
    (matrix_file, query_file)
}

/// Runs `peer` on the files; `Err` holds why it did not run. `exact` is podmap's exact top-k
/// per query, to count the queries on which the peer found the same rows.
pub fn run(
    peer: Peer,
    (matrix, queries): (&Path, &Path),
    archive: &Archive,
    exact: &[Vec<u32>],
    k: usize,
    seconds: f64,
    threads: usize,
) -> Result<PeerRun, String> {
    let skip_var = format!("PODMAP_REPORT_SKIP_{}", peer.name.to_uppercase());
    if let Ok(reason) = std::env::var(&skip_var) {
        return Err(reason);
    }
    let threads = peer.threads.unwrap_or(threads);
    let python = std::env::var("PODMAP_PEERS_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/peers.py");
    let mut command = Command::new(&python);
    command.arg(&script);
    if peer.mapped {
        let mapped = format!(
            "{},{},{}",
            archive.matrix_offset, archive.rows, archive.dims
        );
        command
            .arg(&archive.path)
            .arg(queries)
            .args(["--mapped", &mapped]);
    } else {
        command.arg(matrix).arg(queries);
    }
    let out = command
        .args(["--engine", peer.name, "--k", &k.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .args(["--threads", &threads.to_string()])
        .env("OPENBLAS_NUM_THREADS", threads.to_string())
        .env("OMP_NUM_THREADS", threads.to_string())
        .output()
        .map_err(|e| format!("{python} did not run ({e})"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.trim().lines().last().unwrap_or("no message");
        return Err(format!("tools/peers.py failed: {last}"));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("tools/peers.py printed no JSON ({e})"))?;
    if let Some(reason) = v["skipped"].as_str() {
        return Err(reason.to_owned());
    }
    let hits: Vec<Vec<u32>> = serde_json::from_value(v["hits"].clone())
        .map_err(|e| format!("tools/peers.py printed no hits ({e})"))?;
    let agree = exact
        .iter()
        .zip(&hits)
        .filter(|(ours, theirs)| {
            let ours: HashSet<&u32> = ours.iter().collect();
            theirs.len() == ours.len() && theirs.iter().all(|t| ours.contains(t))
        })
        .count();
    let f = |key: &str| v[key].as_f64().unwrap_or(f64::NAN);
    let kib = |key: &str| v["memory"][key].as_u64().unwrap_or(0);
    let text = |key: &str| v[key].as_str().unwrap_or("unknown").to_owned();
    Ok(PeerRun {
        latency: Latency {
            engine: peer.label.to_owned(),
            mean_ms: f("mean_ms"),
            median_ms: f("median_ms"),
            samples: v["passes"].as_u64().unwrap_or(0) * v["queries"].as_u64().unwrap_or(0),
            agree: Some(agree),
            before_after_ms: None,
        },
        memory: Memory {
            engine: peer.label.to_owned(),
            rss_kib: kib("rss_kib"),
            peak_rss_kib: kib("peak_rss_kib"),
            rss_anon_kib: kib("rss_anon_kib"),
            rss_file_kib: kib("rss_file_kib"),
        },
        version: text("version"),
        numpy: text("numpy"),
        python: v["python"].as_str().map(str::to_owned),
    })
}
