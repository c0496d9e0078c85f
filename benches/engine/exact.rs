//! The exact scan at the machine's limit: a read kernel over the same bytes, and numpy on the
//! same vectors in the same run (`tools/peers.py`).

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use podmap::search::scan;
use podmap::{Filter, MmapIndex, SearchIndex};
use rayon::prelude::*;

use crate::support::{bench, bench_data, mean, write_npy};
use crate::Dataset;

/// Sums every float of `matrix` with the scan's own task split (chunks of
/// [`scan::ROWS_PER_TASK`] rows on every core, one accumulator per task, reduced): the same
/// bytes read the same way as a top-k scan, minus the arithmetic and the top-k. The scan's
/// rate as a share of this one is how close it runs to reading its input.
fn read_kernel_sum(matrix: &[f32], dims: usize) -> f32 {
    matrix
        .par_chunks(dims.max(1) * scan::ROWS_PER_TASK)
        .enumerate()
        .map(|(_, rows)| sum_floats(rows))
        .reduce(|| 0.0, |a, b| a + b)
}

/// The sum of `floats`: AVX2 loads into eight independent accumulators where the CPU has
/// AVX2 (64 floats a step, two loads a cycle are the limit), 16 lanes elsewhere.
fn sum_floats(floats: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just above).
            return unsafe { sum_floats_avx2(floats) };
        }
    }
    let mut acc = [0.0f32; 16];
    let mut blocks = floats.chunks_exact(16);
    for block in &mut blocks {
        for (a, x) in acc.iter_mut().zip(block) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + blocks.remainder().iter().sum::<f32>()
}

/// # Safety
/// The CPU must support `avx2`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_floats_avx2(floats: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let p = floats.as_ptr();
    let n = floats.len();
    let mut acc = [_mm256_setzero_ps(); 8];
    let mut i = 0;
    while i + 64 <= n {
        for (lane, acc) in acc.iter_mut().enumerate() {
            // SAFETY: `i + lane * 8 + 8 <= i + 64 <= n`; `loadu` needs no alignment.
            *acc = _mm256_add_ps(*acc, unsafe { _mm256_loadu_ps(p.add(i + lane * 8)) });
        }
        i += 64;
    }
    let mut lanes = [0.0f32; 8];
    for acc in acc {
        let mut out = [0.0f32; 8];
        // SAFETY: `out` holds 8 floats; `storeu` needs no alignment.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), acc) };
        for (l, x) in lanes.iter_mut().zip(out) {
            *l += x;
        }
    }
    lanes.iter().sum::<f32>() + floats[i..].iter().sum::<f32>()
}

/// The read kernel over each dataset's mapped matrix (the bytes its scan reads).
pub fn read_kernel(c: &mut Criterion, sets: &[Dataset]) {
    let mut group = c.benchmark_group("read_kernel");
    for set in sets {
        let index = MmapIndex::open_podcast(&set.index_dir, &set.podcast).unwrap();
        let (matrix, dims) = (index.matrix(), index.dims());
        group.throughput(Throughput::Bytes(set.matrix_bytes));
        bench(&mut group, &format!("read_kernel/{}", set.name), || {
            read_kernel_sum(matrix, dims)
        });
    }
    group.finish();
}

/// What the numpy peer reported, or why it did not run.
enum Peer {
    Ran {
        mean: Duration,
        median: Duration,
        passes: u64,
        agree: usize,
    },
    Skipped(String),
}

/// Mean podmap top-10 time over `passes` rotations of the query set (each query once per
/// pass), timed the way the peer times itself: one query at a time.
fn podmap_pass_mean(index: &MmapIndex, queries: &[Vec<f32>], passes: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..passes {
        for q in queries {
            black_box(index.search_vector(q, 10, &Filter::all()).unwrap());
        }
    }
    start.elapsed() / (passes * queries.len() as u64) as u32
}

/// Runs `tools/peers.py` (numpy, `OPENBLAS_NUM_THREADS` = rayon's threads) on `set`'s matrix
/// and queries, written as `.npy` beside the bench data, and checks that its top-10 rows are
/// podmap's.
fn numpy_peer(set: &Dataset, index: &MmapIndex) -> Peer {
    let dir = bench_data().join(format!("peers-{}", set.name));
    std::fs::create_dir_all(&dir).unwrap();
    let (matrix_file, query_file) = (dir.join("matrix.npy"), dir.join("queries.npy"));
    let dims = index.dims();
    write_npy(
        &matrix_file,
        index.matrix().len() / dims,
        dims,
        index.matrix(),
    );
    let queries: Vec<f32> = set.queries.iter().flatten().copied().collect();
    write_npy(&query_file, set.queries.len(), dims, &queries);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/peers.py");
    // The report's venv (`tools/bench-report.sh`) has numpy; plain `python3` may not.
    let python = std::env::var("PODMAP_PEERS_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = match Command::new(&python)
        .arg(&script)
        .arg(&matrix_file)
        .arg(&query_file)
        .env(
            "OPENBLAS_NUM_THREADS",
            rayon::current_num_threads().to_string(),
        )
        .output()
    {
        Ok(out) => out,
        Err(e) => return Peer::Skipped(format!("{python} did not run ({e})")),
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Peer::Skipped(format!("tools/peers.py failed: {}", stderr.trim()));
    }
    let v: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => return Peer::Skipped(format!("tools/peers.py printed no JSON ({e})")),
    };
    if let Some(reason) = v["skipped"].as_str() {
        return Peer::Skipped(reason.to_owned());
    }
    let ms = |key: &str| Duration::from_secs_f64(v[key].as_f64().unwrap() / 1e3);
    let agree = set
        .queries
        .iter()
        .zip(v["hits"].as_array().unwrap())
        .filter(|(q, theirs)| {
            let mut ours: Vec<u64> = index
                .search_vector(q, 10, &Filter::all())
                .unwrap()
                .iter()
                .map(|h| u64::from(h.index))
                .collect();
            let mut theirs: Vec<u64> = serde_json::from_value((*theirs).clone()).unwrap();
            ours.sort_unstable();
            theirs.sort_unstable();
            ours == theirs
        })
        .count();
    Peer::Ran {
        mean: ms("mean_ms"),
        median: ms("median_ms"),
        passes: v["passes"].as_u64().unwrap(),
        agree,
    }
}

/// podmap's exact top-10 against numpy's on the generated dataset, in the same run, podmap
/// timed right before and right after numpy so that a noisy neighbour shows as a spread;
/// then the scan as a share of the read kernel.
pub fn exact_summary(sets: &[Dataset]) {
    println!("\n## exact top-10 at the read limit, and against numpy\n");
    for set in sets {
        let n = &set.name;
        let gbps = |d: Duration| set.matrix_bytes as f64 / d.as_secs_f64() / 1e9;
        if let (Some(scan), Some(read)) = (
            mean(&format!("query_top10/mmap/{n}")),
            mean(&format!("read_kernel/{n}")),
        ) {
            println!(
                "{n}: scan {:.3} ms ({:.1} GB/s), read kernel {:.3} ms ({:.1} GB/s): \
                 the scan runs at {:.0}% of the read kernel",
                scan.as_secs_f64() * 1e3,
                gbps(scan),
                read.as_secs_f64() * 1e3,
                gbps(read),
                100.0 * read.as_secs_f64() / scan.as_secs_f64()
            );
        }
    }
    let set = &sets[0];
    let index = MmapIndex::open_podcast(&set.index_dir, &set.podcast).unwrap();
    let passes = 100;
    podmap_pass_mean(&index, &set.queries, 5);
    let before = podmap_pass_mean(&index, &set.queries, passes);
    let peer = numpy_peer(set, &index);
    let after = podmap_pass_mean(&index, &set.queries, passes);
    let podmap = (before + after) / 2;
    match peer {
        Peer::Skipped(reason) => println!("numpy: skipped, {reason}"),
        Peer::Ran {
            mean,
            median,
            passes: numpy_passes,
            agree,
        } => {
            println!(
                "{}: podmap exact top-10 {:.3} ms (mean of {:.3} ms before and {:.3} ms after \
                 numpy, {passes} passes of {} queries each); numpy `mat @ q` + argpartition \
                 {:.3} ms (median {:.3} ms, {numpy_passes} passes, OPENBLAS_NUM_THREADS={}); \
                 podmap/numpy = {:.2} (below 1: podmap faster); same top-10 rows for {agree} \
                 of {} queries",
                set.name,
                podmap.as_secs_f64() * 1e3,
                before.as_secs_f64() * 1e3,
                after.as_secs_f64() * 1e3,
                set.queries.len(),
                mean.as_secs_f64() * 1e3,
                median.as_secs_f64() * 1e3,
                rayon::current_num_threads(),
                podmap.as_secs_f64() / mean.as_secs_f64(),
                set.queries.len()
            );
        }
    }
}
