//! The server against slow and stalling clients, over real sockets on loopback: stalled
//! bodies hold no request slot, liveness answers under overload, silent and idle
//! connections are closed, and the connection cap holds. Every loop is bounded.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use podmap::server::catalog::load_mmap;
use podmap::server::listener::{serve_connections, ConnectionLimits};
use podmap::server::{router, AppState, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start(limits: ConnectionLimits, max_in_flight: usize) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = (dir.path().join("data"), dir.path().join("index"));
    common::small_root(&data, "p", 12, 8);
    common::convert_quietly(&data, &index);
    let settings = Settings {
        body_timeout: Duration::from_secs(1),
        max_in_flight,
        ..Settings::default()
    };
    let state = Arc::new(AppState::new(load_mmap(&index).unwrap(), settings));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_connections(listener, router(state), limits, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
        _dir: dir,
    }
}

fn limits(max_connections: usize) -> ConnectionLimits {
    ConnectionLimits {
        max_connections,
        header_timeout: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(1),
    }
}

/// Sends one request on a new connection and returns the status code.
async fn status(addr: SocketAddr, request: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            response.extend_from_slice(&buf[..n]);
            if n == 0 || response.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    });
    read.await.expect("an answer within 10 s");
    let head = String::from_utf8_lossy(&response);
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"))
}

/// Reads until the server closes the connection; returns how long that took.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(bound, async {
        while stream.read(&mut buf).await.unwrap_or(0) > 0 {}
    })
    .await
    .expect("the server closes the connection");
    started.elapsed()
}

const LATEST: &str = "POST /api/episodes/latest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_hold_no_request_slot_and_time_out() {
    let server = start(limits(1024), 256).await;
    // 300 requests that announce 1,000 bytes of body and send 2: more than the 256 slots.
    let mut stalled = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"POST /api/episodes/latest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"")
            .await
            .unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        status(
            server.addr,
            "GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .await,
        200
    );
    assert_eq!(
        status(server.addr, LATEST).await,
        200,
        "slots are free while bodies stall"
    );
    // The body deadline (1 s here) answers each stalled request with 408.
    let mut answered = 0;
    for s in &mut stalled {
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("answered within the deadline")
            .unwrap_or(0);
        if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408") {
            answered += 1;
        }
    }
    assert_eq!(answered, stalled.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_are_closed() {
    let server = start(limits(1024), 256).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let waited = closed_within(&mut silent, Duration::from_secs(5)).await;
    assert!(
        waited >= Duration::from_millis(500),
        "closed after {waited:?}"
    );

    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    closed_within(&mut idle, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_and_are_then_served() {
    let server = start(limits(8), 256).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // The ninth waits for a free connection: the silent ones are closed after 1 s.
    let started = Instant::now();
    assert_eq!(status(server.addr, LATEST).await, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    drop(held);
}
