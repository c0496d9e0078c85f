//! The HTTP side of the bench: search requests, and the closed-loop load run with the
//! statistics of its result. Split from `main.rs` by concern.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::header;

use crate::measure::{cpu_time, machine_cpu};
use crate::process::Server;
use crate::{PAGE, PODCAST, QUERIES};

/// The bytes of a search request for query `q{query}` from `offset`.
pub fn search_body(query: usize, offset: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "query": format!("q{query}"),
        "podcastId": PODCAST,
        "limit": PAGE,
        "offset": offset,
    }))
    .unwrap()
}

/// The episode numbers of a search answer, and its search mode; panics unless it is a 200.
pub async fn search_once(client: &reqwest::Client, url: &str, body: Vec<u8>) -> (Vec<u64>, String) {
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

pub struct Load {
    pub requests: usize,
    pub errors: usize,
    pub elapsed: Duration,
    /// Sorted.
    latencies: Vec<Duration>,
    pub server_cpu: Duration,
    /// This process (the load generator) over the same time.
    pub client_cpu: Duration,
    /// Every process on the machine over the same time.
    machine_busy: Duration,
}

impl Load {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile.
    pub fn percentile(&self, p: f64) -> Duration {
        let n = self.latencies.len();
        let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
        self.latencies[rank.min(n) - 1]
    }

    pub fn cpu_per_request(&self) -> Duration {
        self.server_cpu / self.requests.max(1) as u32
    }

    /// Average cores busy with `cpu` over the run.
    pub fn cores(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() / self.elapsed.as_secs_f64()
    }

    /// Cores busy with neither the server nor the load generator: other work on the machine,
    /// which takes cores from the server and makes the run less representative.
    pub fn others(&self) -> f64 {
        self.cores(
            self.machine_busy
                .saturating_sub(self.server_cpu + self.client_cpu),
        )
    }
}

/// `clients` tasks send requests back to back for `warmup + duration`; requests started after
/// the warm-up are measured.
pub async fn load_run(
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
