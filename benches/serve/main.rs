//! `podmap serve` over HTTP: the mmap server against the JSON server, side by side in one run.
//!
//! Data: the generated production-scale podcast of `benches/engine.rs` (`big`, 4,400 items ×
//! 3,072 dims, about 300 MB of JSON in `target/bench-data/gen-4400x3072/`, generated and
//! converted here if missing).
//!
//! The real `podmap` binary is started twice, one after the other (never both at once: the
//! machine has two cores), on a loopback port: `serve --index …` (mmap) and
//! `serve --source json --data …` (the baseline, which parses the JSON at start-up). Query
//! embeddings come from a stand-in OpenAI embeddings endpoint in this process, which answers
//! query text `q{i}` with the generator's query vector `i` (the generated vectors are random,
//! so no real model fits them). Every query is sent once before measuring, so the measured
//! requests use the server's cached embeddings; the stand-in counts its calls to show it.
//!
//! Measured, for each server:
//! 1. time from spawning the process to the first `200` of `POST /api/episodes/search`
//!    (polled every 5 ms), which for the JSON server includes parsing the 300 MB file;
//! 2. a closed-loop load run on `/api/episodes/search`: a fixed number of concurrent clients
//!    (keep-alive, one shared client) for a fixed time after a warm-up, rotating over the 16
//!    queries and two pages: requests/s, latency percentiles, server CPU per request; every
//!    answer must be a `200`;
//! 3. the server's resident memory after the run (`/proc/<pid>/status`).
//!
//! At the end a Markdown summary prints the ratios. `cargo bench --bench serve`; set
//! `PODMAP_SERVE_CLIENTS` (default 8), `PODMAP_SERVE_SECS` (measured seconds per server,
//! default 10) and `PODMAP_SERVE_WARMUP_SECS` (default 1) to change the load run.
//!
//! Then, in-process (`stack`): what the serving layers cost (full stack against the bare
//! routes, alternating rounds) and the p99 of admitted requests at four times the concurrency
//! limit; `PODMAP_SERVE_ONLY=stack` runs only this part, `PODMAP_SERVE_ONLY=servers` only the
//! one above, and `PODMAP_SERVE_STACK_DIMS` (default 3072) picks a generated podcast with
//! fewer dimensions for it.
//!
//! This file runs each server and the whole bench; `stand_in` is the embeddings endpoint,
//! `process` the server processes, `load` the requests and the load run, `measure` what `/proc`
//! says, `report` the summary.

#[path = "../support/mod.rs"]
mod support;

mod load;
mod measure;
mod process;
mod report;
mod stack;
mod stand_in;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::http::header;
use load::{load_run, search_body, search_once, Load};
use measure::{memory, Memory};
use process::spawn_server;
use report::summary;
use stand_in::StandIn;
use support::{env_usize, generated_podcast};

const PODCAST: &str = "big";
const QUERIES: usize = 16;
const PAGE: usize = 10;
/// Give up on a server that has not answered after this long.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const POLL_EVERY: Duration = Duration::from_millis(5);

/// The generated podcast's data root (generated and converted if missing).
fn dataset() -> PathBuf {
    generated_podcast(4400, 3072)
}

/// Reads every file under `path` once, so both servers start with a warm page cache (as after
/// a server restart) whatever ran before.
fn warm_page_cache(path: &Path, buffer: &mut [u8]) -> u64 {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        entries.iter().map(|p| warm_page_cache(p, buffer)).sum()
    } else {
        let mut file = std::fs::File::open(path).unwrap();
        let mut total = 0;
        loop {
            match file.read(buffer).unwrap() {
                0 => return total,
                n => total += n as u64,
            }
        }
    }
}

struct Outcome {
    name: &'static str,
    first_answer: Duration,
    /// The first successful request alone: embedding call, first scan, first reads.
    first_request: Duration,
    warmup_calls: u64,
    measured_calls: u64,
    load: Load,
    memory: Memory,
    /// Top-10 episode numbers of `q{i}`, for each query.
    top10: Vec<Vec<u64>>,
}

fn run_server(
    runtime: &tokio::runtime::Runtime,
    name: &'static str,
    root: &Path,
    stand_in: &StandIn,
    clients: usize,
    warmup: Duration,
    duration: Duration,
) -> Outcome {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let calls_at_start = stand_in.calls();
    runtime.block_on(async {
        // 1. Process start → first successful answer.
        let first = search_body(0, 0);
        let started = Instant::now();
        let mut server = spawn_server(name, root, &stand_in.base_url);
        let url = server.search_url();
        let (first_answer, first_request) = loop {
            let sent = Instant::now();
            let response = client
                .post(&url)
                .header(header::CONTENT_TYPE, "application/json")
                .body(first.clone())
                .send()
                .await;
            if let Ok(response) = response {
                let status = response.status();
                let body = response.bytes().await;
                if status == 200 && body.is_ok() {
                    break (started.elapsed(), sent.elapsed());
                }
            }
            server.check_alive();
            assert!(
                started.elapsed() < START_TIMEOUT,
                "the {name} server did not answer within {START_TIMEOUT:?} (log: {})",
                server.log.display()
            );
            tokio::time::sleep(POLL_EVERY).await;
        };
        eprintln!(
            "{name}: first answer {:.1} ms after spawn (the answering request took {:.1} ms)",
            first_answer.as_secs_f64() * 1e3,
            first_request.as_secs_f64() * 1e3
        );

        // Every query once, so the load run finds its embedding cached.
        let mut top10 = Vec::new();
        for q in 0..QUERIES {
            let (episodes, mode) = search_once(&client, &url, search_body(q, 0)).await;
            assert_eq!(
                mode, "semantic",
                "{name}: q{q} was not searched semantically"
            );
            assert_eq!(episodes.len(), PAGE, "{name}: q{q} answered a short page");
            top10.push(episodes);
        }
        let warmup_calls = stand_in.calls() - calls_at_start;

        // 2. The load run.
        let load = load_run(&client, &server, clients, warmup, duration).await;
        server.check_alive();
        let measured_calls = stand_in.calls() - calls_at_start - warmup_calls;

        // 3. Memory after the run.
        let memory = memory(server.pid());
        eprintln!(
            "{name}: {} requests in {:.2} s, {} errors, {measured_calls} embedding calls",
            load.requests,
            load.elapsed.as_secs_f64(),
            load.errors
        );
        drop(server);
        Outcome {
            name,
            first_answer,
            first_request,
            warmup_calls,
            measured_calls,
            load,
            memory,
            top10,
        }
    })
}

fn main() {
    // `cargo bench` passes `--bench`; this bench has no filters or options.
    let clients = env_usize("PODMAP_SERVE_CLIENTS", 8).max(1);
    let duration = Duration::from_secs(env_usize("PODMAP_SERVE_SECS", 10).max(1) as u64);
    let warmup = Duration::from_secs(env_usize("PODMAP_SERVE_WARMUP_SECS", 1) as u64);
    let only = std::env::var("PODMAP_SERVE_ONLY").unwrap_or_default();
    if only != "stack" {
        servers(clients, duration, warmup);
    }
    if only != "servers" {
        // The generated podcast with as many items, and fewer dimensions when
        // PODMAP_SERVE_STACK_DIMS says so (quicker to generate; the scan is then cheaper, so
        // the layers' share of each request is larger, not smaller).
        let dims = env_usize("PODMAP_SERVE_STACK_DIMS", 3072);
        let root = generated_podcast(4400, dims);
        let queries = queries_of(&root);
        let stand_in = StandIn::start(&queries[..QUERIES]);
        eprintln!("stack: gen-4400x{dims}");
        stack::run(&root.join("index"), &stand_in.base_url, clients, duration);
    }
}

/// The generated query vectors of the podcast under `root`.
fn queries_of(root: &Path) -> Vec<Vec<f32>> {
    let queries: Vec<Vec<f32>> = serde_json::from_str(
        &std::fs::read_to_string(root.join("queries").join(format!("{PODCAST}.json")))
            .expect("read the generated queries"),
    )
    .unwrap();
    assert!(
        queries.len() >= QUERIES,
        "need {QUERIES} generated queries, found {}",
        queries.len()
    );
    queries
}

/// The mmap server process against the JSON one.
fn servers(clients: usize, duration: Duration, warmup: Duration) {
    let root = dataset();
    let queries = queries_of(&root);
    let mut buffer = vec![0u8; 1 << 20];
    let warmed: u64 = ["db", "podcasts", "index"]
        .iter()
        .map(|d| root.join(d))
        .filter(|p| p.exists())
        .map(|p| warm_page_cache(&p, &mut buffer))
        .sum();
    eprintln!("page cache warmed: {:.1} MB read", warmed as f64 / 1e6);

    let stand_in = StandIn::start(&queries[..QUERIES]);
    // The load generator: one thread, so it takes at most one of the two cores.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mmap = run_server(
        &runtime, "mmap", &root, &stand_in, clients, warmup, duration,
    );
    let json = run_server(
        &runtime, "json", &root, &stand_in, clients, warmup, duration,
    );
    for outcome in [&mmap, &json] {
        assert_eq!(
            outcome.load.errors, 0,
            "{}: {} requests failed",
            outcome.name, outcome.load.errors
        );
        assert_eq!(
            outcome.measured_calls, 0,
            "{}: the embeddings cache missed during the load run",
            outcome.name
        );
        assert!(outcome.load.requests > 0, "{}: no requests", outcome.name);
    }
    summary(&json, &mmap, clients, duration);
}
