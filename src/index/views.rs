//! Typed, zero-copy views of an archive's records.
//!
//! Each view borrows from the mapping (`&'a str` straight into the file's pages) and exposes
//! plain Rust types, so code above the index never sees rkyv's archived types or its
//! little-endian wrappers, and the record layout can change without touching the callers.

use crate::archive::records::{
    duration_seconds, ArchivedEpisodeMetaRecord, ArchivedEpisodeRecord, ArchivedItemRecord,
    ArchivedManifestRecord, ArchivedSpeakerRecord, ArchivedSpeakersRecord,
    ArchivedTranscriptRecord, NO_SPEAKER,
};
use crate::search::ItemView;
use crate::transcript::{Lines, Window, EPSILON};

fn text(s: &rkyv::option::ArchivedOption<rkyv::string::ArchivedString>) -> Option<&str> {
    s.as_ref().map(|s| s.as_str())
}

/// A RAG item with every field of the original, for export and round-trip checks; search
/// results use the lighter [`ItemView`].
#[derive(Clone, Copy)]
pub struct Item<'a>(pub(super) &'a ArchivedItemRecord);

impl<'a> Item<'a> {
    pub fn id(&self) -> u32 {
        self.0.id.to_native()
    }
    pub fn key(&self) -> Option<&'a str> {
        text(&self.0.key)
    }
    pub fn episode_number(&self) -> u32 {
        self.0.episode_number.to_native()
    }
    pub fn duration_sec(&self) -> Option<f64> {
        self.0.duration_sec.as_ref().map(|d| d.to_native())
    }
    /// `source`, as compact JSON text.
    pub fn source_json(&self) -> Option<&'a str> {
        text(&self.0.source_json)
    }
    /// Whether the item has a `subject` object at all (its fields may still be null).
    pub fn has_subject(&self) -> bool {
        self.0.subject.is_some()
    }
    /// The fields search results and chat sources use.
    pub fn view(&self) -> ItemView<'a> {
        let item = self.0;
        let subject = item.subject.as_ref();
        ItemView {
            id: item.id.to_native(),
            episode_number: item.episode_number.to_native(),
            episode_title: text(&item.episode_title),
            topic: text(&item.topic),
            subject_coarse: subject.and_then(|s| text(&s.coarse)),
            subject_fine: subject.and_then(|s| text(&s.fine)),
            start_sec: item.start_sec.to_native(),
            end_sec: item.end_sec.to_native(),
            start_hms: text(&item.start_hms),
            end_hms: text(&item.end_hms),
            summary: text(&item.summary),
            text: text(&item.text),
        }
    }
}

/// The RAG file's top-level fields.
#[derive(Clone, Copy)]
pub struct Manifest<'a>(pub(super) &'a ArchivedManifestRecord);

impl<'a> Manifest<'a> {
    pub fn schema_version(&self) -> Option<u64> {
        self.0.schema_version.as_ref().map(|v| v.to_native())
    }
    pub fn created_at(&self) -> Option<&'a str> {
        text(&self.0.created_at)
    }
    pub fn updated_at(&self) -> Option<&'a str> {
        text(&self.0.updated_at)
    }
    pub fn embedding_model(&self) -> Option<&'a str> {
        text(&self.0.embedding_model)
    }
    pub fn embedding_dimensions(&self) -> Option<u64> {
        self.0.embedding_dimensions.as_ref().map(|v| v.to_native())
    }
    /// `embeddingInfo`, as compact JSON text.
    pub fn embedding_info_json(&self) -> Option<&'a str> {
        text(&self.0.embedding_info_json)
    }
    /// `source`, as compact JSON text.
    pub fn source_json(&self) -> Option<&'a str> {
        text(&self.0.source_json)
    }
    /// `stats`, as compact JSON text.
    pub fn stats_json(&self) -> Option<&'a str> {
        text(&self.0.stats_json)
    }
}

/// An episode: its `<n>.json` metadata when it has one, file flags and topics.
#[derive(Clone, Copy)]
pub struct Episode<'a>(pub(super) &'a ArchivedEpisodeRecord);

impl<'a> Episode<'a> {
    fn meta(&self) -> Option<&'a ArchivedEpisodeMetaRecord> {
        self.0.meta.as_ref()
    }
    pub fn number(&self) -> u32 {
        self.0.number.to_native()
    }
    /// The episode has a `<n>.json`.
    pub fn has_metadata(&self) -> bool {
        self.0.meta.is_some()
    }
    pub fn has_image(&self) -> bool {
        self.0.has_image
    }
    pub fn has_transcript(&self) -> bool {
        self.0.has_transcript
    }
    pub fn title(&self) -> Option<&'a str> {
        self.meta().and_then(|m| text(&m.title))
    }
    /// `number` as written in `<n>.json`.
    pub fn meta_number(&self) -> Option<u32> {
        self.meta()
            .and_then(|m| m.number.as_ref())
            .map(|n| n.to_native())
    }
    pub fn date(&self) -> Option<&'a str> {
        self.meta().and_then(|m| text(&m.date))
    }
    pub fn url(&self) -> Option<&'a str> {
        self.meta().and_then(|m| text(&m.url))
    }
    pub fn description(&self) -> Option<&'a str> {
        self.meta().and_then(|m| text(&m.description))
    }
    /// `duration` as written: `[h, m, s]`.
    pub fn duration(&self) -> Option<Vec<u32>> {
        let d = self.meta()?.duration.as_ref()?;
        Some(d.iter().map(|v| v.to_native()).collect())
    }
    /// `duration` in seconds, as the original computes it; `None` unless it is `[h, m, s]`.
    pub fn duration_sec(&self) -> Option<u64> {
        let d = self.meta()?.duration.as_ref()?;
        (d.len() == 3).then(|| duration_seconds(d.iter().map(|v| v.to_native())))
    }
    /// `speakers` of `<n>.json`; `None` when absent.
    pub fn speakers(&self) -> Option<impl ExactSizeIterator<Item = &'a str> + use<'a>> {
        let v = self.meta()?.speakers.as_ref()?;
        Some(v.iter().map(|s| s.as_str()))
    }
    /// `chapters` of `<n>.json`; `None` when absent.
    pub fn chapters(&self) -> Option<impl ExactSizeIterator<Item = &'a str> + use<'a>> {
        let v = self.meta()?.chapters.as_ref()?;
        Some(v.iter().map(|s| s.as_str()))
    }
    /// The distinct non-blank topics of the episode's RAG items, in item order.
    pub fn topics(&self) -> impl ExactSizeIterator<Item = &'a str> + use<'a> {
        self.0.topics.iter().map(|t| t.as_str())
    }
}

/// One transcript line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry<'a> {
    pub speaker: Option<&'a str>,
    /// The time as written (`0:11`, `0:00:11`, or empty).
    pub time: &'a str,
    /// `time` in seconds; `None` when the entry is untimed.
    pub seconds: Option<f64>,
    pub duration: Option<f64>,
    pub text: &'a str,
}

/// An episode's transcript, with its times parsed at conversion.
#[derive(Clone, Copy)]
pub struct Transcript<'a>(pub(super) &'a ArchivedTranscriptRecord);

impl<'a> Transcript<'a> {
    /// Top-level `duration`, when present.
    pub fn duration(&self) -> Option<f64> {
        self.0.duration.as_ref().map(|d| d.to_native())
    }
    pub fn len(&self) -> usize {
        self.0.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.entries.is_empty()
    }
    /// Whether the timed entries' times never decrease (true of all real data).
    pub fn is_sorted(&self) -> bool {
        self.0.sorted
    }
    /// The distinct speaker names of the transcript, in order of first appearance.
    pub fn speakers(&self) -> impl ExactSizeIterator<Item = &'a str> + use<'a> {
        self.0.speakers.iter().map(|s| s.as_str())
    }
    /// Positions of the timed entries (those whose time parses), in file order.
    pub fn timed(&self) -> impl ExactSizeIterator<Item = u32> + use<'a> {
        self.0.timed.iter().map(|i| i.to_native())
    }
    fn speaker(&self, id: u32) -> Option<&'a str> {
        (id != NO_SPEAKER).then(|| self.0.speakers[id as usize].as_str())
    }
    /// Every entry, in file order.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = Entry<'a>> + use<'a> {
        let t = *self;
        self.0.entries.iter().map(move |e| Entry {
            speaker: t.speaker(e.speaker.to_native()),
            time: e.time.as_str(),
            seconds: e.seconds.as_ref().map(|s| s.to_native()),
            duration: e.duration.as_ref().map(|d| d.to_native()),
            text: e.text.as_str(),
        })
    }

    /// The excerpt of `window` by the original server's rules (see [`crate::transcript`]):
    /// the first timed entry in the window is found by binary search when the times are
    /// sorted, else by the original's linear walk.
    pub fn excerpt(&self, window: &Window) -> String {
        let t = self.0;
        // Which of the episode's few distinct speakers pass the filter, decided once.
        let passes: Vec<bool> = t
            .speakers
            .iter()
            .map(|s| window.accepts_speaker(Some(s.as_str())))
            .collect();
        let unnamed_passes = window.accepts_speaker(None);
        let first = if t.sorted {
            t.starts
                .partition_point(|s| s.to_native() + EPSILON < window.start)
        } else {
            0
        };
        let mut lines = Lines::new(window);
        for k in first..t.timed.len() {
            let seconds = t.starts[k].to_native();
            if seconds + EPSILON < window.start {
                continue;
            }
            if seconds - EPSILON > window.end {
                break;
            }
            let entry = &t.entries[t.timed[k].to_native() as usize];
            let id = entry.speaker.to_native();
            let keep = if id == NO_SPEAKER {
                unnamed_passes
            } else {
                passes[id as usize]
            };
            if keep && lines.push(entry.time.as_str(), self.speaker(id), entry.text.as_str()) {
                break;
            }
        }
        lines.finish()
    }
}

/// `speakers/index.json`, in its order, with profiles and images.
#[derive(Clone, Copy)]
pub struct Speakers<'a>(pub(super) &'a ArchivedSpeakersRecord);

impl<'a> Speakers<'a> {
    pub fn len(&self) -> usize {
        self.0.rows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.rows.is_empty()
    }
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Speaker<'a>> + use<'a> {
        self.0.rows.iter().map(Speaker)
    }
    /// The row with exactly this slug, by binary search over the slug order; with a repeated
    /// slug, its first row in index order.
    pub fn get(&self, slug: &str) -> Option<Speaker<'a>> {
        let rows = &self.0.rows;
        let by_slug = &self.0.by_slug;
        let first = by_slug.partition_point(|&p| rows[p.to_native() as usize].slug.as_str() < slug);
        let row = &rows[by_slug.get(first)?.to_native() as usize];
        (row.slug.as_str() == slug).then_some(Speaker(row))
    }
}

/// A row of `speakers/index.json`.
#[derive(Clone, Copy)]
pub struct Speaker<'a>(&'a ArchivedSpeakerRecord);

impl<'a> Speaker<'a> {
    pub fn name(&self) -> &'a str {
        self.0.speaker.as_str()
    }
    pub fn slug(&self) -> &'a str {
        self.0.slug.as_str()
    }
    pub fn episodes_count(&self) -> u64 {
        self.0.episodes_count.to_native()
    }
    pub fn utterances_count(&self) -> u64 {
        self.0.utterances_count.to_native()
    }
    pub fn total_words(&self) -> u64 {
        self.0.total_words.to_native()
    }
    pub fn episodes(&self) -> impl ExactSizeIterator<Item = u32> + use<'a> {
        self.0.episodes.iter().map(|e| e.to_native())
    }
    /// `<slug>.md`, when it exists.
    pub fn profile(&self) -> Option<&'a str> {
        text(&self.0.profile)
    }
    /// `image` of `<slug>-meta.json`, when present.
    pub fn image(&self) -> Option<&'a str> {
        text(&self.0.image)
    }
}
