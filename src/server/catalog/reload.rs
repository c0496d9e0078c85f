//! Hot reload: the index directory is checked every [`RELOAD_INTERVAL`]; replaced, new and
//! removed archives are opened and checked in the background, and a new [`Catalog`] is
//! published only when something changed.
//!
//! How a change is told apart matters, because a mapping shows whatever its file holds:
//!
//! - **Replaced by rename** (a new inode, as `podmap convert` writes): the served mapping still
//!   holds the old, intact file. The new file is opened and checked; if it is refused, the
//!   error is logged and the previous archive keeps serving.
//! - **Changed in place** (the same inode with another size or mtime: `cp` over it,
//!   `truncate`, `rsync --inplace`): the served mapping now shows the changed bytes and can no
//!   longer be trusted. The file is re-opened and re-checked; if that fails, the podcast is
//!   withdrawn (its routes answer 404, an ERROR names the file and the reason) until a valid
//!   file appears there. Without inode numbers (non-Unix) every change counts as in place.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use super::{Catalog, MmapPodcast};
use crate::error::Result;
use crate::index::list_archives;

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
    let archives = match list_archives(index_dir) {
        Ok(archives) => archives,
        Err(e) => {
            tracing::error!("cannot list archives: {e}");
            return None;
        }
    };
    let mut next = Catalog::default();
    let mut changed = false;
    for (id, path) in archives {
        let Some(stamp) = FileStamp::of(&path) else {
            continue;
        };
        let served = current.stamps.get(&id).copied();
        let already_failed = current.failed.get(&id) == Some(&stamp);
        if served == Some(stamp) || already_failed {
            if already_failed {
                next.failed.insert(id.clone(), stamp);
            }
            next.keep(current, &id);
            continue;
        }
        changed = true;
        match MmapPodcast::open(&path) {
            Ok(podcast) => {
                tracing::info!(podcast = %id, path = %path.display(), "serving archive");
                next.podcasts.insert(id.clone(), Arc::new(podcast));
                next.stamps.insert(id, stamp);
            }
            Err(e) => {
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
    let removed = current
        .podcasts
        .keys()
        .any(|id| !next.podcasts.contains_key(id) && !next.failed.contains_key(id));
    if removed {
        tracing::info!("podcasts removed from the index directory are no longer served");
    }
    (changed || removed).then_some(next)
}

impl Catalog {
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

/// Checks `index_dir` every [`RELOAD_INTERVAL`] and publishes a new catalog when archives
/// were replaced, added or removed. Runs until the process ends.
pub async fn watch(index_dir: PathBuf, catalog: Arc<ArcSwap<Catalog>>) {
    let mut tick = tokio::time::interval(RELOAD_INTERVAL);
    loop {
        tick.tick().await;
        let (dir, current) = (index_dir.clone(), catalog.load_full());
        match tokio::task::spawn_blocking(move || refresh(&dir, &current)).await {
            Ok(Some(next)) => catalog.store(Arc::new(next)),
            Ok(None) => {}
            Err(e) => tracing::error!("reload task failed: {e}"),
        }
    }
}

/// The first catalog of an index directory (archives that fail to open are logged and left
/// out).
pub fn load_mmap(index_dir: &Path) -> Result<Catalog> {
    list_archives(index_dir)?; // a missing directory is an error at start-up
    Ok(refresh(index_dir, &Catalog::default()).unwrap_or_default())
}
