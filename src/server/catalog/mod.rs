//! The podcasts a server answers for, and how they are (re)loaded.
//!
//! [`Podcast`] is what the HTTP handlers need from one podcast. [`MmapPodcast`] answers from an
//! archive ([`mmap`]); [`JsonPodcast`] loads the original JSON files the way the original
//! server does ([`json`]: the baseline benchmarks compare against, and a way to serve data not
//! converted yet).
//!
//! The [`Catalog`] is published through an `ArcSwap`: a request takes the current catalog once
//! and keeps it (and the mappings it holds) until it is done, while [`watch`] ([`reload`])
//! opens replaced archives in the background and publishes a new catalog only when they open
//! and check cleanly. A corrupt or partial replacement is logged and the previous archive
//! keeps serving. A served file opened for writing in place is withdrawn before the writer may
//! change it, thanks to a read lease (Linux), and re-opened once written; without a lease it is
//! re-checked after the change and withdrawn if it no longer opens (see [`reload`]).

pub mod json;
pub mod mmap;
pub mod reload;

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use crate::error::Result;
use crate::index::MmapIndex;
use crate::search::{EpisodeBest, EpisodeList, Filter, Hit, SearchIndex};
use crate::transcript::Window;

pub use json::JsonPodcast;
pub use mmap::MmapPodcast;
pub use reload::{
    guard_in_place_changes, load_mmap, load_mmap_with, refresh, watch, FileStamp, RELEASE_WAIT,
    RELOAD_INTERVAL,
};

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
    /// The best hits of every episode with an embedded item, scored against `embedding` (see
    /// [`crate::search::best`]), in no particular order. The default groups
    /// [`Podcast::score_all`]; an archive scans for them directly, in a pass shared with
    /// concurrent searches.
    fn best_per_episode(&self, embedding: &[f32]) -> Result<Vec<EpisodeBest>> {
        let list = EpisodeList::from_hits(self.index(), self.score_all(embedding)?);
        Ok(list.into_episodes())
    }
    /// The mapped archive, when there is one: a search of several podcasts scans their
    /// matrices in one pass.
    fn mapped(&self) -> Option<&MmapIndex> {
        None
    }
    /// `speakers/index.json` rows; empty without an index.
    fn speakers(&self) -> Result<Vec<SpeakerInfo>>;
    /// The row with this exact slug.
    fn speaker(&self, slug: &str) -> Result<Option<SpeakerInfo>> {
        Ok(self.speakers()?.into_iter().find(|s| s.slug == slug))
    }
    /// Whether the file behind this podcast is about to be written in place (its read lease
    /// is being broken): it must be withdrawn and dropped for the writer to proceed.
    fn lease_broken(&self) -> bool {
        false
    }
    /// Whether every byte has been checked (see [`crate::index::MmapIndex::verify`]); data
    /// parsed from JSON is whole by construction.
    fn verified(&self) -> bool {
        true
    }
    /// Checks every byte; afterwards [`Podcast::verified`] is true.
    fn verify(&self) -> Result<()> {
        Ok(())
    }
    /// Bytes mapped from the archive (a metric); 0 for data held in memory.
    fn mapped_bytes(&self) -> u64 {
        0
    }
    /// How long this podcast took to load (a metric), when it was measured.
    fn load_time(&self) -> Option<std::time::Duration> {
        None
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
    /// Archives open for writing elsewhere: tried again on every check, reported once.
    busy: BTreeMap<String, FileStamp>,
    /// Podcasts withdrawn because a writer is breaking their lease, until the last request
    /// reading them has let go (the writer waits until then).
    releasing: BTreeMap<String, Weak<dyn Podcast>>,
    /// Archives withdrawn because they failed verification, since start-up (a metric).
    pub withdrawn: u64,
    /// Archives published per podcast id since start-up, kept while a podcast is withdrawn
    /// (a metric: the reload count of each podcast).
    generations: BTreeMap<String, u64>,
    /// Whether archives are read into the page cache as they are loaded (`serve --preload`).
    preload: bool,
}

impl Catalog {
    pub fn get(&self, id: &str) -> Option<&Arc<dyn Podcast>> {
        self.podcasts.get(id)
    }

    /// Every podcast id published since start-up with the number of archives published
    /// under it: 1 for the first, one more for each replacement. Podcasts loaded otherwise
    /// (JSON) count as published once.
    pub fn generations(&self) -> BTreeMap<&str, u64> {
        let mut all: BTreeMap<&str, u64> =
            self.podcasts.keys().map(|id| (id.as_str(), 1)).collect();
        all.extend(self.generations.iter().map(|(id, n)| (id.as_str(), *n)));
        all
    }
}
