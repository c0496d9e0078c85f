//! What the analytics routes cost a real `podmap serve`, and whether they slow searches down.
//!
//! The server is the `podmap` binary in a child process on the bundled fixtures (converted
//! into a temporary folder), analytics in a SQLite file beside them (`--database-url
//! sqlite://…`, a fixed address key, no GeoIP database), rate limits off, its log (one access
//! line a request, as by default) in `target/bench-data/serve-bench-analytics-*.log`. Query
//! embeddings come from the serve bench's stand-in OpenAI endpoint in this process, which
//! answers `q0`…`q2` with the fixtures' query vectors; every query is sent once before
//! measuring, so measured searches are answered from the server's embedding cache, and the
//! bench checks that the stand-in was not called again.
//!
//! The analytics load comes from another process: this binary run again as a load child
//! (`load.rs`), one thread, sending OPEN-LOOP at a fixed rate (three page views to one episode
//! play, from 250 client addresses) whatever the answers, counting late and failed sends.
//!
//! Measured, in this order:
//! 1. **Server CPU per request**: utime + stime of the server process (`/proc/<pid>/stat`)
//!    around a burst of track requests at the load rate with nothing else running: on a
//!    server with analytics off (the HTTP stack alone), then with SQLite until every row has
//!    landed (so the writer's inserts count); the same for a burst of searches, and an idle
//!    second for the background.
//! 2. **Search beside tracking**: `/api/episodes/search` from a few closed-loop clients in
//!    this process (one thread), in interleaved rounds: alone; beside the load sent to the
//!    server with analytics off (what the HTTP requests alone do to searches); beside the
//!    load stored in SQLite; alone, …. For each setting the median over rounds of the p99,
//!    its ratio to the median alone, and each round's ratio to the round alone before it,
//!    with each round's figures and who used the CPU (server, search clients, load child,
//!    other processes), so the machine's noise shows. Every answered event must be stored.
//! 3. **Track throughput**: the load child in closed loop (many clients) for a few seconds,
//!    on SQLite and on PostgreSQL (`PODMAP_POSTGRES_URL`, default
//!    `postgres://postgres@127.0.0.1:5432/postgres`; a database of its own, dropped after;
//!    skipped with the reason when unreachable), counting the rows that land and the events
//!    dropped; for PostgreSQL also the server CPU per event of the burst in 1.
//!
//! `cargo bench --bench analytics`, about 80 s. Settings (environment):
//! `PODMAP_ANALYTICS_RATE` (events/s of the load and the bursts, default 500),
//! `PODMAP_ANALYTICS_BURST` (track requests of a CPU burst, default 2000; searches: half),
//! `PODMAP_ANALYTICS_ROUNDS` (rounds of each setting, default 6, at least 3),
//! `PODMAP_ANALYTICS_ROUND_SECS` (default 2.5), `PODMAP_ANALYTICS_SEARCH_CLIENTS` (default 2),
//! `PODMAP_ANALYTICS_TRACK_CLIENTS` (closed-loop clients of the throughput runs, default 32),
//! `PODMAP_ANALYTICS_SECS` (seconds of a throughput run, default 5).

#[path = "../support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "../serve/measure.rs"]
mod measure;
#[allow(dead_code)]
#[path = "../serve/process.rs"]
mod process;
#[allow(dead_code)]
#[path = "../serve/stand_in.rs"]
mod stand_in;

mod load;
mod rounds;

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use load::{http_client, Kind, LoadChild, Report, Spec, QUERIES};
use measure::cpu_time;
use process::{spawn_podmap, Server};
use rounds::{search_round, Setting};
use sqlx::Connection;
use stand_in::StandIn;
use support::{convert, env_usize};

const PODCASTS: [&str; 3] = ["demo-raumfahrt", "demo-forschung", "demo-text"];
/// Give up on a server that has not answered, or rows that have not landed, after this long.
const TIMEOUT: Duration = Duration::from_secs(60);

struct Config {
    rate: f64,
    /// Seconds of a throughput run.
    secs: f64,
    rounds: usize,
    round_secs: f64,
    search_clients: usize,
    track_clients: usize,
    burst: usize,
}

impl Config {
    fn from_env() -> Config {
        Config {
            rate: env_usize("PODMAP_ANALYTICS_RATE", 500).max(1) as f64,
            secs: env_usize("PODMAP_ANALYTICS_SECS", 5).max(1) as f64,
            rounds: env_usize("PODMAP_ANALYTICS_ROUNDS", 6).max(3),
            round_secs: std::env::var("PODMAP_ANALYTICS_ROUND_SECS")
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(2.5)
                .max(0.5),
            search_clients: env_usize("PODMAP_ANALYTICS_SEARCH_CLIENTS", 2).max(1),
            track_clients: env_usize("PODMAP_ANALYTICS_TRACK_CLIENTS", 32).max(1),
            burst: env_usize("PODMAP_ANALYTICS_BURST", 2000).max(100),
        }
    }
}

/// Counts the rows the server's store holds, through a connection of this process.
enum Rows {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Rows {
    async fn connect(url: &str) -> Rows {
        if url.starts_with("sqlite:") {
            let conn = sqlx::SqliteConnection::connect(&format!("{url}?mode=ro"))
                .await
                .expect("open the SQLite store");
            Rows::Sqlite(conn)
        } else {
            let conn = sqlx::PgConnection::connect(url)
                .await
                .expect("connect to the PostgreSQL store");
            Rows::Postgres(conn)
        }
    }

    async fn count(&mut self) -> i64 {
        const SQL: &str = "SELECT (SELECT COUNT(*) FROM page_views) \
            + (SELECT COUNT(*) FROM episode_plays)";
        match self {
            Rows::Sqlite(conn) => sqlx::query_scalar::<_, i64>(SQL).fetch_one(conn).await,
            Rows::Postgres(conn) => sqlx::query_scalar::<_, i64>(SQL).fetch_one(conn).await,
        }
        .expect("count the stored rows")
    }

    /// Polls until the store holds `target` rows (or [`TIMEOUT`] passed); the count.
    async fn wait_for(&mut self, target: i64) -> i64 {
        let start = Instant::now();
        loop {
            let n = self.count().await;
            if n >= target || start.elapsed() > TIMEOUT {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A `podmap serve` with analytics in `database_url` (off when `None`), answering.
async fn start_server(
    name: &'static str,
    index: &Path,
    dir: &Path,
    database_url: Option<&str>,
    stand_in: &StandIn,
) -> Server {
    let mut args: Vec<OsString> = vec!["--index".into(), index.into()];
    match database_url {
        Some(url) => args.extend([
            "--database-url".into(),
            url.into(),
            "--analytics-ip-secret".into(),
            "bench key".into(),
            // No GeoIP database (the defaults are relative to the working directory).
            "--geoip-db".into(),
            dir.join("absent.mmdb").into(),
            "--world-cities".into(),
            dir.join("absent.csv").into(),
        ]),
        None => args.extend(["--analytics".into(), "off".into()]),
    }
    let mut server = spawn_podmap(name, &args, &stand_in.base_url);
    let client = http_client(1);
    let health = format!("http://{}/api/health", server.addr());
    let start = Instant::now();
    loop {
        if client
            .get(&health)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        server.check_alive();
        assert!(
            start.elapsed() < TIMEOUT,
            "the {name} server did not answer (log: {})",
            server.log.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Every query once, so that measured searches find their embedding cached.
    for q in 0..2 * QUERIES {
        let (path, _, body) = load::request(Kind::Search, q);
        let response = client
            .post(format!("http://{}{path}", server.addr()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("search");
        assert_eq!(response.status(), 200, "warm-up search {q}");
        let mode = response.headers().get("x-podmap-search-mode").cloned();
        assert_eq!(
            mode.as_ref().and_then(|m| m.to_str().ok()),
            Some("semantic"),
            "warm-up search {q} was not semantic"
        );
    }
    server
}

/// Server CPU per request of a burst of `count` requests of `kind` at `rate`, with nothing
/// else running; for track events with a store (`rows`), until their rows have landed.
async fn cpu_per_request(
    server: &Server,
    mut rows: Option<&mut Rows>,
    kind: Kind,
    rate: f64,
    count: usize,
) -> (Duration, Report) {
    let mut child = LoadChild::spawn(&Spec {
        addr: server.addr(),
        kind,
        rate: Some(rate),
        clients: None,
        secs: count as f64 / rate,
    });
    let before = match rows.as_mut() {
        Some(rows) => rows.count().await,
        None => 0,
    };
    let cpu_before = cpu_time(server.pid());
    child.go();
    let report = child.finish();
    if let (Some(rows), Kind::Track) = (rows, kind) {
        let landed = rows.wait_for(before + report.ok as i64).await - before;
        assert_eq!(landed, report.ok as i64, "rows landed of the burst");
    }
    let cpu = cpu_time(server.pid()) - cpu_before;
    (cpu / report.ok.max(1) as u32, report)
}

/// Closed-loop track throughput against `server`; prints it with the rows that landed.
async fn throughput(name: &str, server: &Server, rows: &mut Rows, config: &Config) -> f64 {
    let mut child = LoadChild::spawn(&Spec {
        addr: server.addr(),
        kind: Kind::Track,
        rate: None,
        clients: Some(config.track_clients),
        secs: config.secs,
    });
    let before = rows.count().await;
    let cpu_before = cpu_time(server.pid());
    child.go();
    let report = child.finish();
    let ended = Instant::now();
    let landed = rows.wait_for(before + report.ok as i64).await - before;
    let drained = ended.elapsed();
    let cpu = cpu_time(server.pid()) - cpu_before;
    let dropped = metric(server, "podmap_analytics_dropped_total").await;
    let per_second = report.ok as f64 / report.elapsed_s;
    println!(
        "track throughput, {name}: {per_second:.0} events/s answered ({} clients, {} in {:.1} s, \
         {} failed, p50/p99 {:.2}/{:.2} ms); {landed} rows landed, the last {:.2} s after the \
         run, {dropped} dropped (queue full); server CPU {:.1} µs/event, {:.2} cores",
        config.track_clients,
        report.ok,
        report.elapsed_s,
        report.failed,
        report.p50_ms,
        report.p99_ms,
        drained.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / report.ok.max(1) as f64,
        cpu.as_secs_f64() / (report.elapsed_s + drained.as_secs_f64()),
    );
    per_second
}

/// The value of the Prometheus sample `name` on the server's `/metrics`.
async fn metric(server: &Server, name: &str) -> f64 {
    let text = http_client(1)
        .get(format!("http://{}/metrics", server.addr()))
        .send()
        .await
        .expect("scrape /metrics")
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} on /metrics"))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    if std::env::var(load::ROLE_VAR).as_deref() == Ok("load") {
        load::run_child();
        return;
    }
    // `cargo bench` passes `--bench`; this bench has no filters or options.
    let config = Config::from_env();
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/data");
    for podcast in PODCASTS {
        convert(&fixtures, &index, podcast);
    }
    let vectors: Vec<Vec<f32>> = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("queries/demo-raumfahrt.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(vectors.len(), QUERIES, "the fixtures' query vectors");
    let stand_in = StandIn::start(&vectors);
    // The search clients: one thread, so they take at most one of the two cores.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&config, dir.path(), &index, &stand_in));
}

async fn run(config: &Config, dir: &Path, index: &Path, stand_in: &StandIn) {
    // 1. Server CPU per request: the same track requests answered by a server with analytics
    // off (the HTTP stack alone), then stored in SQLite; and searches.
    let mut off_server = start_server("analytics-off", index, dir, None, stand_in).await;
    let (per_request_off, off) =
        cpu_per_request(&off_server, None, Kind::Track, config.rate, config.burst).await;
    let sqlite = format!("sqlite://{}", dir.join("analytics.db").display());
    let mut server = start_server("analytics-sqlite", index, dir, Some(&sqlite), stand_in).await;
    let mut rows = Rows::connect(&sqlite).await;
    let upstream_calls = stand_in.calls();
    let idle_before = cpu_time(server.pid());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = cpu_time(server.pid()) - idle_before;
    let (per_event, track) = cpu_per_request(
        &server,
        Some(&mut rows),
        Kind::Track,
        config.rate,
        config.burst,
    )
    .await;
    let (per_search, search) =
        cpu_per_request(&server, None, Kind::Search, config.rate, config.burst / 2).await;
    println!(
        "server CPU per request at {:.0}/s (utime+stime of the server process, 10 ms ticks; \
         idle {:.0} ms/s):",
        config.rate,
        idle.as_secs_f64() * 1e3,
    );
    for (what, per, report) in [
        ("track, analytics off", per_request_off, &off),
        ("track, SQLite (until stored)", per_event, &track),
        ("search", per_search, &search),
    ] {
        println!(
            "  {what:30} {:7.1} µs ({} requests, {} late, {} failed; answered in p50/p99 \
             {:.2}/{:.2} ms)",
            us(per),
            report.ok,
            report.late,
            report.failed,
            report.p50_ms,
            report.p99_ms,
        );
    }

    // 2. Search alone and beside the load (to each server), interleaved.
    let mut rounds = Vec::new();
    for _ in 0..config.rounds {
        for setting in Setting::ALL {
            let server = match setting {
                Setting::BesideOff => &mut off_server,
                Setting::Alone | Setting::BesideSqlite => &mut server,
            };
            let round = search_round(server, config, setting).await;
            server.check_alive();
            let load = round.load.as_ref().map_or(String::new(), |r| {
                format!(
                    "; load {} events ({} late, max lag {:.1} ms, {} failed), track p99 {:.2} ms",
                    r.ok, r.late, r.max_lag_ms, r.failed, r.p99_ms
                )
            });
            println!(
                "  search {:21}: p50 {:.2} ms, p99 {:.2} ms, {} searches; cores: server {:.2}, \
                 search clients {:.2}, load {:.2}, others {:.2}{load}",
                setting.name(),
                round.p(50.0),
                round.p(99.0),
                round.latencies.len(),
                round.server_cores,
                round.client_cores,
                round.load_cores,
                round.other_cores,
            );
            rounds.push(round);
        }
    }
    drop(off_server);
    assert_eq!(
        stand_in.calls(),
        upstream_calls,
        "a measured search called the embeddings endpoint: the cache missed"
    );
    let of = |setting: Setting, p: f64| {
        median(
            rounds
                .iter()
                .filter(|r| r.setting == setting)
                .map(|r| r.p(p))
                .collect(),
        )
    };
    let p99_alone = of(Setting::Alone, 99.0);
    let ratio = |setting: Setting| of(setting, 99.0) / p99_alone;
    // Each round's p99 against the round alone before it.
    let per_round = |setting: Setting| {
        let i = Setting::ALL.iter().position(|s| *s == setting).unwrap();
        let ratios: Vec<f64> = rounds
            .chunks(Setting::ALL.len())
            .map(|r| r[i].p(99.0) / r[0].p(99.0))
            .collect();
        let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        format!("{} (median {:.2})", listed.join(", "), median(ratios))
    };
    println!(
        "search p99, median of {} rounds of {:.1} s each, beside {:.0} track events/s:",
        config.rounds, config.round_secs, config.rate,
    );
    for setting in Setting::ALL {
        println!(
            "  {:21}: p99 {:.2} ms, p50 {:.2} ms{}",
            setting.name(),
            of(setting, 99.0),
            of(setting, 50.0),
            match setting {
                Setting::Alone => String::new(),
                _ => format!(
                    "; p99 ratio {:.2} ({:+.0} %); per round {}",
                    ratio(setting),
                    (ratio(setting) - 1.0) * 100.0,
                    per_round(setting)
                ),
            }
        );
    }
    let sent: u64 = rounds
        .iter()
        .filter(|r| r.setting == Setting::BesideSqlite)
        .filter_map(|r| r.load.as_ref())
        .map(|r| r.ok)
        .sum();
    let stored = rows.count().await;
    let expected = (track.ok + sent) as i64;
    let stored = if stored < expected {
        rows.wait_for(expected).await
    } else {
        stored
    };
    assert_eq!(stored, expected, "every answered event is stored once");

    // 3. Track throughput.
    throughput("SQLite", &server, &mut rows, config).await;
    drop(server);
    postgres(config, dir, index, stand_in).await;
}

/// The PostgreSQL half: a database of its own on `PODMAP_POSTGRES_URL`, dropped after.
async fn postgres(config: &Config, dir: &Path, index: &Path, stand_in: &StandIn) {
    let admin = std::env::var("PODMAP_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn = match sqlx::PgConnection::connect(&admin).await {
        Ok(conn) => conn,
        Err(e) => {
            println!("PostgreSQL: skipped, {admin} unreachable: {e}");
            return;
        }
    };
    let name = format!("podmap_bench_{}", std::process::id());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').expect("a URL with a database").0;
    let url = format!("{base}/{name}");
    {
        let server = start_server("analytics-postgres", index, dir, Some(&url), stand_in).await;
        let mut rows = Rows::connect(&url).await;
        let (per_event, track) = cpu_per_request(
            &server,
            Some(&mut rows),
            Kind::Track,
            config.rate,
            config.burst,
        )
        .await;
        println!(
            "server CPU per track event, PostgreSQL: {:.1} µs ({} events at {:.0}/s, {} late, \
             {} failed; PostgreSQL's own processes not counted)",
            us(per_event),
            track.ok,
            config.rate,
            track.late,
            track.failed,
        );
        throughput("PostgreSQL", &server, &mut rows, config).await;
        if let Rows::Postgres(conn) = rows {
            let _ = conn.close().await;
        }
    }
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
}
