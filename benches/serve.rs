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

mod support;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use support::{bench_data, env_usize, generated_podcast};

const PODCAST: &str = "big";
const QUERIES: usize = 16;
const PAGE: usize = 10;
/// Give up on a server that has not answered after this long.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const POLL_EVERY: Duration = Duration::from_millis(5);
/// Linux reports CPU times in /proc/<pid>/stat in USER_HZ ticks, 100 per second.
const USER_HZ: f64 = 100.0;

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

// ---------------------------------------------------------------------------------------------
// The stand-in embeddings endpoint

struct StandInState {
    /// `data` bodies, serialised once: query vector `i` as an OpenAI embeddings answer.
    bodies: Vec<String>,
    calls: AtomicU64,
}

/// An OpenAI-compatible embeddings endpoint on loopback, in a thread of its own.
struct StandIn {
    base_url: String,
    state: Arc<StandInState>,
}

impl StandIn {
    fn start(queries: &[Vec<f32>]) -> StandIn {
        let bodies = queries
            .iter()
            .map(|v| {
                serde_json::json!({
                    "object": "list",
                    "data": [{"object": "embedding", "index": 0, "embedding": v}],
                    "model": "stand-in",
                    "usage": {"prompt_tokens": 1, "total_tokens": 1},
                })
                .to_string()
            })
            .collect();
        let state = Arc::new(StandInState {
            bodies,
            calls: AtomicU64::new(0),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the stand-in");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/v1/embeddings", post(stand_in_embeddings))
            .with_state(state.clone());
        std::thread::Builder::new()
            .name("embeddings-stand-in".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    axum::serve(listener, app).await.unwrap();
                });
            })
            .unwrap();
        StandIn {
            base_url: format!("http://{addr}/v1"),
            state,
        }
    }

    fn calls(&self) -> u64 {
        self.state.calls.load(Ordering::SeqCst)
    }
}

/// Query text `q{i}` gets vector `i`; any other text a vector picked by its hash.
fn vector_for(text: &str, n: usize) -> usize {
    match text.strip_prefix('q').and_then(|i| i.parse::<usize>().ok()) {
        Some(i) if i < n => i,
        _ => {
            let mut hasher = DefaultHasher::new();
            text.hash(&mut hasher);
            (hasher.finish() % n as u64) as usize
        }
    }
}

async fn stand_in_embeddings(
    State(state): State<Arc<StandInState>>,
    Json(request): Json<serde_json::Value>,
) -> impl IntoResponse {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let input = &request["input"];
    let text = input
        .as_str()
        .or_else(|| input.get(0).and_then(|v| v.as_str()))
        .unwrap_or("");
    let i = vector_for(text, state.bodies.len());
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.bodies[i].clone(),
    )
}

// ---------------------------------------------------------------------------------------------
// Server processes

/// A running `podmap serve`, killed when dropped (also when the bench panics).
struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    fn search_url(&self) -> String {
        format!("http://{}/api/episodes/search", self.addr)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics with the end of the server's log if it has exited.
    fn check_alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!(
                "the {} server exited ({status}); its log ends:\n{}",
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port: bound by the OS, read, released.
fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().unwrap()
}

fn spawn_server(name: &'static str, root: &Path, embeddings: &str) -> Server {
    let addr = free_port();
    let log = bench_data().join(format!("serve-bench-{name}.log"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_podmap"));
    cmd.arg("serve");
    match name {
        "json" => cmd.args(["--source", "json", "--data"]).arg(root),
        _ => cmd.arg("--index").arg(root.join("index")),
    };
    cmd.args([
        "--listen",
        &addr.to_string(),
        "--embedding-base-url",
        embeddings,
    ])
    // Per-request tracing is at debug level: keep it off whatever the environment says,
    // and keep every call on loopback.
    .env("RUST_LOG", "info")
    .env_remove("EMBEDDING_MODEL")
    .env_remove("PODMAP_CONFIG");
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        cmd.env_remove(var).env_remove(var.to_lowercase());
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("create the server log"))
        .spawn()
        .expect("spawn podmap serve");
    Server {
        name,
        child,
        addr,
        log,
    }
}

/// The bytes of a search request for query `q{query}` from `offset`.
fn search_body(query: usize, offset: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "query": format!("q{query}"),
        "podcastId": PODCAST,
        "limit": PAGE,
        "offset": offset,
    }))
    .unwrap()
}

/// The episode numbers of a search answer, and its search mode; panics unless it is a 200.
async fn search_once(client: &reqwest::Client, url: &str, body: Vec<u8>) -> (Vec<u64>, String) {
    let response = client
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .expect("search request");
    let status = response.status();
    let mode = response
        .headers()
        .get("x-podmap-search-mode")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.expect("search answer");
    assert_eq!(status, 200, "search answered {status}: {text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    let episodes = answer["episodes"]
        .as_array()
        .expect("episodes")
        .iter()
        .map(|e| e["episodeNumber"].as_u64().unwrap())
        .collect();
    (episodes, mode)
}

// ---------------------------------------------------------------------------------------------
// Measurements

struct Memory {
    vm_rss_kib: u64,
    rss_anon_kib: u64,
    rss_file_kib: u64,
}

fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Memory {
        vm_rss_kib: field("VmRSS:"),
        rss_anon_kib: field("RssAnon:"),
        rss_file_kib: field("RssFile:"),
    }
}

/// User + system CPU time of every thread of `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / USER_HZ)
}

/// Busy and total CPU time of the whole machine so far (all cores), from /proc/stat.
fn machine_cpu() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().unwrap())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is counted in user).
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks[3] + ticks.get(4).copied().unwrap_or(0);
    let time = |t: u64| Duration::from_secs_f64(t as f64 / USER_HZ);
    (time(total - idle), time(total))
}

struct Load {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    /// Sorted.
    latencies: Vec<Duration>,
    server_cpu: Duration,
    /// This process (the load generator) over the same time.
    client_cpu: Duration,
    /// Every process on the machine over the same time.
    machine_busy: Duration,
}

impl Load {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile.
    fn percentile(&self, p: f64) -> Duration {
        let n = self.latencies.len();
        let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
        self.latencies[rank.min(n) - 1]
    }

    fn cpu_per_request(&self) -> Duration {
        self.server_cpu / self.requests.max(1) as u32
    }

    /// Average cores busy with `cpu` over the run.
    fn cores(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() / self.elapsed.as_secs_f64()
    }

    /// Cores busy with neither the server nor the load generator: other work on the machine,
    /// which takes cores from the server and makes the run less representative.
    fn others(&self) -> f64 {
        self.cores(
            self.machine_busy
                .saturating_sub(self.server_cpu + self.client_cpu),
        )
    }
}

/// `clients` tasks send requests back to back for `warmup + duration`; requests started after
/// the warm-up are measured.
async fn load_run(
    client: &reqwest::Client,
    server: &Server,
    clients: usize,
    warmup: Duration,
    duration: Duration,
) -> Load {
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..2 * QUERIES)
            .map(|i| search_body(i % QUERIES, (i / QUERIES) * PAGE))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let url = server.search_url();
    let start = Instant::now();
    let (measure_from, stop) = (start + warmup, start + warmup + duration);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, bodies, next, url) =
            (client.clone(), bodies.clone(), next.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            // (latency, end) of measured requests; errors among them.
            let mut done: Vec<(Duration, Instant)> = Vec::new();
            let mut errors = 0usize;
            loop {
                let sent = Instant::now();
                if sent >= stop {
                    break;
                }
                let body = bodies[next.fetch_add(1, Ordering::Relaxed) % bodies.len()].clone();
                let ok = match client
                    .post(&url)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(response) => {
                        let status = response.status();
                        response.bytes().await.is_ok() && status == 200
                    }
                    Err(_) => false,
                };
                let end = Instant::now();
                if sent >= measure_from {
                    done.push((end - sent, end));
                    errors += usize::from(!ok);
                }
            }
            (done, errors)
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_before = cpu_time(server.pid());
    let client_before = cpu_time(std::process::id());
    let (machine_before, _) = machine_cpu();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut last = measure_from;
    for task in tasks {
        let (done, e) = task.await.expect("load task");
        errors += e;
        for (latency, end) in done {
            latencies.push(latency);
            last = last.max(end);
        }
    }
    let server_cpu = cpu_time(server.pid()) - cpu_before;
    let client_cpu = cpu_time(std::process::id()) - client_before;
    let machine_busy = machine_cpu().0 - machine_before;
    latencies.sort_unstable();
    Load {
        requests: latencies.len(),
        errors,
        elapsed: last - measure_from,
        latencies,
        server_cpu,
        client_cpu,
        machine_busy,
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

// ---------------------------------------------------------------------------------------------
// Summary

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn summary(json: &Outcome, mmap: &Outcome, clients: usize, duration: Duration) {
    let faster = |j: Duration, m: Duration| j.as_secs_f64() / m.as_secs_f64().max(1e-9);
    let smaller = |j: u64, m: u64| j as f64 / m.max(1) as f64;
    let first_ratio = faster(json.first_answer, mmap.first_answer);
    let throughput_ratio = mmap.load.per_second() / json.load.per_second();
    println!(
        "\n## podmap serve bench summary ({clients} clients, {:.0} s per server, \
         `POST /api/episodes/search`, cached embeddings)\n",
        duration.as_secs_f64()
    );
    println!("| measure | JSON server | mmap server | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| process start → first answer | {} | {} | **{first_ratio:.0}× faster** |",
        ms(json.first_answer),
        ms(mmap.first_answer)
    );
    println!(
        "| … of which the first request itself | {} | {} | |",
        ms(json.first_request),
        ms(mmap.first_request)
    );
    println!(
        "| throughput | {:.1} req/s | {:.1} req/s | **{throughput_ratio:.2}×** |",
        json.load.per_second(),
        mmap.load.per_second()
    );
    for p in [50.0, 90.0, 99.0] {
        let (j, m) = (json.load.percentile(p), mmap.load.percentile(p));
        println!(
            "| latency p{p:.0} | {} | {} | {:.2}× lower |",
            ms(j),
            ms(m),
            faster(j, m)
        );
    }
    let (j, m) = (json.load.cpu_per_request(), mmap.load.cpu_per_request());
    println!(
        "| server CPU per request (user + sys) | {} | {} | {:.2}× less |",
        ms(j),
        ms(m),
        faster(j, m)
    );
    let cores = |l: &Load| {
        format!(
            "{:.2} / {:.2} / {:.2}",
            l.cores(l.server_cpu),
            l.cores(l.client_cpu),
            l.others()
        )
    };
    println!(
        "| cores busy: server / load generator / other processes | {} | {} | |",
        cores(&json.load),
        cores(&mmap.load)
    );
    println!(
        "| requests measured (errors) | {} ({}) | {} ({}) | |",
        json.load.requests, json.load.errors, mmap.load.requests, mmap.load.errors
    );
    let (jm, mm) = (&json.memory, &mmap.memory);
    println!(
        "| VmRSS after the run | {} | {} | {:.1}× smaller |",
        mib(jm.vm_rss_kib),
        mib(mm.vm_rss_kib),
        smaller(jm.vm_rss_kib, mm.vm_rss_kib)
    );
    println!(
        "| RssAnon after the run | {} | {} | {:.1}× smaller |",
        mib(jm.rss_anon_kib),
        mib(mm.rss_anon_kib),
        smaller(jm.rss_anon_kib, mm.rss_anon_kib)
    );
    println!(
        "| RssFile after the run (page cache) | {} | {} | |",
        mib(jm.rss_file_kib),
        mib(mm.rss_file_kib)
    );
    println!(
        "| embedding calls: warm-up / measured | {} / {} | {} / {} | |",
        json.warmup_calls, json.measured_calls, mmap.warmup_calls, mmap.measured_calls
    );
    let same = json
        .top10
        .iter()
        .zip(&mmap.top10)
        .filter(|(a, b)| a == b)
        .count();
    for outcome in [json, mmap] {
        if outcome.load.others() > 0.2 {
            println!(
                "\n**Warning:** other processes kept {:.2} of the {} cores busy during the {} \
                 server's run; its throughput and latencies are understated (CPU per request is \
                 the steadier figure).",
                outcome.load.others(),
                std::thread::available_parallelism().map_or(0, |n| n.get()),
                outcome.name
            );
        }
    }
    println!("\nSame top-10 episodes from both servers: {same} of {QUERIES} queries.");
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "Targets: throughput ≥ 3× — {} ({throughput_ratio:.2}×); first answer ≥ 100× — {} \
         ({first_ratio:.0}×); p50 and p99 lower on mmap — {}.",
        verdict(throughput_ratio >= 3.0),
        verdict(first_ratio >= 100.0),
        verdict(
            mmap.load.percentile(50.0) < json.load.percentile(50.0)
                && mmap.load.percentile(99.0) < json.load.percentile(99.0)
        )
    );
}

fn main() {
    // `cargo bench` passes `--bench`; this bench has no filters or options.
    let clients = env_usize("PODMAP_SERVE_CLIENTS", 8).max(1);
    let duration = Duration::from_secs(env_usize("PODMAP_SERVE_SECS", 10).max(1) as u64);
    let warmup = Duration::from_secs(env_usize("PODMAP_SERVE_WARMUP_SECS", 1) as u64);

    let root = dataset();
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
