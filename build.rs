//! Tells the tests what they can run on this machine, so a test that cannot run is reported as
//! ignored with its reason instead of passing without having checked anything:
//!
//! - `podmap_corpus`: the real corpus is there, i.e. `$PODMAP_CORPUS` (default
//!   `../shared/corpus` beside the checkout) holds `queries.json`;
//! - `podmap_embeddings`: `PODMAP_EMBEDDINGS_URL` names an embeddings server (`tools/test.sh`
//!   starts one and sets it). The tests read the URL at run time and fail if nothing answers.
//! - `podmap_postgres`: `PODMAP_POSTGRES_URL` names a PostgreSQL server whose user may create
//!   databases (`tools/test.sh` sets it when `pg_isready -h 127.0.0.1` answers). The analytics
//!   store tests create a database of their own there and drop it at the end.
//! - `podmap_redis`: `PODMAP_REDIS_URL` names a Redis server (`tools/test.sh` sets it when
//!   `redis-cli ping` answers). The replica tests use keys under a prefix of their own there and
//!   delete them at the end.
//! - `podmap_proxies`: `nginx` and `haproxy` run (`.ci/run` installs them), so the load-balancer
//!   snippets of docs/DEPLOY.md are run in front of two replicas.
//! - `podmap_numpy`: `$PODMAP_PYTHON` (default `python3`) imports numpy, so the `.npy` tests
//!   can have real numpy write their input files.
//!
//! When this script runs again. Cargo reruns it when one of the variables changes, when
//! `build.rs` changes, and, while the corpus is there, when its `queries.json` changes or goes
//! away. A corpus that is missing is not watched: Cargo treats a missing watched path as
//! changed and would rebuild the crate on every `cargo test`, and watching the folder around
//! the checkout would rescan all of it, `target/` included. So a corpus that appears later is
//! seen after `touch build.rs` (or by setting `PODMAP_CORPUS`), and so are numpy, nginx and
//! HAProxy installed later. Setting or unsetting `PODMAP_EMBEDDINGS_URL` (or `PODMAP_POSTGRES_URL`,
//! `PODMAP_REDIS_URL`, `PODMAP_PYTHON`) reruns this script and rebuilds the crate, not its dependencies.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PODMAP_CORPUS");
    println!("cargo:rerun-if-env-changed=PODMAP_EMBEDDINGS_URL");
    println!("cargo:rerun-if-env-changed=PODMAP_POSTGRES_URL");
    println!("cargo:rerun-if-env-changed=PODMAP_REDIS_URL");
    println!("cargo:rerun-if-env-changed=PODMAP_PYTHON");
    println!("cargo:rustc-check-cfg=cfg(podmap_corpus)");
    println!("cargo:rustc-check-cfg=cfg(podmap_embeddings)");
    println!("cargo:rustc-check-cfg=cfg(podmap_postgres)");
    println!("cargo:rustc-check-cfg=cfg(podmap_redis)");
    println!("cargo:rustc-check-cfg=cfg(podmap_numpy)");
    println!("cargo:rustc-check-cfg=cfg(podmap_proxies)");

    let queries = corpus_dir().join("queries.json");
    if queries.is_file() {
        println!("cargo:rerun-if-changed={}", queries.display());
        println!("cargo:rustc-cfg=podmap_corpus");
    }
    if set("PODMAP_EMBEDDINGS_URL").is_some() {
        println!("cargo:rustc-cfg=podmap_embeddings");
    }
    if set("PODMAP_POSTGRES_URL").is_some() {
        println!("cargo:rustc-cfg=podmap_postgres");
    }
    if set("PODMAP_REDIS_URL").is_some() {
        println!("cargo:rustc-cfg=podmap_redis");
    }
    let python = set("PODMAP_PYTHON").unwrap_or_else(|| "python3".into());
    let numpy = std::process::Command::new(python)
        .args(["-c", "import numpy"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if numpy {
        println!("cargo:rustc-cfg=podmap_numpy");
    }
    if runs("nginx", "-v") && runs("haproxy", "-v") {
        println!("cargo:rustc-cfg=podmap_proxies");
    }
}

/// Whether `program arg` runs and succeeds.
fn runs(program: &str, arg: &str) -> bool {
    std::process::Command::new(program)
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `$PODMAP_CORPUS`, else `../shared/corpus` beside the checkout: where `tests/common` looks.
fn corpus_dir() -> PathBuf {
    match set("PODMAP_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("../shared/corpus"),
    }
}

/// A variable that is set and not empty.
fn set(name: &str) -> Option<std::ffi::OsString> {
    env::var_os(name).filter(|v| !v.is_empty())
}
