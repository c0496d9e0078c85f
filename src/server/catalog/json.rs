//! A podcast loaded from the original JSON files, the original way: the baseline the
//! benchmarks compare against, and a way to serve data not converted yet.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Catalog, EpisodeInfo, Podcast, SpeakerInfo};
use crate::archive::records::duration_seconds;
use crate::error::Result;
use crate::input::library::{self, LibraryScan};
use crate::json_index::JsonIndex;
use crate::search::SearchIndex;
use crate::transcript::{self, Window};

/// A podcast loaded from the original JSON files, the original way: the whole RAG file parsed
/// into memory at start, episode metadata read once, transcripts parsed on every request.
pub struct JsonPodcast {
    id: String,
    index: JsonIndex,
    episodes: BTreeMap<u32, EpisodeInfo>,
    transcripts: HashMap<u32, PathBuf>,
    speakers: Vec<SpeakerInfo>,
    /// Time [`JsonPodcast::load`] took: the cost the archive path avoids.
    load_time: std::time::Duration,
}

impl JsonPodcast {
    pub fn load(data_root: &Path, id: &str) -> Result<Self> {
        let started = std::time::Instant::now();
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
                    duration_sec: m.duration.filter(|d| d.len() == 3).map(duration_seconds),
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
            load_time: started.elapsed(),
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

    fn load_time(&self) -> Option<std::time::Duration> {
        Some(self.load_time)
    }
}

impl Catalog {
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
