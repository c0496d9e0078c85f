//! Hot reload over real loopback HTTP: archives replaced under load are served within two
//! seconds, no request fails, every answer comes from the old or the new archive; a corrupt
//! replacement is refused while the old one keeps serving; a served file changed in place is
//! re-read, or withdrawn when it no longer opens; podcasts appear and disappear. With a read
//! lease (Linux, as root), a file written in place under load never crashes the process: the
//! podcast is withdrawn before the writer may change a byte, the others keep answering.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podmap::convert::convert_podcast;
use podmap::index::LeaseState;
use podmap::input::PodcastSource;
use podmap::server::catalog::{load_mmap, watch};
use podmap::server::{router, AppState, Settings};
use podmap::MmapIndex;
use serde_json::{json, Value};

struct Server {
    base: String,
    _dir: tempfile::TempDir,
    index: PathBuf,
    roots: [PathBuf; 2],
}

/// Two versions of podcast `p` (12 and 20 items, 4 and 7 episodes), the first one served.
async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let roots = [dir.path().join("a"), dir.path().join("b")];
    common::small_root(&roots[0], "p", 12, 8);
    common::small_root(&roots[1], "p", 20, 8);
    let index = dir.path().join("index");
    convert_podcast(
        &PodcastSource::at(&roots[0], "p"),
        &index.join("p/rag.podmap"),
    )
    .unwrap();
    let state = Arc::new(AppState::new(
        load_mmap(&index).unwrap(),
        common::unlimited(Settings::default()),
    ));
    tokio::spawn(watch(index.clone(), state.catalog.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    Server {
        base,
        _dir: dir,
        index,
        roots,
    }
}

async fn items(client: &reqwest::Client, base: &str, podcast: &str) -> Option<u64> {
    let body: Value = client
        .get(format!("{base}/api/podcasts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["podcasts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == podcast)
        .map(|p| p["items"].as_u64().unwrap())
}

/// Waits until `/api/podcasts` reports `want` items for `podcast` (None: not served).
async fn until(client: &reqwest::Client, base: &str, podcast: &str, want: Option<u64>) -> Duration {
    let started = Instant::now();
    loop {
        if items(client, base, podcast).await == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{podcast} not reloaded to {want:?} within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn replace(server: &Server, version: usize) {
    let target = server.index.join("p/rag.podmap");
    convert_podcast(&PodcastSource::at(&server.roots[version], "p"), &target).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_archives_are_served_without_failing_a_request() {
    let server = Arc::new(start().await);
    let client = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..3 {
        let (server, client, stop, done, failed) = (
            server.clone(),
            client.clone(),
            stop.clone(),
            done.clone(),
            failed.clone(),
        );
        load.push(tokio::spawn(async move {
            // Bounded: it ends when told to, or after 60 s whatever happens.
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let response = client
                    .post(format!("{}/api/episodes/search", server.base))
                    .json(&json!({"query": "Thema", "podcastId": "p", "limit": 50}))
                    .send()
                    .await;
                let ok = match response {
                    Ok(r) if r.status().is_success() => {
                        let body: Value = r.json().await.unwrap();
                        // 4 episodes in the old archive, 7 in the new: never anything else.
                        let total = body["total"].as_u64().unwrap();
                        let listed = body["episodes"].as_array().unwrap().len() as u64;
                        (total == 4 || total == 7) && listed == total
                    }
                    _ => false,
                };
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut slowest = Duration::ZERO;
    for round in 0..20 {
        let version = (round + 1) % 2;
        replace(&server, version);
        let took = until(&client, &server.base, "p", Some([12, 20][version])).await;
        slowest = slowest.max(took);
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (done, failed) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{done} searches during 20 replacements, slowest reload {slowest:?}");
    assert!(done > 100, "the load loop barely ran: {done}");
    assert_eq!(
        failed, 0,
        "{failed} of {done} searches failed or mixed archives"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_replacement_is_refused_and_the_old_archive_keeps_serving() {
    let server = start().await;
    let client = reqwest::Client::new();
    assert_eq!(items(&client, &server.base, "p").await, Some(12));
    // A partial file renamed into place, as a crashed copy would leave it.
    let good = std::fs::read(server.index.join("p/rag.podmap")).unwrap();
    let tmp = server.index.join("p/partial.tmp");
    std::fs::write(&tmp, &good[..good.len() / 2]).unwrap();
    std::fs::rename(&tmp, server.index.join("p/rag.podmap")).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        items(&client, &server.base, "p").await,
        Some(12),
        "the old archive must keep serving"
    );
    let search = client
        .post(format!("{}/api/episodes/search", server.base))
        .json(&json!({"query": "Thema", "podcastId": "p"}))
        .send()
        .await
        .unwrap();
    assert!(search.status().is_success());
    // A good file afterwards is picked up.
    replace(&server, 1);
    until(&client, &server.base, "p", Some(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_podcasts_appear_and_removed_ones_disappear() {
    let server = start().await;
    let client = reqwest::Client::new();
    common::small_root(&server.roots[0], "q", 5, 8);
    convert_podcast(
        &PodcastSource::at(&server.roots[0], "q"),
        &server.index.join("q/rag.podmap"),
    )
    .unwrap();
    until(&client, &server.base, "q", Some(5)).await;
    remove(&server.index.join("q"));
    until(&client, &server.base, "q", None).await;
    let gone = client
        .post(format!("{}/api/episodes/latest", server.base))
        .json(&json!({"podcastId": "q"}))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    assert_eq!(items(&client, &server.base, "p").await, Some(12));
}

/// The inode of `path`, to check that a test changes the served file in place.
fn inode(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
}

async fn status(client: &reqwest::Client, base: &str, route: &str, body: Value) -> u16 {
    client
        .post(format!("{base}{route}"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn search_total(client: &reqwest::Client, base: &str, podcast: &str) -> u64 {
    let body: Value = client
        .post(format!("{base}/api/episodes/search"))
        .json(&json!({"query": "Thema", "podcastId": podcast, "limit": 50}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["total"].as_u64().unwrap()
}

// Between a change in place and the reload these tests ask only `/api/podcasts`, which reads
// what was copied out of the archive at open and never the mapping the change broke.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_archive_written_in_place_is_served() {
    let server = start().await;
    let client = reqwest::Client::new();
    assert_eq!(search_total(&client, &server.base, "p").await, 4);
    let target = server.index.join("p/rag.podmap");
    let staged = server.index.parent().unwrap().join("staged.podmap");
    convert_podcast(&PodcastSource::at(&server.roots[1], "p"), &staged).unwrap();
    let before = inode(&target);
    std::fs::copy(&staged, &target).unwrap();
    assert_eq!(inode(&target), before, "the copy must write in place");
    until(&client, &server.base, "p", Some(20)).await;
    assert_eq!(search_total(&client, &server.base, "p").await, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_broken_in_place_is_withdrawn_until_a_valid_one_replaces_it() {
    let server = start().await;
    let client = reqwest::Client::new();
    common::small_root(&server.roots[0], "q", 5, 8);
    convert_podcast(
        &PodcastSource::at(&server.roots[0], "q"),
        &server.index.join("q/rag.podmap"),
    )
    .unwrap();
    until(&client, &server.base, "q", Some(5)).await;
    let target = server.index.join("p/rag.podmap");
    let before = inode(&target);

    // Truncated in place, as an interrupted `cp` or `rsync --inplace` leaves it.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&target)
        .unwrap();
    file.set_len(file.metadata().unwrap().len() / 2).unwrap();
    drop(file);
    assert_eq!(inode(&target), before);
    until(&client, &server.base, "p", None).await;
    assert_withdrawn(&client, &server.base).await;

    // A valid archive renamed into place is served again.
    replace(&server, 1);
    until(&client, &server.base, "p", Some(20)).await;
    assert_eq!(search_total(&client, &server.base, "p").await, 7);

    // Garbage written in place over the header, the length unchanged.
    let before = inode(&target);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&target)
        .unwrap();
    std::io::Write::write_all(&mut file, &[0xA5; 512]).unwrap();
    // Another mtime for certain, whatever the file system's clock granularity.
    file.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_000_000))
        .unwrap();
    drop(file);
    assert_eq!(inode(&target), before);
    until(&client, &server.base, "p", None).await;
    assert_withdrawn(&client, &server.base).await;

    replace(&server, 0);
    until(&client, &server.base, "p", Some(12)).await;
    assert_eq!(search_total(&client, &server.base, "p").await, 4);
}

/// `p` answers 404 on its routes (and has no speakers) while `q` keeps answering.
async fn assert_withdrawn(client: &reqwest::Client, base: &str) {
    let search = json!({"query": "Thema", "podcastId": "p"});
    assert_eq!(
        status(client, base, "/api/episodes/search", search).await,
        404
    );
    let latest = json!({"podcastId": "p"});
    assert_eq!(
        status(client, base, "/api/episodes/latest", latest).await,
        404
    );
    let speakers = client
        .get(format!("{base}/api/speakers?podcast_id=p"))
        .send()
        .await
        .unwrap();
    assert_eq!(speakers.status(), 200);
    assert_eq!(
        speakers.json::<Value>().await.unwrap(),
        json!({"speakers": []})
    );
    assert_eq!(items(client, base, "q").await, Some(5));
    assert_eq!(search_total(client, base, "q").await, 2, "q has 2 episodes");
    let cross = json!({"query": "Thema", "crossPodcast": true, "limit": 50});
    assert_eq!(
        status(client, base, "/api/episodes/search", cross).await,
        200
    );
}

fn remove(dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap();
}

/// Fails, with the reason, where this process cannot lease archives: the tests below would
/// then prove nothing.
fn assert_leases_work(path: &Path) {
    let (_, state) = MmapIndex::open_leased(path).unwrap();
    assert_eq!(
        state,
        LeaseState::Taken,
        "read leases unavailable for {}; these tests need Linux and the file's owner or \
         CAP_LEASE",
        path.display()
    );
}

/// Adds podcast `q` (5 items, 2 episodes) beside `p` and waits until it is served.
async fn add_q(server: &Server, client: &reqwest::Client) {
    common::small_root(&server.roots[0], "q", 5, 8);
    convert_podcast(
        &PodcastSource::at(&server.roots[0], "q"),
        &server.index.join("q/rag.podmap"),
    )
    .unwrap();
    until(client, &server.base, "q", Some(5)).await;
}

/// What the load saw: `q` must always answer; `p` answers from an intact archive or a clean
/// JSON error.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    /// Requests on `q` that failed: must stay 0.
    q_failed: AtomicUsize,
    /// Answers on `p` that were neither a correct result nor a clean JSON error: must stay 0.
    p_bad: AtomicUsize,
    /// Clean errors on `p` (withdrawn while written).
    p_errors: AtomicUsize,
}

/// Searches and listings on `p` and `q` from `tasks` clients until `stop` (at most 60 s and
/// 100 000 requests each).
fn load(
    server: &Arc<Server>,
    tasks: usize,
    p_totals: &'static [u64],
    stop: &Arc<AtomicBool>,
    seen: &Arc<Seen>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..tasks)
        .map(|task| {
            let (server, stop, seen) = (server.clone(), stop.clone(), seen.clone());
            let client = reqwest::Client::new();
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                for n in 0..100_000usize {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    let podcast = if (n + task) % 2 == 0 { "p" } else { "q" };
                    let (route, body) = if n % 3 == 2 {
                        ("/api/episodes/latest", json!({"podcastId": podcast}))
                    } else {
                        (
                            "/api/episodes/search",
                            json!({"query": "Thema", "podcastId": podcast, "limit": 50}),
                        )
                    };
                    let response = client
                        .post(format!("{}{route}", server.base))
                        .json(&body)
                        .send()
                        .await;
                    seen.requests.fetch_add(1, Ordering::Relaxed);
                    let (status, body) = match response {
                        Ok(r) => (r.status().as_u16(), r.json::<Value>().await.ok()),
                        Err(_) => (0, None),
                    };
                    let search = route.ends_with("search");
                    let result_ok = |totals: &[u64]| {
                        let Some(body) = &body else { return false };
                        if !search {
                            return body.is_object();
                        }
                        let total = body["total"].as_u64();
                        let listed = body["episodes"].as_array().map(|e| e.len() as u64);
                        total.is_some_and(|t| totals.contains(&t)) && listed == total
                    };
                    if podcast == "q" {
                        if status != 200 || !result_ok(&[2]) {
                            seen.q_failed.fetch_add(1, Ordering::Relaxed);
                        }
                    } else if status == 200 {
                        if !result_ok(p_totals) {
                            seen.p_bad.fetch_add(1, Ordering::Relaxed);
                        }
                    } else if (status == 404 || status >= 500)
                        && body.as_ref().is_some_and(|b| b["error"].is_string())
                    {
                        seen.p_errors.fetch_add(1, Ordering::Relaxed);
                    } else {
                        seen.p_bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect()
}

async fn finish(load: Vec<tokio::task::JoinHandle<()>>, stop: &AtomicBool, seen: &Seen) {
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let requests = seen.requests.load(Ordering::Relaxed);
    let (q_failed, p_bad) = (
        seen.q_failed.load(Ordering::Relaxed),
        seen.p_bad.load(Ordering::Relaxed),
    );
    eprintln!(
        "{requests} requests, {} clean errors on p",
        seen.p_errors.load(Ordering::Relaxed)
    );
    assert!(requests > 100, "the load loop barely ran: {requests}");
    assert_eq!(q_failed, 0, "{q_failed} requests on q failed");
    assert_eq!(
        p_bad, 0,
        "{p_bad} answers on p were neither correct nor clean errors"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_copied_over_in_place_under_load_is_withdrawn_then_served_anew() {
    let server = Arc::new(start().await);
    let client = reqwest::Client::new();
    add_q(&server, &client).await;
    let target = server.index.join("p/rag.podmap");
    assert_leases_work(&target);
    let staged = server.index.parent().unwrap().join("staged.podmap");
    convert_podcast(&PodcastSource::at(&server.roots[1], "p"), &staged).unwrap();
    let old = server.index.parent().unwrap().join("old.podmap");
    std::fs::copy(&target, &old).unwrap();

    let (stop, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(Seen::default()));
    let tasks = load(&server, 3, &[4, 7], &stop, &seen);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (from, want) in [(&staged, 20), (&old, 12), (&staged, 20)] {
        // `std::fs::copy` opens the target with O_TRUNC: the same inode, rewritten.
        let before = inode(&target);
        let started = Instant::now();
        std::fs::copy(from, &target).unwrap();
        let held = started.elapsed();
        assert_eq!(inode(&target), before, "the copy must write in place");
        let reload = until(&client, &server.base, "p", Some(want)).await;
        eprintln!("copy in place took {held:?}, the new content served {reload:?} later");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    finish(tasks, &stop, &seen).await;
    assert_eq!(search_total(&client, &server.base, "p").await, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_truncated_in_place_under_load_is_withdrawn() {
    let server = Arc::new(start().await);
    let client = reqwest::Client::new();
    add_q(&server, &client).await;
    let target = server.index.join("p/rag.podmap");
    assert_leases_work(&target);

    let (stop, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(Seen::default()));
    let tasks = load(&server, 3, &[4], &stop, &seen);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = inode(&target);
    // Cut to a quarter, as `truncate -s` to a smaller size: a read past the new end of the
    // mapping would be a SIGBUS.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&target)
        .unwrap();
    file.set_len(file.metadata().unwrap().len() / 4).unwrap();
    drop(file);
    assert_eq!(inode(&target), before);
    until(&client, &server.base, "p", None).await;
    // Load goes on against the withdrawn podcast for a while.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    finish(tasks, &stop, &seen).await;
    assert_withdrawn(&client, &server.base).await;

    replace(&server, 1);
    until(&client, &server.base, "p", Some(20)).await;
}
