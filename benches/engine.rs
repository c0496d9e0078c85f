//! The JSON path against the mmap path, side by side in one run.
//!
//! Datasets: a generated production-scale podcast (default 4,400 items × 3,072 dims, about
//! 300 MB of JSON, made by `podmap-gen` into `target/bench-data/` once) and the larger podcast
//! of the real corpus (`raumzeit`, if `../shared/corpus` is there).
//!
//! Measured, for each dataset and both paths:
//! - open → first result: load or map the index and answer one top-10 query;
//! - steady top-10 query latency (queries rotate), and the scan rate it implies;
//! - resident memory after open + one query, in a fresh `podmap search` process.
//!
//! And once, the machine's read bandwidth with every core: from memory (a 512 MiB buffer, far
//! beyond the caches) and at the matrix's own size (which the 32 MiB L3 partly holds), so the
//! scan rate can be compared with what reading the same bytes costs.
//!
//! And the first query from a cold page cache, with and without `MmapIndex::warm` first
//! (see `cold_first_query`).
//!
//! At the end a summary prints the ratios. `cargo bench --bench engine`; set
//! `PODMAP_BENCH_ITEMS`/`PODMAP_BENCH_DIMS` for another generated size.

mod support;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};

use podmap::mem::ProcessMemory;
use podmap::search::scan;
use podmap::{Filter, JsonIndex, MmapIndex, SearchIndex};
use rayon::prelude::*;
use support::{bench, bench_data, convert, env_usize, generated_podcast, mean, record};

struct Dataset {
    name: String,
    data_root: PathBuf,
    index_dir: PathBuf,
    podcast: String,
    queries: Vec<Vec<f32>>,
    query_file: PathBuf,
    json_bytes: u64,
    matrix_bytes: u64,
}

fn generated() -> Dataset {
    let (items, dims) = (
        env_usize("PODMAP_BENCH_ITEMS", 4400),
        env_usize("PODMAP_BENCH_DIMS", 3072),
    );
    let name = format!("gen-{items}x{dims}");
    let root = generated_podcast(items, dims);
    let index_dir = root.join("index");
    let query_file = root.join("queries/big.json");
    let queries = serde_json::from_str(&std::fs::read_to_string(&query_file).unwrap()).unwrap();
    finish(name, root, index_dir, "big", queries, query_file)
}

fn corpus() -> Option<Dataset> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    let text = std::fs::read_to_string(corpus.join("queries.json")).ok()?;
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let queries: Vec<Vec<f32>> = doc["queries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["podcast"] == "raumzeit")
        .map(|q| serde_json::from_value(q["embedding"].clone()).unwrap())
        .collect();
    let index_dir = bench_data().join("corpus-index");
    convert(&corpus, &index_dir, "raumzeit");
    let query_file = bench_data().join("raumzeit-queries.json");
    std::fs::write(&query_file, serde_json::to_string(&queries).unwrap()).unwrap();
    Some(finish(
        "raumzeit".into(),
        corpus,
        index_dir,
        "raumzeit",
        queries,
        query_file,
    ))
}

fn finish(
    name: String,
    data_root: PathBuf,
    index_dir: PathBuf,
    podcast: &str,
    queries: Vec<Vec<f32>>,
    query_file: PathBuf,
) -> Dataset {
    let json_bytes = std::fs::metadata(
        data_root
            .join("db")
            .join(podcast)
            .join("rag-embeddings.json"),
    )
    .unwrap()
    .len();
    let index = MmapIndex::open_podcast(&index_dir, podcast).unwrap();
    let matrix_bytes = (index.matrix().len() * 4) as u64;
    Dataset {
        name,
        data_root,
        index_dir,
        podcast: podcast.to_owned(),
        queries,
        query_file,
        json_bytes,
        matrix_bytes,
    }
}

fn open_first_result(c: &mut Criterion, sets: &[Dataset]) {
    let mut group = c.benchmark_group("open_first_result");
    group.sample_size(10);
    for set in sets {
        let q = &set.queries[0];
        bench(
            &mut group,
            &format!("open_first_result/json/{}", set.name),
            || {
                let index = JsonIndex::load_podcast(&set.data_root, &set.podcast).unwrap();
                index.search_vector(q, 10, &Filter::all()).unwrap()
            },
        );
        bench(
            &mut group,
            &format!("open_first_result/mmap/{}", set.name),
            || {
                let index = MmapIndex::open_podcast(&set.index_dir, &set.podcast).unwrap();
                index.search_vector(q, 10, &Filter::all()).unwrap()
            },
        );
    }
    group.finish();
}

fn steady_query(c: &mut Criterion, sets: &[Dataset]) {
    let mut group = c.benchmark_group("query_top10");
    for set in sets {
        group.throughput(Throughput::Bytes(set.matrix_bytes));
        let json = JsonIndex::load_podcast(&set.data_root, &set.podcast).unwrap();
        let mapped = MmapIndex::open_podcast(&set.index_dir, &set.podcast).unwrap();
        let indexes: [(&str, &dyn SearchIndex); 2] = [("json", &json), ("mmap", &mapped)];
        for (path, index) in indexes {
            let mut i = 0;
            bench(
                &mut group,
                &format!("query_top10/{path}/{}", set.name),
                || {
                    i += 1;
                    let q = &set.queries[i % set.queries.len()];
                    index.search_vector(q, 10, &Filter::all()).unwrap()
                },
            );
        }
    }
    group.finish();
}

/// Sums `buffer` with every core, 16 lanes per core: a pure read of every byte.
fn sum_all_cores(buffer: &[f32]) -> f32 {
    buffer
        .par_chunks(1 << 16)
        .map(|chunk| {
            let mut acc = [0.0f32; 16];
            for block in chunk.chunks_exact(16) {
                for (a, x) in acc.iter_mut().zip(block) {
                    *a += x;
                }
            }
            acc.iter().sum::<f32>()
        })
        .sum()
}

/// Read bandwidth at two sizes: what a scan can reach at best.
fn read_bandwidth(c: &mut Criterion, matrix_bytes: u64) {
    let mut group = c.benchmark_group("read_bandwidth");
    group.sample_size(20);
    for (name, bytes) in [
        ("memory_512MiB", 512u64 << 20),
        ("matrix_size", matrix_bytes),
    ] {
        let buffer: Vec<f32> = (0..bytes / 4).map(|i| (i % 7) as f32).collect();
        group.throughput(Throughput::Bytes(bytes));
        let id = format!("read_bandwidth/{name}");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(sum_all_cores(&buffer));
                }
                let elapsed = start.elapsed();
                record(&id, iters, elapsed);
                elapsed
            })
        });
    }
    group.finish();
}

/// Resident memory of a fresh `podmap search` process after open + one query.
fn memory(set: &Dataset, source: &str) -> ProcessMemory {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_podmap"));
    cmd.args([
        "search",
        "--podcast",
        &set.podcast,
        "--top-k",
        "10",
        "--report-memory",
    ]);
    cmd.args(["--source", source, "--vector"])
        .arg(&set.query_file);
    match source {
        "json" => cmd.arg("--data").arg(&set.data_root),
        _ => cmd.arg("--index").arg(&set.index_dir),
    };
    let out = cmd.output().expect("run podmap search");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().last().expect("memory report");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    ProcessMemory {
        peak_rss_kib: v["peak_rss_kib"].as_u64().unwrap(),
        rss_kib: v["rss_kib"].as_u64().unwrap(),
        rss_anon_kib: v["rss_anon_kib"].as_u64().unwrap(),
        rss_file_kib: v["rss_file_kib"].as_u64().unwrap(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn summary(sets: &[Dataset]) {
    let gbps = |id: &str, bytes: u64| mean(id).map(|d| bytes as f64 / d.as_secs_f64() / 1e9);
    let largest = sets.iter().map(|s| s.matrix_bytes).max().unwrap_or(0);
    let bandwidth = gbps("read_bandwidth/memory_512MiB", 512 << 20);
    let same_size = gbps("read_bandwidth/matrix_size", largest);
    println!(
        "\n## podmap bench summary ({} threads)\n",
        rayon::current_num_threads()
    );
    if let (Some(bw), Some(same)) = (bandwidth, same_size) {
        println!(
            "read bandwidth, all cores: {bw:.1} GB/s from memory (512 MiB buffer), \
             {same:.1} GB/s over {:.1} MB (the largest matrix's size)\n",
            largest as f64 / 1e6
        );
    }
    println!("| dataset | measure | JSON path | mmap path | ratio |");
    println!("|---|---|---:|---:|---:|");
    for set in sets {
        let n = &set.name;
        for (label, group) in [
            ("open → first result", "open_first_result"),
            ("steady top-10 query", "query_top10"),
        ] {
            if let (Some(j), Some(m)) = (
                mean(&format!("{group}/json/{n}")),
                mean(&format!("{group}/mmap/{n}")),
            ) {
                println!(
                    "| {n} | {label} | {} | {} | {:.1}× faster |",
                    ms(j),
                    ms(m),
                    j.as_secs_f64() / m.as_secs_f64()
                );
            }
        }
        let (j, m) = (memory(set, "json"), memory(set, "mmap"));
        println!(
            "| {n} | anonymous RSS after open + 1 query | {} | {} | {:.1}× smaller |",
            mib(j.rss_anon_kib),
            mib(m.rss_anon_kib),
            j.rss_anon_kib as f64 / m.rss_anon_kib.max(1) as f64
        );
        println!(
            "| {n} | peak RSS (file pages: mmap {}) | {} | {} | {:.1}× smaller |",
            mib(m.rss_file_kib),
            mib(j.peak_rss_kib),
            mib(m.peak_rss_kib),
            j.peak_rss_kib as f64 / m.peak_rss_kib.max(1) as f64
        );
        if let Some(m) = mean(&format!("query_top10/mmap/{n}")) {
            let rate = set.matrix_bytes as f64 / m.as_secs_f64() / 1e9;
            let share = match (bandwidth, same_size) {
                (Some(bw), Some(same)) if set.matrix_bytes == largest => format!(
                    " ({:.0}% of memory bandwidth, {:.0}% of a same-size read)",
                    100.0 * rate / bw,
                    100.0 * rate / same
                ),
                (Some(bw), _) => format!(
                    " ({:.0}% of memory bandwidth: the matrix fits in cache)",
                    100.0 * rate / bw
                ),
                _ => String::new(),
            };
            println!(
                "| {n} | mmap scan rate, {:.1} MB matrix from {:.1} MB JSON | | {rate:.1} GB/s{share} | |",
                set.matrix_bytes as f64 / 1e6,
                set.json_bytes as f64 / 1e6
            );
        }
    }
}

/// The first query after a reboot or a deploy, when the archive is in no page cache: open +
/// top-10 on a cold file, against `warm` (the matrix read in with `WillNeed` + one byte per
/// page) and then the same query. The file is a fresh copy of the dataset's archive, evicted
/// before each round with `posix_fadvise(POSIX_FADV_DONTNEED)` (a file just written is in the
/// cache); `mincore` confirms how many of its pages were still resident. Prints its own table.
/// `PODMAP_BENCH_ONLY=cold` runs this section alone.
#[cfg(target_os = "linux")]
fn cold_first_query(sets: &[Dataset]) {
    use podmap::index::{archive_path, WarmScope};
    const ROUNDS: u32 = 5;
    println!("\n## first query from a cold page cache ({ROUNDS} rounds, means)\n");
    println!(
        "| dataset | resident before | cold open + first query | open + warm | first query after warm \
         | first query: cold / warmed | cold / (warm + query) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for set in sets {
        let copy_dir = support::bench_data().join("cold").join(&set.name);
        let copy = archive_path(&copy_dir, &set.podcast);
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(archive_path(&set.index_dir, &set.podcast), &copy).unwrap();
        std::fs::File::open(&copy).unwrap().sync_all().unwrap();
        let q = &set.queries[0];
        let (mut cold, mut warm, mut after, mut resident) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO, 0.0);
        for _ in 0..ROUNDS {
            resident += evict(&copy);
            let started = Instant::now();
            let index = MmapIndex::open(&copy).unwrap();
            black_box(index.search_vector(q, 10, &Filter::all()).unwrap());
            cold += started.elapsed();
            drop(index);

            evict(&copy);
            let started = Instant::now();
            let index = MmapIndex::open(&copy).unwrap();
            black_box(index.warm(WarmScope::Matrix, |_| {}));
            warm += started.elapsed();
            let started = Instant::now();
            black_box(index.search_vector(q, 10, &Filter::all()).unwrap());
            after += started.elapsed();
        }
        let n = f64::from(ROUNDS);
        let (cold, warm, after) = (cold / ROUNDS, warm / ROUNDS, after / ROUNDS);
        println!(
            "| {} | {:.1}% | {} | {} | {} | {:.1}× | {:.2}× |",
            set.name,
            100.0 * resident / n,
            ms(cold),
            ms(warm),
            ms(after),
            cold.as_secs_f64() / after.as_secs_f64(),
            cold.as_secs_f64() / (warm + after).as_secs_f64()
        );
        std::fs::remove_dir_all(&copy_dir).ok();
    }
}

/// Drops `path`'s pages from the page cache (it must be mapped nowhere) and returns the
/// fraction of its pages still resident afterwards (0.0 when the eviction worked).
#[cfg(target_os = "linux")]
fn evict(path: &Path) -> f64 {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).unwrap();
    // SAFETY: posix_fadvise takes the descriptor (open for the whole call, borrowed from
    // `file`) and plain integers; it reads and writes no memory of this process.
    let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(
        r,
        0,
        "posix_fadvise: {}",
        std::io::Error::from_raw_os_error(r)
    );
    // SAFETY: read-only mapping of a file this bench wrote and nobody changes while it
    // lives; it is only passed to mincore, never read.
    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    let page = 4096;
    let pages = map.len().div_ceil(page);
    let mut resident = vec![0u8; pages];
    // SAFETY: `map` is a live mapping starting at a page boundary, `map.len()` bytes long;
    // `resident` holds one byte per page of that length, as mincore writes.
    let r = unsafe {
        libc::mincore(
            map.as_ptr() as *mut libc::c_void,
            map.len(),
            resident.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
    resident.iter().filter(|&&b| b & 1 == 1).count() as f64 / pages as f64
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut sets = vec![generated()];
    sets.extend(corpus());
    if std::env::var("PODMAP_BENCH_ONLY").as_deref() == Ok("cold") {
        cold_first_query(&sets);
        return;
    }
    read_bandwidth(&mut c, sets.iter().map(|s| s.matrix_bytes).max().unwrap());
    open_first_result(&mut c, &sets);
    steady_query(&mut c, &sets);
    read_kernel(&mut c, &sets);
    c.final_summary();
    summary(&sets);
    exact_summary(&sets);
    cold_first_query(&sets);
}

// ---------------------------------------------------------------------------------------------
// The exact scan at the machine's limit: a read kernel over the same bytes, and numpy.

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
fn read_kernel(c: &mut Criterion, sets: &[Dataset]) {
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

/// `data` (`rows × cols` row-major floats) as a numpy `.npy` file, format 1.0.
fn write_npy(path: &Path, rows: usize, cols: usize, data: &[f32]) {
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
    let out = match Command::new("python3")
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
        Err(e) => return Peer::Skipped(format!("python3 did not run ({e})")),
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
fn exact_summary(sets: &[Dataset]) {
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
