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
//! And the search modes side by side: exact, int8 and binary codes with rescoring (top-10
//! latency, speed-up over exact, recall@10 against exact; see `engine/modes.rs`).
//!
//! And the HTTP search's episode ranking: the former sorted path against the best hits per
//! episode kept in the scan, and K podcasts in one pass against one podcast (`engine/episodes.rs`).
//!
//! At the end a summary prints the ratios. `cargo bench --bench engine`; set
//! `PODMAP_BENCH_ITEMS`/`PODMAP_BENCH_DIMS` for another generated size, and
//! `PODMAP_BENCH_ONLY=modes` (or `cold`, `episodes`) for one part alone.

#[path = "engine/episodes.rs"]
mod episodes;
#[path = "engine/exact.rs"]
mod exact;
#[path = "engine/modes.rs"]
mod modes;
mod support;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};

use exact::{exact_summary, read_kernel};
use modes::{modes_summary, query_modes};
use podmap::mem::ProcessMemory;
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
            black_box(index.warm(WarmScope::Vectors, |_| {}));
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
    if std::env::var("PODMAP_BENCH_ONLY").as_deref() == Ok("episodes") {
        // Its own generated sets: the large default one is not needed.
        episodes::episode_ranking(&corpus().into_iter().collect::<Vec<_>>());
        return;
    }
    let mut sets = vec![generated()];
    sets.extend(corpus());
    if std::env::var("PODMAP_BENCH_ONLY").as_deref() == Ok("cold") {
        cold_first_query(&sets);
        return;
    }
    if std::env::var("PODMAP_BENCH_ONLY").as_deref() == Ok("modes") {
        query_modes(&mut c, &sets);
        c.final_summary();
        modes_summary(&sets);
        return;
    }
    read_bandwidth(&mut c, sets.iter().map(|s| s.matrix_bytes).max().unwrap());
    open_first_result(&mut c, &sets);
    steady_query(&mut c, &sets);
    read_kernel(&mut c, &sets);
    query_modes(&mut c, &sets);
    c.final_summary();
    summary(&sets);
    exact_summary(&sets);
    modes_summary(&sets);
    episodes::episode_ranking(&sets);
    cold_first_query(&sets);
}
