//! `podmap serve` stopped by SIGTERM while thousands of track requests are in flight: every
//! event answered with `{"success":true}` is in the SQLite file once the process has exited.
//! Requests refused or cut because the server was stopping are fine; a success without its
//! row is the failure.

#[allow(unused_macros)]
mod analytics_support;
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use analytics_support::Db;
use serde_json::{json, Value};

/// Concurrent clients, and the requests each sends at most.
const CLIENTS: usize = 32;
const PER_CLIENT: usize = 200;
/// Successes seen before SIGTERM is sent, so the signal lands with requests still queued.
const SIGNAL_AFTER: u64 = 1500;

/// Starts `podmap serve` on the fixtures with analytics in `db`, and returns it with the
/// address from its start-up line.
fn spawn_server(db: &Db) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_podmap"))
        .args(["serve", "--index", common::s(common::fixtures_index())])
        .args(["--listen", "127.0.0.1:0", "--database-url", &db.url])
        .args(["--rate-limit-other", "off"])
        .env("RUST_LOG", "info")
        .env_remove("PODMAP_LOG_FORMAT")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run podmap serve");
    let stderr = child.stderr.take().unwrap();
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut found = Some(found);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("http://").nth(1) {
                if let Some(sender) = found.take() {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = sender.send(addr);
                }
            }
            // Keep reading so the server never blocks on a full pipe.
        }
    });
    let addr = address
        .recv_timeout(Duration::from_secs(120))
        .expect("the start-up line with the address");
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_thousands_of_events_queued_loses_none() {
    let db = Db::sqlite().await;
    let (mut child, addr) = spawn_server(&db);
    let url = format!("http://{addr}/api/analytics/track");
    let successes = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let stopping = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (url, successes, refused, stopping) = (
            url.clone(),
            successes.clone(),
            refused.clone(),
            stopping.clone(),
        );
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap();
            for i in 0..PER_CLIENT {
                let body = json!({"path": format!("/p/{c}/{i}"), "route_name": "sigterm"});
                let answer = http.post(&url).json(&body).send().await;
                let ok = match answer {
                    Ok(r) if r.status() == 200 => {
                        r.json::<Value>().await.ok() == Some(json!({"success": true}))
                    }
                    _ => false,
                };
                if ok {
                    successes.fetch_add(1, Ordering::SeqCst);
                } else {
                    // Refused or cut by the stopping server; once stopping, this client ends.
                    refused.fetch_add(1, Ordering::SeqCst);
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                }
            }
        }));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while successes.load(Ordering::SeqCst) < SIGNAL_AFTER {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} successes in 120 s ({} refused)",
            successes.load(Ordering::SeqCst),
            refused.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stopping.store(true, Ordering::SeqCst);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let at_signal = successes.load(Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    let exit = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("podmap serve did not exit within 120 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert!(exit.success(), "podmap serve exited with {exit}");
    let answered = successes.load(Ordering::SeqCst);
    let stored = db
        .count("SELECT COUNT(*) AS n FROM page_views WHERE route_name = 'sigterm'")
        .await;
    eprintln!(
        "{answered} answered success ({at_signal} before SIGTERM), {} refused, {stored} stored",
        refused.load(Ordering::SeqCst)
    );
    assert!(answered as usize <= CLIENTS * PER_CLIENT);
    assert_eq!(
        stored, answered as i64,
        "every event answered with success is stored"
    );
}
