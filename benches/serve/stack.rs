//! What the serving layers cost, and how admitted requests fare under overload, measured
//! in-process: the same state served twice on loopback by podmap's own accept loop
//! (`listener::serve_connections`), once through the full stack (`server::router`) and once as
//! the bare routes (`server::routes`), on a server runtime with one worker thread; the load
//! comes from this thread's current-thread runtime.
//!
//! 1. **Middleware cost**: closed-loop `/api/episodes/search` load against the full stack and
//!    the bare routes in alternating rounds (A/B/A/B…, so drift on a shared machine hits both
//!    alike): requests/s and p99 of each, and the ratio. The full stack runs with rate limits
//!    set very high, not off, so the limiter's cost is in it.
//! 2. **Overload**: the full stack with `max_in_flight = L`; p99 of the admitted (200)
//!    requests with L concurrent clients (at the limit) and with 4×L (four times overloaded,
//!    the shed 503s counted, not in the p99).
//!
//! `PODMAP_SERVE_ONLY=stack` runs this part alone; `PODMAP_SERVE_SECS` sets the measured
//! seconds of each variant (split over the rounds), `PODMAP_SERVE_CLIENTS` the clients of the
//! middleware-cost run, `PODMAP_SERVE_LIMIT` L (default 4).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::header;
use axum::Router;
use podmap::server::limits::{Limit, Rate, RateLimits};
use podmap::server::listener::{serve_connections, ConnectionLimits};
use podmap::server::{catalog, router, routes, AppState, Settings};

use crate::load::{search_body, search_once};
use crate::{PAGE, QUERIES};

/// Alternating rounds per comparison: A/B/A/B/A/B.
const ROUNDS: usize = 3;

/// The answers of one closed-loop run.
#[derive(Default)]
struct Run {
    /// Latencies of the 200s.
    ok: Vec<Duration>,
    shed: usize,
    other: usize,
    elapsed: Duration,
}

impl Run {
    fn add(&mut self, other: Run) {
        self.ok.extend(other.ok);
        self.ok.sort_unstable();
        self.shed += other.shed;
        self.other += other.other;
        self.elapsed += other.elapsed;
    }

    fn per_second(&self) -> f64 {
        self.ok.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile of the admitted requests, in ms.
    fn p(&self, p: f64) -> f64 {
        let n = self.ok.len().max(1);
        let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
        self.ok
            .get(rank.min(n) - 1)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    }
}

/// Serves `app` on a loopback port from the server runtime.
fn serve(server: &tokio::runtime::Runtime, app: Router) -> SocketAddr {
    let listener = server
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    server.spawn(serve_connections(
        listener,
        app,
        ConnectionLimits::default(),
        std::future::pending::<()>(),
    ));
    addr
}

/// `clients` tasks sending searches back to back for `duration`.
async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    clients: usize,
    duration: Duration,
) -> Run {
    let start = Instant::now();
    let stop = start + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move {
                let mut run = Run::default();
                let mut i = c;
                while Instant::now() < stop {
                    let body = search_body(i % QUERIES, (i / QUERIES % 2) * PAGE);
                    i += clients;
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(body)
                        .send()
                        .await;
                    let status = match response {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            if r.bytes().await.is_err() {
                                0
                            } else {
                                status
                            }
                        }
                        Err(_) => 0,
                    };
                    match status {
                        200 => run.ok.push(sent.elapsed()),
                        503 => run.shed += 1,
                        _ => run.other += 1,
                    }
                }
                run
            })
        })
        .collect();
    let mut total = Run::default();
    for task in tasks {
        total.add(task.await.unwrap());
    }
    total.elapsed = start.elapsed();
    total
}

fn state(index: &Path, embeddings: &str, max_in_flight: usize) -> Arc<AppState> {
    let high = Limit(Some(Rate::per_minute(1_000_000_000)));
    let mut settings = Settings {
        embedding_base_url: Some(embeddings.to_owned()),
        embedding_model: None,
        max_in_flight,
        ..Settings::default()
    };
    settings.admission.rate_limits = RateLimits {
        chat: high,
        search: high,
        other: high,
    };
    Arc::new(AppState::new(catalog::load_mmap(index).unwrap(), settings))
}

/// Runs both measurements over the archives in `index`, printing the figures.
pub fn run(index: &Path, embeddings: &str, clients: usize, secs: Duration) {
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let load = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let shared = state(index, embeddings, 256);
    let full = format!(
        "http://{}/api/episodes/search",
        serve(&server, router(shared.clone()))
    );
    let bare = format!(
        "http://{}/api/episodes/search",
        serve(&server, routes(shared))
    );
    let limit = crate::support::env_usize("PODMAP_SERVE_LIMIT", 4).max(1);
    let limited = state(index, embeddings, limit);
    let overload = format!(
        "http://{}/api/episodes/search",
        serve(&server, router(limited))
    );

    load.block_on(async {
        // Every query once on each server: the embeddings are cached for the measured runs.
        for url in [&full, &bare, &overload] {
            for q in 0..QUERIES {
                let (_, mode) = search_once(&client, url, search_body(q, 0)).await;
                assert_eq!(mode, "semantic", "q{q} at {url}");
            }
        }
        let round = secs / ROUNDS as u32;
        let (mut stack, mut plain) = (Run::default(), Run::default());
        for _ in 0..ROUNDS {
            stack.add(closed_loop(&client, &full, clients, round).await);
            plain.add(closed_loop(&client, &bare, clients, round).await);
        }
        assert_eq!(stack.other + stack.shed + plain.other + plain.shed, 0, "every answer a 200");
        let (stack_rate, plain_rate) = (stack.per_second(), plain.per_second());
        println!("\n## Middleware cost ({clients} clients, {ROUNDS}× A/B rounds of {round:?})\n");
        println!("| served by | requests/s | p50 ms | p99 ms |");
        println!("|---|---:|---:|---:|");
        println!("| full stack (`router`) | {stack_rate:.0} | {:.2} | {:.2} |", stack.p(50.0), stack.p(99.0));
        println!("| bare routes (`routes`) | {plain_rate:.0} | {:.2} | {:.2} |", plain.p(50.0), plain.p(99.0));
        println!(
            "\nfull stack / bare throughput: {:.3} (the layers cost {:.1} % of throughput; target < 10 %)",
            stack_rate / plain_rate,
            (1.0 - stack_rate / plain_rate) * 100.0
        );

        let (mut at_limit, mut over) = (Run::default(), Run::default());
        for _ in 0..ROUNDS {
            at_limit.add(closed_loop(&client, &overload, limit, round).await);
            over.add(closed_loop(&client, &overload, 4 * limit, round).await);
        }
        assert_eq!(at_limit.other + over.other, 0, "only 200s and 503s");
        let (p_at, p_over) = (at_limit.p(99.0), over.p(99.0));
        println!("\n## Overload (max_in_flight = {limit}, {ROUNDS}× alternating rounds)\n");
        println!("| clients | admitted/s | shed | admitted p50 ms | admitted p99 ms |");
        println!("|---:|---:|---:|---:|---:|");
        println!("| {limit} | {:.0} | {} | {:.2} | {p_at:.2} |", at_limit.per_second(), at_limit.shed, at_limit.p(50.0));
        println!("| {} | {:.0} | {} | {:.2} | {p_over:.2} |", 4 * limit, over.per_second(), over.shed, over.p(50.0));
        println!("\nadmitted p99 at 4× overload / at the limit: {:.2} (target ≤ 2)", p_over / p_at);
    });
}
