//! What the benches share: timings recorded for the closing summary, and bench data set-up.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::BenchmarkGroup;
use podmap::convert::{convert_all, ConvertOptions};

/// Total iterations and time of every measured benchmark, for the summary.
static MEANS: Mutex<BTreeMap<String, (u64, Duration)>> = Mutex::new(BTreeMap::new());

pub fn record(id: &str, iters: u64, elapsed: Duration) {
    let mut means = MEANS.lock().unwrap();
    let entry = means.entry(id.to_owned()).or_insert((0, Duration::ZERO));
    entry.0 += iters;
    entry.1 += elapsed;
}

/// Mean time per iteration of benchmark `id`, over every sample criterion took.
pub fn mean(id: &str) -> Option<Duration> {
    let means = MEANS.lock().unwrap();
    means
        .get(id)
        .map(|(n, d)| Duration::from_secs_f64(d.as_secs_f64() / (*n).max(1) as f64))
}

/// Benchmarks `routine` as `id` (`group/name`), recording its mean for the summary.
pub fn bench<R>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    mut routine: impl FnMut() -> R,
) {
    let name = id.split_once('/').map_or(id, |(_, rest)| rest);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(routine());
            }
            let elapsed = start.elapsed();
            record(id, iters, elapsed);
            elapsed
        })
    });
}

/// Where generated bench data and converted indexes live (kept between runs).
pub fn bench_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data")
}

/// The real corpus beside the checkout, if it is there.
pub fn corpus() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    dir.join("queries.json").is_file().then_some(dir)
}

/// Converts `podcast` (skipped when its archive is current).
pub fn convert(data_root: &Path, index_dir: &Path, podcast: &str) {
    let opts = ConvertOptions {
        data_root: data_root.to_path_buf(),
        out_dir: index_dir.to_path_buf(),
        podcasts: vec![podcast.to_owned()],
        force: false,
    };
    let hidden =
        indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
    for report in convert_all(&opts, &hidden).expect("convert") {
        report.result.expect("conversion of bench data");
    }
}

/// An environment variable as a number, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The generated production-scale podcast `big` (`items` × `dims`, 16 query vectors), made
/// with podmap-gen into `target/bench-data/gen-<items>x<dims>/` once and converted into its
/// `index/`. Returns the data root.
pub fn generated_podcast(items: usize, dims: usize) -> PathBuf {
    let root = bench_data().join(format!("gen-{items}x{dims}"));
    generate_podcasts(&root, &["big"], items, dims, 16);
    convert(&root, &root.join("index"), "big");
    root
}

/// Podcasts `ids` of `items` × `dims` each (an episode per six items, no transcripts,
/// `queries` query vectors each), made with podmap-gen into `root` unless the first is there.
pub fn generate_podcasts(root: &Path, ids: &[&str], items: usize, dims: usize, queries: usize) {
    if root
        .join(format!("db/{}/rag-embeddings.json", ids[0]))
        .is_file()
    {
        return;
    }
    eprintln!("generating {} …", root.display());
    let mut gen = std::process::Command::new(env!("CARGO_BIN_EXE_podmap-gen"));
    gen.args(["--out", root.to_str().unwrap()]);
    for id in ids {
        gen.args(["--podcast-id", id]);
    }
    let status = gen
        .args(["--items", &items.to_string(), "--dims", &dims.to_string()])
        .args(["--episodes", &(items / 6).max(1).to_string()])
        .args([
            "--transcripts-every",
            "0",
            "--queries",
            &queries.to_string(),
        ])
        .status()
        .expect("run podmap-gen");
    assert!(status.success(), "podmap-gen failed");
}

/// `data` (`rows × cols` row-major floats) as a numpy `.npy` file, format 1.0.
pub fn write_npy(path: &Path, rows: usize, cols: usize, data: &[f32]) {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + header length (2) + dict + padding + '\n', to 64 bytes.
    let unpadded = 10 + dict.len() + 1;
    let header = format!(
        "{dict}{}\n",
        " ".repeat(unpadded.next_multiple_of(64) - unpadded)
    );
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(bytemuck::cast_slice::<f32, u8>(data));
    std::fs::write(path, bytes).unwrap();
}
