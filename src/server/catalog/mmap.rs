//! A podcast answered from its memory-mapped archive: the [`Podcast`] trait over
//! [`MmapIndex`]'s typed views, with vector scans batched across concurrent requests.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{EpisodeInfo, Podcast, SpeakerInfo};
use crate::error::{Error, Result};
use crate::index::{Episode, EpisodeOrder, LeaseState, MmapIndex, Speaker};
use crate::search::{EpisodeBest, ScanBatcher, SearchIndex};
use crate::transcript::Window;

/// A podcast answered from its memory-mapped archive.
pub struct MmapPodcast {
    /// Copied out at open, like the index's header, so that listing the catalog never reads
    /// the mapping (a file changed in place may no longer back it).
    id: String,
    index: MmapIndex,
    scans: ScanBatcher<Vec<EpisodeBest>>,
    /// Every byte checked by [`MmapIndex::verify`]: at once for a replacement, in the
    /// background for the archives served at start-up.
    verified: AtomicBool,
    /// Time taken by [`MmapPodcast::open`], or by [`MmapPodcast::open_verified`] in all.
    load_time: Duration,
}

impl MmapPodcast {
    /// Maps and checks the archive at `path`. Once this process handles SIGIO
    /// ([`super::guard_in_place_changes`]), also takes a read lease on it, so that a writer
    /// opening it in place waits until the podcast is withdrawn and dropped (see
    /// [`super::reload`]). A file open for writing elsewhere is refused for now (an
    /// [`Error::Io`] of kind `ResourceBusy`, see [`is_busy`]); where leases are unavailable
    /// the file is served anyway, with one WARN per file that its in-place changes are not
    /// guarded.
    pub fn open(path: &Path) -> Result<Self> {
        let started = Instant::now();
        // The lease is taken before the file is mapped or read: no writer can change or
        // truncate it while it is checked and served (a file being written is refused).
        let index = if super::reload::sigio_handled() {
            let (index, lease) = MmapIndex::open_leased(path)?;
            if let LeaseState::Unsupported(reason) = lease {
                warn_unguarded(path, &reason);
            }
            index
        } else {
            MmapIndex::open(path)?
        };
        // The folder's name is the id the podcast is served under (what `/api/podcasts` lists
        // and `podcastId` names), so an archive copied into another folder answers there.
        let id = path
            .parent()
            .and_then(Path::file_name)
            .and_then(|name| name.to_str())
            .map_or_else(|| index.podcast_id().to_owned(), str::to_owned);
        Ok(MmapPodcast {
            id,
            index,
            scans: ScanBatcher::default(),
            verified: AtomicBool::new(false),
            load_time: started.elapsed(),
        })
    }

    /// Opens `path` and reads all of it ([`MmapIndex::verify`]) before it is served.
    pub fn open_verified(path: &Path) -> Result<Self> {
        let started = Instant::now();
        let mut podcast = Self::open(path)?;
        Podcast::verify(&podcast)?;
        podcast.load_time = started.elapsed();
        Ok(podcast)
    }

    pub fn mapped(&self) -> &MmapIndex {
        &self.index
    }
}

/// Whether `error` (from [`MmapPodcast::open`]) says the file is being written.
pub fn is_busy(error: &Error) -> bool {
    matches!(error, Error::Io { cause, .. } if cause.kind() == io::ErrorKind::ResourceBusy)
}

/// Says once per path that a file is served without a lease.
fn warn_unguarded(path: &Path, reason: &str) {
    static WARNED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
    let first = WARNED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(path.to_path_buf());
    if first {
        tracing::warn!(
            path = %path.display(),
            "no read lease ({reason}): changes written into this file in place are not \
             guarded, only noticed within a reload interval; replace it by rename"
        );
    }
}

fn mmap_episode(e: Episode<'_>) -> EpisodeInfo {
    let owned = |s: Option<&str>| s.map(str::to_owned);
    EpisodeInfo {
        number: e.number(),
        title: owned(e.title()),
        date: owned(e.date()),
        duration_sec: e.duration_sec(),
        description: owned(e.description()),
        speakers: e
            .speakers()
            .map(|v| v.map(str::to_owned).collect())
            .unwrap_or_default(),
        topics: e.topics().map(str::to_owned).collect(),
        has_image: e.has_image(),
        has_transcript: e.has_transcript(),
        has_metadata: e.has_metadata(),
    }
}

impl Podcast for MmapPodcast {
    fn id(&self) -> &str {
        &self.id
    }

    fn index(&self) -> &dyn SearchIndex {
        &self.index
    }

    fn lease_broken(&self) -> bool {
        self.index.lease_broken()
    }

    fn verified(&self) -> bool {
        self.verified.load(Ordering::Acquire)
    }

    fn verify(&self) -> Result<()> {
        self.index.verify()?;
        self.verified.store(true, Ordering::Release);
        Ok(())
    }

    fn mapped_bytes(&self) -> u64 {
        self.index.header().file_len()
    }

    fn load_time(&self) -> Option<Duration> {
        Some(self.load_time)
    }

    fn episode(&self, number: u32) -> Result<Option<EpisodeInfo>> {
        Ok(self.index.episode(number)?.map(mmap_episode))
    }

    fn latest(&self, offset: usize, limit: usize) -> Result<(Vec<EpisodeInfo>, usize)> {
        let (page, total) = self
            .index
            .episode_page(EpisodeOrder::Number, offset, limit)?;
        Ok((page.into_iter().map(mmap_episode).collect(), total))
    }

    fn excerpt(&self, number: u32, window: &Window) -> Result<String> {
        self.index.excerpt(number, window)
    }

    fn best_per_episode(&self, embedding: &[f32]) -> Result<Vec<EpisodeBest>> {
        self.scans.best_per_episode(&self.index, embedding)
    }

    fn mapped(&self) -> Option<&MmapIndex> {
        Some(&self.index)
    }

    fn speakers(&self) -> Result<Vec<SpeakerInfo>> {
        let Some(speakers) = self.index.speakers()? else {
            return Ok(Vec::new());
        };
        Ok(speakers.iter().map(mmap_speaker).collect())
    }

    fn speaker(&self, slug: &str) -> Result<Option<SpeakerInfo>> {
        Ok(self.index.speaker(slug)?.map(mmap_speaker))
    }
}

fn mmap_speaker(r: Speaker<'_>) -> SpeakerInfo {
    SpeakerInfo {
        speaker: r.name().to_owned(),
        slug: r.slug().to_owned(),
        episodes_count: r.episodes_count(),
        utterances_count: r.utterances_count(),
        total_words: r.total_words(),
        has_profile: r.profile().is_some(),
        image: r.image().map(str::to_owned),
        profile: r.profile().map(str::to_owned),
    }
}
