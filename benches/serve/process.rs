//! The `podmap serve` child processes: spawned on a free loopback port with a log file,
//! checked for liveness, killed when dropped. Split from `main.rs` by concern.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::bench_data;

/// A running `podmap serve`, killed when dropped (also when the bench panics).
pub struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    pub log: PathBuf,
}

impl Server {
    pub fn search_url(&self) -> String {
        format!("http://{}/api/episodes/search", self.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics with the end of the server's log if it has exited.
    pub fn check_alive(&mut self) {
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

/// The mmap (`--index <root>/index`) or JSON (`--source json --data <root>`) server of the
/// serve bench, searches only: no analytics store (the default one would land in the
/// checkout).
pub fn spawn_server(name: &'static str, root: &Path, embeddings: &str) -> Server {
    let mut args: Vec<OsString> = match name {
        "json" => vec![
            "--source".into(),
            "json".into(),
            "--data".into(),
            root.into(),
        ],
        _ => vec!["--index".into(), root.join("index").into()],
    };
    args.extend(["--analytics".into(), "off".into()]);
    spawn_podmap(name, &args, embeddings)
}

/// `podmap serve` with `args` on a free loopback port, calling `embeddings` for query vectors,
/// rate limits off, its log in `target/bench-data/serve-bench-<name>.log`.
pub fn spawn_podmap(name: &'static str, args: &[OsString], embeddings: &str) -> Server {
    let addr = free_port();
    std::fs::create_dir_all(bench_data()).expect("create target/bench-data");
    let log = bench_data().join(format!("serve-bench-{name}.log"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_podmap"));
    cmd.arg("serve").args(args);
    cmd.args([
        "--listen",
        &addr.to_string(),
        "--embedding-base-url",
        embeddings,
        // The load comes from one client on loopback: rate limits would measure the limiter.
        "--rate-limit-search",
        "off",
        "--rate-limit-other",
        "off",
    ])
    // The default log level (`info`: start-up, and one access line a request) whatever the
    // environment says, and every call on loopback.
    .env("RUST_LOG", "info")
    .env_remove("EMBEDDING_MODEL")
    .env_remove("PODMAP_CONFIG")
    .env_remove("DATABASE_URL");
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
