//! The structured part of an archive, stored with rkyv and read in place.
//!
//! Every field of the original item is kept (even those the server does not use, such as `key`
//! and `source`), so an archive can always be turned back into the JSON it came from. Free-form
//! JSON objects (`source`, `embeddingInfo`, `stats`) are kept as compact JSON text.
//!
//! Items are archived one by one into the items section, each with its own checksum in
//! [`Slot`], and are validated the first time they are read: opening an archive validates
//! only the small [`PodcastRecord`], and a query touches (and checks) just the items it returns.
//! Validating every item's text at open cost milliseconds per thousand items (UTF-8 checks of
//! German text), more than the whole first search.
//!
//! `episode_of` and `norms` are columns beside the slots: search reads them for every row, and
//! as contiguous arrays they cost one cache line per 16 rows instead of a walk through items.

use rkyv::{Archive, Deserialize, Serialize};

/// The root object of the meta section.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PodcastRecord {
    pub podcast_id: String,
    pub manifest: ManifestRecord,
    /// Where each item's archive lies in the items section.
    pub items: Vec<Slot>,
    /// Item `i`'s `episode_number`, as a column for filtered scans.
    pub episode_of: Vec<u32>,
    /// Original L2 norm of each item's embedding; 0 when the item has none.
    pub norms: Vec<f32>,
    /// Every episode known from `podcasts/<id>/episodes/` or the RAG items, ascending.
    pub episode_numbers: Vec<u32>,
    /// `episodes[i]` is the archive of episode `episode_numbers[i]` in the episodes section.
    pub episodes: Vec<Slot>,
    /// Positions (into `episode_numbers`) of the episodes that have metadata, newest date
    /// first (ties: higher number first); episodes without a date come last.
    pub by_date: Vec<u32>,
    /// `transcripts[i]` is the transcript of episode `episode_numbers[i]` in the transcripts
    /// section; `len == 0` when the episode has none.
    pub transcripts: Vec<Slot>,
    /// The speakers record in the speakers section (`len == 0`: no `speakers/index.json`).
    pub speakers: Slot,
}

/// `podcasts/<id>/episodes/<n>.json` and what podmap knows about the episode besides.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct EpisodeRecord {
    pub number: u32,
    /// The 8 fields of `<n>.json`; `None` when the episode has no such file.
    pub meta: Option<EpisodeMetaRecord>,
    /// `<n>.jpg|jpeg|png|webp` exists.
    pub has_image: bool,
    /// `<n>-ts.json` exists.
    pub has_transcript: bool,
    /// Distinct non-blank `topic`s of the episode's RAG items, in item order.
    pub topics: Vec<String>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct EpisodeMetaRecord {
    pub title: Option<String>,
    pub number: Option<u32>,
    pub date: Option<String>,
    pub url: Option<String>,
    /// `[h, m, s]`.
    pub duration: Option<Vec<u32>>,
    pub description: Option<String>,
    pub speakers: Option<Vec<String>>,
    pub chapters: Option<Vec<String>>,
}

/// Seconds of an episode's `duration` `[h, m, s]`, as the original computes them.
pub fn duration_seconds(hms: impl IntoIterator<Item = u32>) -> u64 {
    hms.into_iter()
        .zip([3600, 60, 1])
        .map(|(v, f)| u64::from(v) * f)
        .sum()
}

/// `podcasts/<id>/episodes/<n>-ts.json`, with speakers interned and times parsed.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TranscriptRecord {
    /// Top-level `duration` in seconds, when present.
    pub duration: Option<f64>,
    /// Distinct speaker strings of this episode, as written.
    pub speakers: Vec<String>,
    pub entries: Vec<EntryRecord>,
    /// Entry indices of the timed entries, in file order.
    pub timed: Vec<u32>,
    /// Seconds of each timed entry (parallel to `timed`).
    pub starts: Vec<f64>,
    /// `starts` never decreases, so a window can be found by binary search.
    pub sorted: bool,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct EntryRecord {
    /// Index into `speakers`; [`NO_SPEAKER`] when the entry has none.
    pub speaker: u32,
    /// The time as written (`0:11`, `0:00:11`, `""`).
    pub time: String,
    /// `time` in seconds; `None` when empty or unparseable (the entry is untimed).
    pub seconds: Option<f64>,
    pub duration: Option<f64>,
    pub text: String,
}

/// `EntryRecord::speaker` of an entry without a speaker.
pub const NO_SPEAKER: u32 = u32::MAX;

/// `podcasts/<id>/speakers/`: the index rows, each with its profile and image.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SpeakersRecord {
    /// In `index.json` order (by total words, descending).
    pub rows: Vec<SpeakerRecord>,
    /// Row positions sorted by slug, for lookups.
    pub by_slug: Vec<u32>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SpeakerRecord {
    pub speaker: String,
    pub slug: String,
    pub episodes_count: u64,
    pub utterances_count: u64,
    pub total_words: u64,
    pub episodes: Vec<u32>,
    /// `<slug>.md`, when it exists.
    pub profile: Option<String>,
    /// `image` of `<slug>-meta.json`, when present.
    pub image: Option<String>,
}

/// One record's archive: `len` bytes at `offset` from the start of its section (a multiple
/// of 16, rkyv's alignment), with the xxh3-64 of those bytes. Items, episodes, transcripts
/// and the speakers record are all stored this way and validated on first read.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Slot {
    pub offset: u64,
    pub len: u64,
    pub checksum: u64,
}

/// The RAG file's top-level fields.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct ManifestRecord {
    pub schema_version: Option<u64>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub embedding_model: Option<String>,
    pub embedding_dimensions: Option<u64>,
    pub embedding_info_json: Option<String>,
    pub source_json: Option<String>,
    pub stats_json: Option<String>,
}

/// One RAG item without its embedding (which lives in the matrix section, same row index).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ItemRecord {
    pub id: u32,
    pub key: Option<String>,
    pub episode_number: u32,
    pub episode_title: Option<String>,
    pub topic: Option<String>,
    pub subject: Option<SubjectRecord>,
    pub start_sec: f64,
    pub end_sec: f64,
    pub start_hms: Option<String>,
    pub end_hms: Option<String>,
    pub duration_sec: Option<f64>,
    pub summary: Option<String>,
    pub source_json: Option<String>,
    pub text: Option<String>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SubjectRecord {
    pub coarse: Option<String>,
    pub fine: Option<String>,
}

/// A description of the record layout above. Its hash goes into every header, so an archive
/// written with other records is refused instead of misread. Change it with the structs.
pub(crate) const SCHEMA: &str = "PodcastRecord{podcast_id:String,manifest:ManifestRecord{\
schema_version:Option<u64>,created_at:Option<String>,updated_at:Option<String>,\
embedding_model:Option<String>,embedding_dimensions:Option<u64>,embedding_info_json:Option<String>,\
source_json:Option<String>,stats_json:Option<String>},items:Vec<Slot{offset:u64,len:u64,\
checksum:u64}>,episode_of:Vec<u32>,norms:Vec<f32>,episode_numbers:Vec<u32>,episodes:Vec<Slot>,\
by_date:Vec<u32>,transcripts:Vec<Slot>,speakers:Slot};EpisodeRecord{number:u32,\
meta:Option<EpisodeMetaRecord{title:Option<String>,number:Option<u32>,date:Option<String>,\
url:Option<String>,duration:Option<Vec<u32>>,description:Option<String>,speakers:Option<Vec<String>>,\
chapters:Option<Vec<String>>}>,has_image:bool,has_transcript:bool,topics:Vec<String>};\
TranscriptRecord{duration:Option<f64>,speakers:Vec<String>,entries:Vec<EntryRecord{speaker:u32,\
time:String,seconds:Option<f64>,duration:Option<f64>,text:String}>,timed:Vec<u32>,starts:Vec<f64>,\
sorted:bool};SpeakersRecord{rows:Vec<SpeakerRecord{speaker:String,slug:String,episodes_count:u64,\
utterances_count:u64,total_words:u64,episodes:Vec<u32>,profile:Option<String>,image:Option<String>}>,\
by_slug:Vec<u32>};ItemRecord{id:u32,key:Option<String>,\
episode_number:u32,episode_title:Option<String>,topic:Option<String>,subject:Option<SubjectRecord{\
coarse:Option<String>,fine:Option<String>}>,start_sec:f64,end_sec:f64,start_hms:Option<String>,\
end_hms:Option<String>,duration_sec:Option<f64>,summary:Option<String>,source_json:Option<String>,\
text:Option<String>}";

/// Hash of [`SCHEMA`] and of the archived types' sizes, which catches a struct edit that
/// forgot to update the description.
pub(crate) fn schema_hash() -> u64 {
    let sizes = [
        std::mem::size_of::<ArchivedPodcastRecord>(),
        std::mem::size_of::<ArchivedManifestRecord>(),
        std::mem::size_of::<ArchivedItemRecord>(),
        std::mem::size_of::<ArchivedSubjectRecord>(),
        std::mem::size_of::<ArchivedSlot>(),
        std::mem::size_of::<ArchivedEpisodeRecord>(),
        std::mem::size_of::<ArchivedEpisodeMetaRecord>(),
        std::mem::size_of::<ArchivedTranscriptRecord>(),
        std::mem::size_of::<ArchivedEntryRecord>(),
        std::mem::size_of::<ArchivedSpeakersRecord>(),
        std::mem::size_of::<ArchivedSpeakerRecord>(),
    ];
    let mut bytes = SCHEMA.as_bytes().to_vec();
    for size in sizes {
        bytes.extend_from_slice(&(size as u64).to_le_bytes());
    }
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// Invariants between fields that bytecheck cannot see (indices into sibling vectors).
/// Readers check them once, right after bytecheck, so that a well-formed but inconsistent
/// record (a file crafted with valid checksums) is refused instead of panicking on an index.
pub trait Consistent {
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

impl Consistent for ArchivedItemRecord {}
impl Consistent for ArchivedEpisodeRecord {}

impl Consistent for ArchivedTranscriptRecord {
    fn check(&self) -> Result<(), String> {
        if self.timed.len() != self.starts.len() {
            return Err(format!(
                "{} timed entries but {} start times",
                self.timed.len(),
                self.starts.len()
            ));
        }
        let (entries, speakers) = (self.entries.len(), self.speakers.len());
        if let Some(bad) = self
            .timed
            .iter()
            .find(|i| i.to_native() as usize >= entries)
        {
            return Err(format!("timed entry {bad} of {entries}"));
        }
        let speaker_ok = |e: &ArchivedEntryRecord| {
            let s = e.speaker.to_native();
            s == NO_SPEAKER || (s as usize) < speakers
        };
        if !self.entries.iter().all(speaker_ok) {
            return Err(format!(
                "an entry names a speaker beyond the {speakers} of the episode"
            ));
        }
        let sorted = self
            .starts
            .windows(2)
            .all(|w| w[0].to_native() <= w[1].to_native());
        if self.sorted && !sorted {
            return Err("start times are marked sorted but are not".into());
        }
        Ok(())
    }
}

impl Consistent for ArchivedSpeakersRecord {
    fn check(&self) -> Result<(), String> {
        let rows = self.rows.len();
        if self.by_slug.len() != rows || self.by_slug.iter().any(|p| p.to_native() as usize >= rows)
        {
            return Err("slug order does not match the rows".into());
        }
        Ok(())
    }
}
