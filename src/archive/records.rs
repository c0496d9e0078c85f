//! The structured part of an archive, stored with rkyv and read in place.
//!
//! Every field of the original item is kept (even those the server does not use, such as `key`
//! and `source`), so an archive can always be turned back into the JSON it came from. Free-form
//! JSON objects (`source`, `embeddingInfo`, `stats`) are kept as compact JSON text.
//!
//! Items are archived one by one into the items section, each with its own checksum in
//! [`ItemSlot`], and are validated the first time they are read: opening an archive validates
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
    pub items: Vec<ItemSlot>,
    /// Item `i`'s `episode_number`, as a column for filtered scans.
    pub episode_of: Vec<u32>,
    /// Original L2 norm of each item's embedding; 0 when the item has none.
    pub norms: Vec<f32>,
}

/// One item's archive: `len` bytes at `offset` from the start of the items section (a
/// multiple of 16, rkyv's alignment), with the xxh3-64 of those bytes.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct ItemSlot {
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
source_json:Option<String>,stats_json:Option<String>},items:Vec<ItemSlot{offset:u64,len:u64,\
checksum:u64}>,episode_of:Vec<u32>,norms:Vec<f32>};ItemRecord{id:u32,key:Option<String>,\
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
        std::mem::size_of::<ArchivedItemSlot>(),
    ];
    let mut bytes = SCHEMA.as_bytes().to_vec();
    for size in sizes {
        bytes.extend_from_slice(&(size as u64).to_le_bytes());
    }
    xxhash_rust::xxh3::xxh3_64(&bytes)
}
