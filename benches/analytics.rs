//! Analytics under load, in-process on loopback through `listener::serve_connections` and the
//! full stack (rate limits off), on the bundled fixtures:
//!
//! 1. **Track throughput**: closed-loop `POST /api/analytics/track` from 32 clients, on SQLite
//!    and on PostgreSQL (`PODMAP_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/
//!    postgres`; skipped with the reason printed when unreachable), counting the events the
//!    store holds once the server shut down.
//! 2. **Search beside tracking**: `/api/episodes/search` p50/p99 from 4 clients, alone and with
//!    16 clients tracking at the same time (SQLite). The track load is meant to move the search
//!    p99 by 10 % at most: the handlers only queue events, one writer task stores them.
//!
//! `PODMAP_ANALYTICS_SECS` sets the seconds of each run (default 5).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use podmap::server::analytics::Analytics;
use podmap::server::catalog::load_mmap;
use podmap::server::listener::{serve_connections, ConnectionLimits};
use podmap::server::{router, AppState, Settings};
use serde_json::json;
use sqlx::Connection;

struct Server {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<()>,
    state: Arc<AppState>,
}

async fn start(database_url: &str) -> Server {
    let mut settings = common::unlimited(Settings::default());
    settings.analytics.database_url = database_url.to_owned();
    settings.analytics.ip_secret = Some("bench key".into());
    let analytics = Analytics::open(&settings.analytics).await.unwrap();
    let catalog = load_mmap(common::fixtures_index()).unwrap();
    let state = Arc::new(AppState::new(catalog, settings).with_analytics(analytics));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(serve_connections(
        listener,
        router(state.clone()),
        ConnectionLimits::default(),
        async {
            let _ = stopped.await;
        },
    ));
    Server {
        addr,
        stop,
        serving,
        state,
    }
}

impl Server {
    async fn shut_down(self) {
        let _ = self.stop.send(());
        self.serving.await.unwrap();
        self.state.analytics.shutdown().await;
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// `clients` closed loops of `one` until `until`; the latencies of the successes.
async fn closed_loop<F, Fut>(clients: usize, until: Instant, one: F) -> Vec<Duration>
where
    F: Fn(reqwest::Client, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let mut tasks = Vec::new();
    for c in 0..clients {
        let one = one.clone();
        tasks.push(tokio::spawn(async move {
            let http = client();
            let mut times = Vec::new();
            let mut i = 0;
            while Instant::now() < until {
                let t = Instant::now();
                if one(http.clone(), c * 1_000_000 + i).await {
                    times.push(t.elapsed());
                }
                i += 1;
            }
            times
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    all
}

fn track(
    addr: SocketAddr,
) -> impl Fn(reqwest::Client, usize) -> futures_util::future::BoxFuture<'static, bool> + Clone {
    move |http, i| {
        Box::pin(async move {
            http.post(format!("http://{addr}/api/analytics/track"))
                .json(&json!({"path": format!("/bench/{i}"), "route_name": "bench"}))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
    }
}

fn search(
    addr: SocketAddr,
) -> impl Fn(reqwest::Client, usize) -> futures_util::future::BoxFuture<'static, bool> + Clone {
    const QUERIES: [&str; 4] = ["Rakete", "Mond", "Satellit", "Raumstation"];
    move |http, i| {
        Box::pin(async move {
            http.post(format!("http://{addr}/api/episodes/search"))
                .json(&json!({"query": QUERIES[i % 4], "podcastId": "demo-raumfahrt", "limit": 10}))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
    }
}

fn ms(sorted: &[Duration], p: f64) -> f64 {
    let n = sorted.len().max(1);
    let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
    sorted
        .get(rank.min(n) - 1)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

async fn throughput(name: &str, url: &str, secs: Duration) {
    let server = start(url).await;
    let t = Instant::now();
    let answered = closed_loop(32, Instant::now() + secs, track(server.addr))
        .await
        .len();
    let elapsed = t.elapsed();
    server.shut_down().await;
    println!(
        "track {name}: {:.0} requests/s ({answered} answered 200 in {:.1} s)",
        answered as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs = Duration::from_secs(
        std::env::var("PODMAP_ANALYTICS_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    );
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    throughput("SQLite", &sqlite, secs).await;

    let admin = std::env::var("PODMAP_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    match sqlx::PgConnection::connect(&admin).await {
        Ok(mut conn) => {
            let name = format!("podmap_bench_{}", std::process::id());
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let base = admin.rsplit_once('/').expect("a URL with a database").0;
            throughput("PostgreSQL", &format!("{base}/{name}"), secs).await;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        Err(e) => println!("track PostgreSQL: skipped, {admin} unreachable: {e}"),
    }

    let server = start(&format!(
        "sqlite://{}",
        dir.path().join("mixed.db").display()
    ))
    .await;
    let alone = closed_loop(4, Instant::now() + secs, search(server.addr)).await;
    let until = Instant::now() + secs;
    let load = tokio::spawn(closed_loop(16, until, track(server.addr)));
    let beside = closed_loop(4, until, search(server.addr)).await;
    let tracked = load.await.unwrap().len();
    server.shut_down().await;
    let (p99a, p99b) = (ms(&alone, 99.0), ms(&beside, 99.0));
    println!(
        "search alone: p50 {:.2} ms, p99 {p99a:.2} ms ({} requests)",
        ms(&alone, 50.0),
        alone.len()
    );
    println!(
        "search beside {tracked} track requests: p50 {:.2} ms, p99 {p99b:.2} ms ({} requests); p99 {:+.1} %",
        ms(&beside, 50.0),
        beside.len(),
        (p99b / p99a - 1.0) * 100.0
    );
}
