//! A podcast answered from its memory-mapped archive: the [`Podcast`] trait over
//! [`MmapIndex`]'s typed views, with vector scans batched across concurrent requests.

use std::path::Path;

use super::{EpisodeInfo, Podcast, SpeakerInfo};
use crate::error::Result;
use crate::index::{Episode, EpisodeOrder, MmapIndex, Speaker};
use crate::search::{Hit, ScanBatcher, SearchIndex};
use crate::transcript::Window;

/// A podcast answered from its memory-mapped archive.
pub struct MmapPodcast {
    /// Copied out at open, like the index's header, so that listing the catalog never reads
    /// the mapping (a file changed in place may no longer back it).
    id: String,
    index: MmapIndex,
    scans: ScanBatcher,
}

impl MmapPodcast {
    pub fn open(path: &Path) -> Result<Self> {
        let index = MmapIndex::open(path)?;
        Ok(MmapPodcast {
            id: index.podcast_id().to_owned(),
            index,
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
        &self.id
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
