//! The load-balancer snippets of `docs/DEPLOY.md`, run as they are written (only their ports
//! changed): nginx and HAProxy in front of two `podmap serve` processes on the fixtures.
//! Through each: the replicas share the requests, each counts the client named in
//! `X-Forwarded-For` (a trusted proxy's header), and with one replica killed the searches
//! go on being answered by the other.
//!
//! Needs nginx and HAProxy on the machine (`cfg(podmap_proxies)`, from build.rs; `.ci/run`
//! installs them from Debian's packages); ignored with the reason without them.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEPLOY: &str = include_str!("../docs/DEPLOY.md");

/// The snippet of `DEPLOY.md` from the line `start` to its `# --- end ---`.
fn snippet(start: &str) -> String {
    let from = DEPLOY
        .find(start)
        .unwrap_or_else(|| panic!("{start} in DEPLOY.md"));
    let to = from
        + DEPLOY[from..]
            .find("# --- end ---")
            .expect("the snippet's end");
    DEPLOY[from..to].to_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A replica as the snippets expect one: trusting the balancer on loopback, with a small
/// quota for cheap routes so that the test can see whose quota a request counts against.
fn replica(port: u16) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_podmap"))
        .args(["serve", "--index", common::s(common::fixtures_index())])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--analytics", "off", "--trusted-proxies", "127.0.0.1"])
        .args(["--rate-limit-other", "3/min", "--rate-limit-search", "off"])
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start podmap serve");
    Process(child)
}

/// Waits until `url` answers 200.
async fn until_ok(client: &reqwest::Client, url: &str) {
    let start = Instant::now();
    loop {
        if client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{url} never answered 200"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn search(client: &reqwest::Client, base: &str, client_address: &str) -> u16 {
    client
        .post(format!("{base}/api/episodes/search"))
        .header("content-type", "application/json")
        .header("x-forwarded-for", client_address)
        .body(r#"{"query": "Mond", "podcastId": "demo-raumfahrt"}"#)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// The checks through a balancer on `base` in front of `replicas`.
async fn through(base: &str, mut replicas: Vec<Process>) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    until_ok(&client, &format!("{base}/api/ready")).await;
    // Both replicas up and checked by the balancer before counting.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // One client, eight cheap requests: each replica admits three (3/min), so six answers
    // say that both replicas served and that both counted the forwarded address.
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let answer = client
            .get(format!("{base}/api/podcasts"))
            .header("x-forwarded-for", "203.0.113.9")
            .send()
            .await
            .unwrap();
        statuses.push(answer.status().as_u16());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok, 6, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    // Another client at the same time has its own quota.
    let other = client
        .get(format!("{base}/api/podcasts"))
        .header("x-forwarded-for", "203.0.113.10")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);

    // One replica gone: every search is still answered, by the other.
    drop(replicas.remove(0));
    for i in 0..6 {
        let status = search(&client, base, &format!("198.51.100.{i}")).await;
        assert_eq!(status, 200, "search {i} with one replica down");
    }
}

#[tokio::test]
#[cfg_attr(
    not(podmap_proxies),
    ignore = "needs nginx and haproxy on the PATH (.ci/run installs them)"
)]
async fn the_nginx_snippet_balances_names_the_client_and_fails_over() {
    let (a, b, front) = (free_port(), free_port(), free_port());
    let replicas = vec![replica(a), replica(b)];
    let dir = tempfile::tempdir().unwrap();
    let site = snippet("# --- podmap replicas behind nginx")
        .replace("127.0.0.1:18081", &format!("127.0.0.1:{a}"))
        .replace("127.0.0.1:18082", &format!("127.0.0.1:{b}"))
        .replace("listen 18090;", &format!("listen 127.0.0.1:{front};"));
    let d = dir.path().display();
    let config = format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n access_log {d}/access.log;\n client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n{site}\n}}\n"
    );
    let file = dir.path().join("nginx.conf");
    std::fs::write(&file, config).unwrap();
    let check = Command::new("nginx")
        .args(["-t", "-c", common::s(&file)])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", common::text(&check.stderr));
    let _nginx = Process(
        Command::new("nginx")
            .args(["-c", common::s(&file), "-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    through(&format!("http://127.0.0.1:{front}"), replicas).await;
}

#[tokio::test]
#[cfg_attr(
    not(podmap_proxies),
    ignore = "needs nginx and haproxy on the PATH (.ci/run installs them)"
)]
async fn the_haproxy_snippet_checks_readiness_names_the_client_and_fails_over() {
    let (a, b, front) = (free_port(), free_port(), free_port());
    let replicas = vec![replica(a), replica(b)];
    let dir = tempfile::tempdir().unwrap();
    let config = snippet("# --- podmap replicas behind HAProxy")
        .replace("127.0.0.1:18081", &format!("127.0.0.1:{a}"))
        .replace("127.0.0.1:18082", &format!("127.0.0.1:{b}"))
        .replace("bind :18091", &format!("bind 127.0.0.1:{front}"));
    let file = dir.path().join("haproxy.cfg");
    std::fs::write(&file, config).unwrap();
    let check = Command::new("haproxy")
        .args(["-c", "-f", common::s(&file)])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", common::text(&check.stderr));
    let _haproxy = Process(
        Command::new("haproxy")
            .args(["-db", "-f", common::s(&file)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    through(&format!("http://127.0.0.1:{front}"), replicas).await;
}

#[test]
fn both_snippets_are_in_the_guide() {
    let nginx = snippet("# --- podmap replicas behind nginx");
    assert!(nginx.contains("X-Forwarded-For $proxy_add_x_forwarded_for"));
    let haproxy = snippet("# --- podmap replicas behind HAProxy");
    assert!(haproxy.contains("option httpchk GET /api/ready"));
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/DEPLOY.md")
        .is_file());
}
