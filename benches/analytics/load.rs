//! The load generator: this bench binary run again as a child process
//! (`PODMAP_ANALYTICS_ROLE=load`), so that its CPU shows as a process of its own and never as
//! the server's or the search clients'. It runs on one thread (at most one of the two cores).
//!
//! A child is told what to send by `PODMAP_ANALYTICS_LOAD` (a JSON [`Spec`]), opens its
//! connection, prints `ready`, waits for `go` on stdin (so the parent can read the server's
//! CPU time just before the first request), sends, and prints its [`Report`] as one JSON line.
//!
//! Open loop (`rate`): request `i` is sent at `start + i / rate`, whether or not earlier ones
//! have been answered, each in a task of its own; a send that starts more than [`LATE`] after
//! its instant (the generator fell behind) is counted. An open-loop child runs at nice 19: it
//! stands for visitors on other machines, and its own CPU (an HTTP client's, about as much as
//! the server spends answering) would otherwise take the cores from the searches it is meant
//! to measure the server's effect on. It needs a few percent of a core, which nice 19 still
//! gets; the late sends show if it did not. Closed loop (`clients`): that many
//! tasks send back to back, for the track throughput.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::measure::cpu_time;

pub const ROLE_VAR: &str = "PODMAP_ANALYTICS_ROLE";
const SPEC_VAR: &str = "PODMAP_ANALYTICS_LOAD";
/// A send this long after its scheduled instant counts as late.
pub const LATE: Duration = Duration::from_millis(5);
/// The search queries the stand-in embeddings endpoint knows (`q0`…`q2`, the fixtures' query
/// vectors) over the two podcasts with embeddings.
pub const QUERIES: usize = 3;
const PODCASTS: [&str; 2] = ["demo-raumfahrt", "demo-forschung"];

/// What a load child sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Three page views (`track`) to one episode play (`track-episode-play`).
    Track,
    /// `POST /api/episodes/search`, rotating over the queries and podcasts.
    Search,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub addr: SocketAddr,
    pub kind: Kind,
    /// Open loop at this many requests per second…
    pub rate: Option<f64>,
    /// …or this many closed-loop clients.
    pub clients: Option<usize>,
    /// How long to send.
    pub secs: f64,
}

/// What a load child did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Requests started.
    pub sent: u64,
    /// Answered 200.
    pub ok: u64,
    /// Any other answer, or none (connection error, timeout).
    pub failed: u64,
    /// Open loop: sends that started more than [`LATE`] after their instant.
    pub late: u64,
    /// Open loop: the largest delay of a send after its instant, in ms.
    pub max_lag_ms: f64,
    /// From `go` to the last answer, in seconds.
    pub elapsed_s: f64,
    /// This process's CPU time (user + system) from `go` to the last answer, in seconds.
    pub cpu_s: f64,
    /// Latencies of the 200 answers, in ms.
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The method, path, headers and body of request `i` of `kind`.
pub fn request(kind: Kind, i: usize) -> (&'static str, Vec<(&'static str, String)>, Vec<u8>) {
    const AGENTS: [&str; 3] = [
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0",
    ];
    match kind {
        Kind::Search => {
            let body = json!({
                "query": format!("q{}", i % QUERIES),
                "podcastId": PODCASTS[(i / QUERIES) % PODCASTS.len()],
                "limit": 10,
            });
            (
                "/api/episodes/search",
                Vec::new(),
                body.to_string().into_bytes(),
            )
        }
        Kind::Track => {
            // Visitors behind the trusted loopback proxy: 250 addresses, three browsers.
            let headers = vec![
                ("x-forwarded-for", format!("203.0.113.{}", i % 250)),
                ("user-agent", AGENTS[i % AGENTS.len()].to_owned()),
            ];
            let podcast = PODCASTS[i % PODCASTS.len()];
            let episode = (i % 6 + 1).to_string();
            if i % 4 == 3 {
                let body = json!({"podcast": podcast, "episode": episode});
                let body = body.to_string().into_bytes();
                ("/api/analytics/track-episode-play", headers, body)
            } else {
                let body = json!({
                    "path": format!("/{podcast}/episodes/{episode}"),
                    "route_name": "episode",
                    "podcast": podcast,
                    "episode": episode,
                    "referrer": if i.is_multiple_of(3) { Some("https://example.org/") } else { None },
                });
                (
                    "/api/analytics/track",
                    headers,
                    body.to_string().into_bytes(),
                )
            }
        }
    }
}

pub fn http_client(pool: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(pool)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Sends request `i` of `kind`; its latency if it was answered 200.
pub async fn send(
    client: &reqwest::Client,
    addr: SocketAddr,
    kind: Kind,
    i: usize,
) -> Option<Duration> {
    let (path, headers, body) = request(kind, i);
    let mut builder = client
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    let sent = Instant::now();
    let response = builder.send().await.ok()?;
    let status = response.status();
    let complete = response.bytes().await.is_ok();
    (status == 200 && complete).then(|| sent.elapsed())
}

/// Nearest-rank percentile of `sorted`, in ms (NaN when empty).
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1].as_secs_f64() * 1e3
}

/// The child's side: reads its spec, sends, prints the report. Called from `main` when
/// [`ROLE_VAR`] is `load`.
pub fn run_child() {
    let spec: Spec = serde_json::from_str(
        &std::env::var(SPEC_VAR).expect("PODMAP_ANALYTICS_LOAD names what to send"),
    )
    .expect("a load spec");
    if spec.rate.is_some() {
        // SAFETY: `setpriority` with `PRIO_PROCESS` and id 0 changes only the calling
        // thread's nice value (before any other thread of this process starts); no pointers.
        let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
        assert_eq!(r, 0, "nice 19: {}", std::io::Error::last_os_error());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(async {
        let client = http_client(spec.clients.unwrap_or(16).max(16));
        // One connection opened before `go`, so the first measured request does not pay it.
        let health = format!("http://{}/api/health", spec.addr);
        let opened = client.get(&health).send().await;
        assert!(
            opened.is_ok_and(|r| r.status() == 200),
            "the server does not answer"
        );
        println!("ready");
        std::io::stdout().flush().unwrap();
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "go", "the parent sends `go`");
        match (spec.rate, spec.clients) {
            (Some(rate), _) => open_loop(&client, &spec, rate).await,
            (None, Some(clients)) => closed_loop(&client, &spec, clients).await,
            (None, None) => panic!("a load spec needs a rate or a number of clients"),
        }
    });
    println!("{}", serde_json::to_string(&report).unwrap());
}

async fn open_loop(client: &reqwest::Client, spec: &Spec, rate: f64) -> Report {
    let total = (rate * spec.secs).round() as usize;
    let cpu_before = cpu_time(std::process::id());
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    let (mut late, mut max_lag) = (0, Duration::ZERO);
    for i in 0..total {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        let lag = Instant::now().saturating_duration_since(at);
        late += u64::from(lag > LATE);
        max_lag = max_lag.max(lag);
        let (client, addr, kind) = (client.clone(), spec.addr, spec.kind);
        tasks.push(tokio::spawn(
            async move { send(&client, addr, kind, i).await },
        ));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut failed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Some(latency) => latencies.push(latency),
            None => failed += 1,
        }
    }
    finish(latencies, failed, start, cpu_before, late, max_lag)
}

async fn closed_loop(client: &reqwest::Client, spec: &Spec, clients: usize) -> Report {
    let cpu_before = cpu_time(std::process::id());
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(spec.secs);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, addr, kind) = (client.clone(), spec.addr, spec.kind);
            tokio::spawn(async move {
                let (mut latencies, mut failed) = (Vec::new(), 0u64);
                let mut i = c;
                while Instant::now() < until {
                    match send(&client, addr, kind, i).await {
                        Some(latency) => latencies.push(latency),
                        None => failed += 1,
                    }
                    i += clients;
                }
                (latencies, failed)
            })
        })
        .collect();
    let (mut latencies, mut failed) = (Vec::new(), 0);
    for task in tasks {
        let (l, f) = task.await.unwrap();
        latencies.extend(l);
        failed += f;
    }
    finish(latencies, failed, start, cpu_before, 0, Duration::ZERO)
}

fn finish(
    mut latencies: Vec<Duration>,
    failed: u64,
    start: Instant,
    cpu_before: Duration,
    late: u64,
    max_lag: Duration,
) -> Report {
    let elapsed = start.elapsed();
    let cpu = cpu_time(std::process::id()) - cpu_before;
    latencies.sort_unstable();
    Report {
        sent: latencies.len() as u64 + failed,
        ok: latencies.len() as u64,
        failed,
        late,
        max_lag_ms: max_lag.as_secs_f64() * 1e3,
        elapsed_s: elapsed.as_secs_f64(),
        cpu_s: cpu.as_secs_f64(),
        p50_ms: percentile_ms(&latencies, 50.0),
        p99_ms: percentile_ms(&latencies, 99.0),
    }
}

/// The parent's side: a load child that has connected and waits for [`LoadChild::go`].
pub struct LoadChild {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl LoadChild {
    /// Starts this bench binary again as a load child with `spec`; returns once it is ready.
    pub fn spawn(spec: &Spec) -> LoadChild {
        let mut child = Command::new(std::env::current_exe().expect("the bench binary"))
            .env(ROLE_VAR, "load")
            .env(SPEC_VAR, serde_json::to_string(spec).unwrap())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the load child");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the load child");
        assert_eq!(line.trim(), "ready", "the load child did not start");
        LoadChild {
            child,
            stdin,
            stdout,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets the child send.
    pub fn go(&mut self) {
        writeln!(self.stdin, "go").expect("signal the load child");
        self.stdin.flush().unwrap();
    }

    /// Waits for the child's report (blocking: call when nothing else has to run).
    pub fn finish(mut self) -> Report {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read the load report");
        let status = self.child.wait().expect("wait for the load child");
        assert!(status.success(), "the load child failed ({status})");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("a load report: {e}: {line:?}"))
    }
}

impl Drop for LoadChild {
    fn drop(&mut self) {
        // After `finish` the child has exited and this does nothing.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
