//! Hot reload: the index directory is checked every [`RELOAD_INTERVAL`]; replaced, new and
//! removed archives are opened and checked in the background, and a new [`Catalog`] is
//! published only when something changed.
//!
//! How a change is told apart matters, because a mapping shows whatever its file holds:
//!
//! - **Replaced by rename** (a new inode, as `podmap convert` writes): the served mapping still
//!   holds the old, intact file. The new file is opened and checked; if it is refused, the
//!   error is logged and the previous archive keeps serving.
//! - **Written in place, with a lease** (Linux; see [`crate::index::MmapIndex::open_leased`]):
//!   `cp` over the file, `truncate`, `rsync --inplace` or `dd conv=notrunc` opens it for
//!   writing, and the kernel holds that `open` and sends this process SIGIO. [`watch`] wakes
//!   up, finds the podcasts whose lease is being broken, and publishes a catalog without them
//!   at once (their routes answer 404; an ERROR names the file). A task then waits until no
//!   request holds the old mapping any more (at most [`RELEASE_WAIT`]) and drops it, which
//!   releases the lease: the writer proceeds. While the file is open for writing, it cannot
//!   be leased again and is not served; once the writer has closed it, it is opened, checked
//!   and served again. No request ever reads pages the writer changes.
//! - **Changed in place, without a lease** (not the owner, a file system without leases,
//!   non-Linux; one WARN per file says so): the served mapping shows the changed bytes from
//!   the moment they are written, and requests reading it then may see garbage or fault. The
//!   change (the same inode with another size or mtime) is noticed on the next check: the
//!   file is re-opened and re-checked; if that fails, the podcast is withdrawn until a valid
//!   file appears there. Without inode numbers (non-Unix) every change counts as in place.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use super::mmap::is_busy;
use super::{Catalog, MmapPodcast, Podcast};
use crate::error::Result;
use crate::index::{archive_path, list_archives, MmapIndex, WarmScope};
use crate::server::metrics::{self, Refusal};

/// Whether this process handles SIGIO, so that archives may be leased.
static SIGIO_HANDLED: AtomicBool = AtomicBool::new(false);

pub(super) fn sigio_handled() -> bool {
    SIGIO_HANDLED.load(Ordering::Acquire)
}

#[cfg(unix)]
type SigIo = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type SigIo = ();

/// Installs tokio's SIGIO handler (which replaces the default action, terminating the
/// process, for the rest of its life) and returns a listener.
fn listen_sigio() -> std::io::Result<SigIo> {
    #[cfg(unix)]
    let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::io())?;
    #[cfg(not(unix))]
    let signal = ();
    SIGIO_HANDLED.store(true, Ordering::Release);
    Ok(signal)
}

async fn next_sigio(signal: &mut Option<SigIo>) -> Option<()> {
    match signal {
        #[cfg(unix)]
        Some(signal) => signal.recv().await,
        _ => std::future::pending().await,
    }
}

/// Makes SIGIO harmless for this process, so that [`MmapPodcast::open`] takes a read lease on
/// every archive it opens from now on (the kernel announces a writer of a leased file with
/// SIGIO, which terminates a process by default). Idempotent. Must run inside a tokio runtime
/// with I/O enabled (it panics otherwise, like `tokio::signal`). [`load_mmap`] (when called
/// inside a runtime) and [`watch`] call it; `podmap serve` calls it before opening anything.
pub fn guard_in_place_changes() -> std::io::Result<()> {
    listen_sigio().map(drop)
}

/// Identity of an archive file: a rename puts a new inode (and usually a new mtime) there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some(FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode,
        })
    }

    /// Whether `self` and `other` are the same file (inode), whatever its contents.
    fn same_file(&self, other: &FileStamp) -> bool {
        self.inode == other.inode
    }
}

/// Opens what changed in `index_dir` since `current`. Returns the new catalog when anything
/// changed. Archives that fail to open are logged (once per file state) and skipped: a
/// replacement by rename leaves the previous version serving, a served file changed in place
/// is withdrawn (see the module docs).
pub fn refresh(index_dir: &Path, current: &Catalog) -> Option<Catalog> {
    refresh_with(index_dir, current, Verify::Before)
}

/// When archives are read whole ([`MmapPodcast::open_verified`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    /// Before a new or replaced archive is published, and for any served archive not yet
    /// verified: what every check after start-up does, off the request path.
    Before,
    /// At start-up: archives are served at once and verified by the next check.
    Later,
}

fn refresh_with(index_dir: &Path, current: &Catalog, verify: Verify) -> Option<Catalog> {
    let archives = match list_archives(index_dir) {
        Ok(archives) => archives,
        Err(e) => {
            tracing::error!("cannot list archives: {e}");
            return None;
        }
    };
    let mut next = Catalog {
        withdrawn: current.withdrawn,
        generations: current.generations.clone(),
        preload: current.preload,
        ..Catalog::default()
    };
    let mut changed = false;
    for (id, path) in archives {
        let Some(stamp) = FileStamp::of(&path) else {
            continue;
        };
        if let Some(old) = current.releasing.get(&id) {
            if old.strong_count() > 0 {
                // Withdrawn for a writer that waits until this mapping is dropped.
                next.releasing.insert(id, old.clone());
                continue;
            }
        }
        let served = current.stamps.get(&id).copied();
        let already_failed = current.failed.get(&id) == Some(&stamp);
        if served == Some(stamp) || already_failed {
            if already_failed {
                next.failed.insert(id.clone(), stamp);
            }
            next.keep(current, &id);
            if verify == Verify::Before && !already_failed {
                changed |= next.verify_kept(&id, &path, stamp);
            }
            continue;
        }
        let opened = match verify {
            Verify::Before => MmapPodcast::open_verified(&path),
            Verify::Later => MmapPodcast::open(&path),
        };
        match opened {
            Ok(podcast) => {
                changed = true;
                if next.preload {
                    preload(&id, podcast.mapped());
                }
                tracing::info!(podcast = %id, path = %path.display(), "serving archive");
                *next.generations.entry(id.clone()).or_default() += 1;
                next.podcasts.insert(id.clone(), Arc::new(podcast));
                next.stamps.insert(id, stamp);
            }
            Err(e) if is_busy(&e) => {
                // Being written: tried again on every check, reported once per file state.
                if current.busy.get(&id) != Some(&stamp) {
                    changed = true;
                    tracing::warn!(podcast = %id, path = %path.display(), "{e}");
                }
                next.busy.insert(id.clone(), stamp);
                match served {
                    Some(old) if !old.same_file(&stamp) => next.keep(current, &id),
                    Some(_) => changed = true,
                    None => {}
                }
            }
            Err(e) => {
                changed = true;
                metrics::archive_refused(&id, Refusal::of(&e));
                next.failed.insert(id.clone(), stamp);
                match served {
                    Some(old) if old.same_file(&stamp) => tracing::error!(
                        podcast = %id,
                        path = %path.display(),
                        "archive changed in place and refused, no longer served until a valid \
                         archive replaces it: {e}"
                    ),
                    Some(_) => {
                        tracing::error!(
                            podcast = %id,
                            path = %path.display(),
                            "refused archive, the previous version keeps serving: {e}"
                        );
                        next.keep(current, &id);
                    }
                    None => tracing::error!(
                        podcast = %id,
                        path = %path.display(),
                        "refused archive: {e}"
                    ),
                }
            }
        }
    }
    let removed: Vec<&String> = current
        .podcasts
        .keys()
        .filter(|id| {
            !next.podcasts.contains_key(*id)
                && !next.failed.contains_key(*id)
                && !next.busy.contains_key(*id)
        })
        .collect();
    for id in &removed {
        metrics::archive_refused(id, Refusal::Deleted);
    }
    let removed = !removed.is_empty();
    if removed {
        tracing::info!("podcasts removed from the index directory are no longer served");
    }
    (changed || removed).then_some(next)
}

impl Catalog {
    /// Verifies the served podcast `id` if it has not been yet; withdraws it (ERROR, and
    /// counted in [`Catalog::withdrawn`]) when it fails. Returns whether it was withdrawn.
    fn verify_kept(&mut self, id: &str, path: &Path, stamp: FileStamp) -> bool {
        let Some(podcast) = self.podcasts.get(id).filter(|p| !p.verified()) else {
            return false;
        };
        let Err(e) = podcast.verify() else {
            tracing::info!(podcast = %id, "archive verified");
            return false;
        };
        metrics::archive_refused(id, Refusal::of(&e));
        tracing::error!(
            podcast = %id,
            path = %path.display(),
            "archive failed verification and is withdrawn until a valid one replaces it: {e}"
        );
        self.podcasts.remove(id);
        self.stamps.remove(id);
        self.failed.insert(id.to_owned(), stamp);
        self.withdrawn += 1;
        true
    }

    /// Served podcasts whose archives have not been read whole yet.
    pub fn unverified(&self) -> Vec<&str> {
        self.podcasts
            .iter()
            .filter(|(_, p)| !p.verified())
            .map(|(id, _)| id.as_str())
            .collect()
    }

    /// A copy of the catalog (the same podcasts, shared).
    fn snapshot(&self) -> Catalog {
        Catalog {
            podcasts: self.podcasts.clone(),
            stamps: self.stamps.clone(),
            failed: self.failed.clone(),
            busy: self.busy.clone(),
            releasing: self.releasing.clone(),
            withdrawn: self.withdrawn,
            generations: self.generations.clone(),
            preload: self.preload,
        }
    }

    /// Keeps serving `current`'s podcast `id`, if it serves one, from the file it was opened
    /// from.
    fn keep(&mut self, current: &Catalog, id: &str) {
        if let (Some(podcast), Some(stamp)) = (current.podcasts.get(id), current.stamps.get(id)) {
            self.podcasts.insert(id.to_owned(), podcast.clone());
            self.stamps.insert(id.to_owned(), *stamp);
        }
    }
}

/// How often the index directory is checked for replaced, new or removed archives.
pub const RELOAD_INTERVAL: Duration = Duration::from_millis(500);

/// How long a podcast withdrawn for a writer waits for the requests still reading its mapping
/// before this process stops watching them. Searches and listings take milliseconds; the
/// bound is far below the kernel's `lease-break-time` (45 s by default), after which the
/// kernel lets the writer through whatever this process does. A request that still holds the
/// mapping after the bound (a long streamed chat) keeps the lease until it ends, and the
/// writer with it, up to that kernel limit.
pub const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// Checks `index_dir` every [`RELOAD_INTERVAL`], and at once on SIGIO (a writer is waiting
/// for a leased archive: see the module docs), and publishes a new catalog when archives were
/// replaced, added, removed or are about to be written in place. Installs the SIGIO handler
/// itself ([`guard_in_place_changes`]). Runs until the process ends.
pub async fn watch(index_dir: PathBuf, catalog: Arc<ArcSwap<Catalog>>) {
    let mut sigio = match listen_sigio() {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!("cannot listen for SIGIO, archives are not leased: {e}");
            None
        }
    };
    let mut tick = tokio::time::interval(RELOAD_INTERVAL);
    loop {
        // A SIGIO missed (say, one sent before this listener existed) is made up for by the
        // lease check on the next tick: the writer waits meanwhile.
        tokio::select! {
            _ = tick.tick() => {}
            Some(()) = next_sigio(&mut sigio) => {}
        }
        withdraw_broken(&index_dir, &catalog);
        let (dir, current) = (index_dir.clone(), catalog.load_full());
        match tokio::task::spawn_blocking(move || refresh(&dir, &current)).await {
            Ok(Some(next)) => catalog.store(Arc::new(next)),
            Ok(None) => {}
            Err(e) => tracing::error!("reload task failed: {e}"),
        }
    }
}

/// Publishes a catalog without the podcasts whose lease a writer is breaking, and lets each
/// go once no request reads it any more ([`release`]).
fn withdraw_broken(index_dir: &Path, catalog: &ArcSwap<Catalog>) {
    let current = catalog.load_full();
    let broken: Vec<String> = current
        .podcasts
        .iter()
        .filter(|(_, podcast)| podcast.lease_broken())
        .map(|(id, _)| id.clone())
        .collect();
    if broken.is_empty() {
        return;
    }
    let mut next = current.snapshot();
    let mut withdrawn = Vec::new();
    for id in broken {
        let Some(podcast) = next.podcasts.remove(&id) else {
            continue;
        };
        next.stamps.remove(&id);
        next.releasing.insert(id.clone(), Arc::downgrade(&podcast));
        let path = archive_path(index_dir, &id);
        tracing::error!(
            podcast = %id,
            path = %path.display(),
            "archive is being changed in place; withdrawn until it is replaced"
        );
        withdrawn.push((id, path, podcast));
    }
    catalog.store(Arc::new(next));
    drop(current);
    for (id, path, podcast) in withdrawn {
        tokio::spawn(release(id, path, podcast));
    }
}

/// Waits until `podcast` is held by nobody else (polling every millisecond, at most
/// [`RELEASE_WAIT`]), then drops it: the mapping is unmapped and the file closed, which
/// releases the lease and lets the writer proceed.
async fn release(id: String, path: PathBuf, podcast: Arc<dyn Podcast>) {
    let started = Instant::now();
    while Arc::strong_count(&podcast) > 1 && started.elapsed() < RELEASE_WAIT {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let others = Arc::strong_count(&podcast) - 1;
    drop(podcast);
    let waited = started.elapsed().as_secs_f64() * 1e3;
    if others == 0 {
        tracing::info!(
            podcast = %id,
            path = %path.display(),
            "old mapping released after {waited:.1} ms: the writer proceeds"
        );
    } else {
        tracing::warn!(
            podcast = %id,
            path = %path.display(),
            "{others} request(s) still read the old mapping after {waited:.0} ms; the writer \
             proceeds when they end, or when the kernel's lease-break-time passes"
        );
    }
}

/// The first catalog of an index directory (archives that fail to open are logged and left
/// out). Inside a tokio runtime, installs the SIGIO handler first
/// ([`guard_in_place_changes`]), so the archives are leased.
pub fn load_mmap(index_dir: &Path) -> Result<Catalog> {
    load_mmap_with(index_dir, false)
}

/// [`load_mmap`], and with `preload` every archive's matrix is read into the page cache
/// before it is served, now and after every reload ([`MmapIndex::warm`]; `serve --preload`).
/// The first catalog is loaded before the server listens, so a server that answers at all
/// answers its first searches from memory.
pub fn load_mmap_with(index_dir: &Path, preload: bool) -> Result<Catalog> {
    list_archives(index_dir)?; // a missing directory is an error at start-up
    if tokio::runtime::Handle::try_current().is_ok() {
        if let Err(e) = guard_in_place_changes() {
            tracing::warn!("cannot listen for SIGIO, archives are not leased: {e}");
        }
    }
    let first = Catalog {
        preload,
        ..Catalog::default()
    };
    Ok(refresh_with(index_dir, &first, Verify::Later).unwrap_or(first))
}

/// Reads an archive's vectors (matrix and codes) into the page cache, logging the bytes and
/// the time.
fn preload(id: &str, index: &MmapIndex) {
    let started = Instant::now();
    let bytes = index.warm(WarmScope::Vectors, |_| {});
    tracing::info!(
        podcast = %id,
        bytes,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "preloaded the vectors into the page cache"
    );
}
