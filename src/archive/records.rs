//! The structured part of an archive, stored with rkyv and read in place.
//!
//! Every field of the original item is kept (even those the server does not use, such as `key`
//! and `source`), so an archive can always be turned back into the JSON it came from. Free-form
//! JSON objects (`source`, `embeddingInfo`, `stats`) are kept as compact JSON text.
//!
//! `episode_of` and `norms` are columns beside `items`: search reads them for every row, and as
//! contiguous arrays they cost one cache line per 16 rows instead of a walk through the records.

use rkyv::{Archive, Deserialize, Serialize};

/// The root object of the meta section.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PodcastRecord {
    pub podcast_id: String,
    pub manifest: ManifestRecord,
    pub items: Vec<ItemRecord>,
    /// `items[i].episode_number`, as a column for filtered scans.
    pub episode_of: Vec<u32>,
    /// Original L2 norm of each item's embedding; 0 when the item has none.
    pub norms: Vec<f32>,
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
source_json:Option<String>,stats_json:Option<String>},items:Vec<ItemRecord{id:u32,key:Option<String>,\
episode_number:u32,episode_title:Option<String>,topic:Option<String>,subject:Option<SubjectRecord{\
coarse:Option<String>,fine:Option<String>}>,start_sec:f64,end_sec:f64,start_hms:Option<String>,\
end_hms:Option<String>,duration_sec:Option<f64>,summary:Option<String>,source_json:Option<String>,\
text:Option<String>}>,episode_of:Vec<u32>,norms:Vec<f32>}";

/// Hash of [`SCHEMA`] and of the archived types' sizes, which catches a struct edit that
/// forgot to update the description.
pub(crate) fn schema_hash() -> u64 {
    let sizes = [
        std::mem::size_of::<ArchivedPodcastRecord>(),
        std::mem::size_of::<ArchivedManifestRecord>(),
        std::mem::size_of::<ArchivedItemRecord>(),
        std::mem::size_of::<ArchivedSubjectRecord>(),
    ];
    let mut bytes = SCHEMA.as_bytes().to_vec();
    for size in sizes {
        bytes.extend_from_slice(&(size as u64).to_le_bytes());
    }
    xxhash_rust::xxh3::xxh3_64(&bytes)
}
