//! The podcasts a server answers for, and how they are (re)loaded.
//!
//! [`Podcast`] is what the HTTP handlers need from one podcast. [`MmapPodcast`] answers from an
//! archive; [`JsonPodcast`] loads the original JSON files the way the original server does (the
//! baseline benchmarks compare against, and a way to serve data not converted yet).
//!
//! The [`Catalog`] is published through an `ArcSwap`: a request takes the current catalog once
//! and keeps it (and the mappings it holds) until it is done, while [`watch`] opens replaced
//! archives in the background and publishes a new catalog only when they open and check
//! cleanly. A corrupt or partial file is logged and the previous archive keeps serving.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::archive::records::duration_seconds;
use crate::error::Result;
use crate::index::{list_archives, Episode, EpisodeOrder, MmapIndex, Speaker};
use crate::input::library::{self, LibraryScan};
use crate::json_index::JsonIndex;
use crate::search::{Filter, Hit, ScanBatcher, SearchIndex};
use crate::transcript::{self, Window};

/// Episode metadata as the API returns it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EpisodeInfo {
    pub number: u32,
    /// `None` when the episode has no `<n>.json`.
    pub title: Option<String>,
    pub date: Option<String>,
    pub duration_sec: Option<u64>,
    pub description: Option<String>,
    pub speakers: Vec<String>,
    pub topics: Vec<String>,
    pub has_image: bool,
    pub has_transcript: bool,
    pub has_metadata: bool,
}

/// A row of `/api/speakers`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeakerInfo {
    pub speaker: String,
    pub slug: String,
    pub episodes_count: u64,
    pub utterances_count: u64,
    pub total_words: u64,
    pub has_profile: bool,
    pub image: Option<String>,
    pub profile: Option<String>,
}

/// What the HTTP API needs from one podcast.
pub trait Podcast: Send + Sync {
    fn id(&self) -> &str;
    fn index(&self) -> &dyn SearchIndex;
    fn episode(&self, number: u32) -> Result<Option<EpisodeInfo>>;
    /// Episodes with metadata, highest number first: a page and the total.
    fn latest(&self, offset: usize, limit: usize) -> Result<(Vec<EpisodeInfo>, usize)>;
    fn excerpt(&self, number: u32, window: &Window) -> Result<String>;
    /// Every item with an embedding, scored against `embedding`, best first.
    fn score_all(&self, embedding: &[f32]) -> Result<Vec<Hit>> {
        self.index().score_all(embedding, &Filter::all())
    }
    /// `speakers/index.json` rows; empty without an index.
    fn speakers(&self) -> Result<Vec<SpeakerInfo>>;
    /// The row with this exact slug.
    fn speaker(&self, slug: &str) -> Result<Option<SpeakerInfo>> {
        Ok(self.speakers()?.into_iter().find(|s| s.slug == slug))
    }
}

/// A podcast answered from its memory-mapped archive.
pub struct MmapPodcast {
    index: MmapIndex,
    scans: ScanBatcher,
}

impl MmapPodcast {
    pub fn open(path: &Path) -> Result<Self> {
        Ok(MmapPodcast {
            index: MmapIndex::open(path)?,
            scans: ScanBatcher::default(),
        })
    }

    pub fn mapped(&self) -> &MmapIndex {
        &self.index
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
        self.index.podcast_id()
    }

    fn index(&self) -> &dyn SearchIndex {
        &self.index
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

    fn score_all(&self, embedding: &[f32]) -> Result<Vec<Hit>> {
        self.scans.score_all(&self.index, embedding)
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

/// A podcast loaded from the original JSON files, the original way: the whole RAG file parsed
/// into memory at start, episode metadata read once, transcripts parsed on every request.
pub struct JsonPodcast {
    id: String,
    index: JsonIndex,
    episodes: BTreeMap<u32, EpisodeInfo>,
    transcripts: HashMap<u32, PathBuf>,
    speakers: Vec<SpeakerInfo>,
}

impl JsonPodcast {
    pub fn load(data_root: &Path, id: &str) -> Result<Self> {
        let index = JsonIndex::load_podcast(data_root, id)?;
        let dir = data_root.join("podcasts").join(id);
        let scan = if dir.is_dir() {
            library::read_episode_dir(&dir)?
        } else {
            LibraryScan::default()
        };
        let mut episodes: BTreeMap<u32, EpisodeInfo> = BTreeMap::new();
        for (&number, path) in &scan.metadata {
            let m = library::read_episode_meta(path)?;
            episodes.insert(
                number,
                EpisodeInfo {
                    number,
                    title: m.title,
                    date: m.date,
                    duration_sec: m.duration.map(duration_seconds),
                    description: m.description,
                    speakers: m.speakers.unwrap_or_default(),
                    has_metadata: true,
                    ..EpisodeInfo::default()
                },
            );
        }
        for i in 0..index.len() {
            let item = index.item(i)?;
            let episode = episodes
                .entry(item.episode_number)
                .or_insert_with(|| EpisodeInfo {
                    number: item.episode_number,
                    ..EpisodeInfo::default()
                });
            if let Some(topic) = item.topic.filter(|t| !t.trim().is_empty()) {
                if !episode.topics.iter().any(|t| t == topic) {
                    episode.topics.push(topic.to_owned());
                }
            }
        }
        for (number, episode) in episodes.iter_mut() {
            episode.has_image = scan.images.contains_key(number);
            episode.has_transcript = scan.transcripts.contains_key(number);
        }
        let speakers = library::read_speakers(&scan)?
            .map(|rows| {
                rows.into_iter()
                    .map(|r| SpeakerInfo {
                        has_profile: r.profile.is_some(),
                        speaker: r.speaker,
                        slug: r.slug,
                        episodes_count: r.episodes_count,
                        utterances_count: r.utterances_count,
                        total_words: r.total_words,
                        image: r.image,
                        profile: r.profile,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(JsonPodcast {
            id: id.to_owned(),
            index,
            episodes,
            transcripts: scan.transcripts.into_iter().collect(),
            speakers,
        })
    }
}

impl Podcast for JsonPodcast {
    fn id(&self) -> &str {
        &self.id
    }

    fn index(&self) -> &dyn SearchIndex {
        &self.index
    }

    fn episode(&self, number: u32) -> Result<Option<EpisodeInfo>> {
        Ok(self.episodes.get(&number).cloned())
    }

    fn latest(&self, offset: usize, limit: usize) -> Result<(Vec<EpisodeInfo>, usize)> {
        let with_meta: Vec<&EpisodeInfo> = self
            .episodes
            .values()
            .rev()
            .filter(|e| e.has_metadata)
            .collect();
        let page = with_meta
            .iter()
            .skip(offset)
            .take(limit)
            .map(|e| (*e).clone())
            .collect();
        Ok((page, with_meta.len()))
    }

    fn excerpt(&self, number: u32, window: &Window) -> Result<String> {
        match self.transcripts.get(&number) {
            Some(path) => Ok(transcript::json::excerpt(
                &transcript::json::load(path)?,
                window,
            )),
            None => Ok(transcript::placeholder(window)),
        }
    }

    fn speakers(&self) -> Result<Vec<SpeakerInfo>> {
        Ok(self.speakers.clone())
    }
}

/// The podcasts being served, by id.
#[derive(Default)]
pub struct Catalog {
    pub podcasts: BTreeMap<String, Arc<dyn Podcast>>,
    /// What each mmap archive was opened from, to notice replacements.
    stamps: BTreeMap<String, FileStamp>,
    /// Archives that failed to open, so each bad file is reported once.
    failed: BTreeMap<String, FileStamp>,
}

impl Catalog {
    pub fn get(&self, id: &str) -> Option<&Arc<dyn Podcast>> {
        self.podcasts.get(id)
    }

    /// Loads every podcast of `data_root` from JSON (slow, by design).
    pub fn load_json(data_root: &Path) -> Result<Self> {
        let mut catalog = Catalog::default();
        for source in crate::input::discover_podcasts(data_root)? {
            if source.rag_file.is_none() {
                continue; // the original serves only podcasts with a RAG file
            }
            let podcast = JsonPodcast::load(data_root, &source.id)?;
            catalog
                .podcasts
                .insert(source.id.clone(), Arc::new(podcast));
        }
        Ok(catalog)
    }
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
