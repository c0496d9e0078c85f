//! A server on a loopback port, started through podmap's own accept loop
//! (`listener::serve_connections`) so every request carries its real peer address, and the
//! requests the admission tests send it: plain HTTP through reqwest, or raw bytes.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use podmap::server::catalog::load_mmap;
use podmap::server::listener::{serve_connections, ConnectionLimits};
use podmap::server::{router, AppState, Settings};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running server; it stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves the bundled fixtures with `settings` on `127.0.0.1:<free port>`.
pub async fn start(settings: Settings) -> Server {
    let catalog = load_mmap(crate::common::fixtures_index()).unwrap();
    let state = Arc::new(AppState::new(catalog, settings));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = ConnectionLimits {
        drain_timeout: Duration::from_secs(1),
        ..ConnectionLimits::default()
    };
    tokio::spawn(serve_connections(listener, router(state), limits, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
    }
}

/// A client that never goes through a proxy from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// One answer: status, headers and the body, parsed as JSON when it is.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Option<Value>,
}

impl Reply {
    /// The `error` string of a JSON error body; panics with the answer otherwise.
    pub fn error(&self) -> &str {
        self.json
            .as_ref()
            .and_then(|j| j.get("error"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no JSON error in {self:?}"))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `method path` with `headers` and `body` and reads the whole answer.
pub async fn send(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client().request(method, format!("http://{}{path}", server.addr));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).ok();
    Reply {
        status,
        headers,
        text,
        json,
    }
}

/// POSTs `body` as JSON with extra `headers`.
pub async fn post_json(
    server: &Server,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> Reply {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    send(
        server,
        "POST",
        path,
        &all,
        Some(body.to_string().into_bytes()),
    )
    .await
}

/// GETs `path` with extra `headers`.
pub async fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(server, "GET", path, headers, None).await
}

/// Writes `request` as raw bytes on a new connection and returns everything the server
/// answers until it closes the connection (the request should say `Connection: close`).
pub async fn raw(server: &Server, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes within 30 s")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}
