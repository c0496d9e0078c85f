//! Hot reload: the index directory is checked every [`RELOAD_INTERVAL`]; replaced, new and
//! removed archives are opened and checked in the background, and a new [`Catalog`] is
//! published only when something changed.

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
}

/// Opens what changed in `index_dir` since `current`. Returns the new catalog when anything
/// changed. Archives that fail to open are logged (once per file) and skipped: their previous
/// version, if any, keeps serving.
pub fn refresh(index_dir: &Path, current: &Catalog) -> Option<Catalog> {
    let failed = &current.failed;
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
        let unchanged = current.stamps.get(&id) == Some(&stamp);
        if unchanged || failed.get(&id) == Some(&stamp) {
            if failed.get(&id) == Some(&stamp) {
                next.failed.insert(id.clone(), stamp);
            }
            if let (Some(podcast), Some(old)) = (current.podcasts.get(&id), current.stamps.get(&id))
            {
                next.podcasts.insert(id.clone(), podcast.clone());
                next.stamps.insert(id, *old);
            }
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
                tracing::error!(podcast = %id, "refused archive, previous version (if any) keeps serving: {e}");
                next.failed.insert(id.clone(), stamp);
                if let (Some(podcast), Some(old)) =
                    (current.podcasts.get(&id), current.stamps.get(&id))
                {
                    next.podcasts.insert(id.clone(), podcast.clone());
                    next.stamps.insert(id, *old);
                }
            }
        }
    }
    let removed = current
        .podcasts
        .keys()
        .any(|id| !next.podcasts.contains_key(id));
    if removed {
        tracing::info!("podcasts removed from the index directory are no longer served");
    }
    (changed || removed).then_some(next)
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
