//! The RAG database `db/<id>/rag-embeddings.json`, byte for byte as the original writes it
//! (`JSON.stringify(db, null, 2) + "\n"`), streamed item by item with each random embedding
//! made just before it is written, so a 300 MB file never sits in memory.

use std::path::Path;

use anyhow::Result;
use serde::ser::SerializeSeq;
use serde::Serialize;

use crate::clusters::RandomEmbedder;
use crate::files::write_pretty;
use crate::items::Item;

/// `createdAt` and `updatedAt` of every RAG file.
const CREATED_AT: &str = "2026-01-01T00:00:00.000Z";

/// The embeddings a RAG file is written with.
pub struct Embeddings<'a> {
    /// `embeddingModel`; `None` for a podcast built without embeddings.
    pub model: Option<&'a str>,
    /// `embeddingDimensions` (0 without embeddings).
    pub dims: u32,
    pub vectors: Vectors<'a>,
    /// `--null-embedding-every`.
    pub null_every: Option<u64>,
}

/// Writes the RAG file of podcast `id` to `path`; returns its size in bytes.
pub fn write(
    path: &Path,
    id: &str,
    episode_count: u32,
    items: &[Item],
    embeddings: Embeddings,
) -> Result<u64> {
    let filled_no_time = items
        .iter()
        .filter(|i| i.start_sec == 0 && i.end_sec == 0)
        .count() as u64;
    let db = RagDb {
        schema_version: 1,
        created_at: CREATED_AT,
        updated_at: CREATED_AT,
        embedding_model: embeddings.model,
        embedding_dimensions: embeddings.dims,
        source: RagSource {
            kind: "extended-topics",
            in_dir: format!("podcasts/{id}/episodes"),
            episode_count,
        },
        items: ItemStream {
            items,
            vectors: embeddings.vectors,
            null_every: embeddings.null_every,
        },
        stats: RagStats {
            total_items: items.len() as u64,
            skipped_no_time: 0,
            filled_no_time,
            reused_embeddings: 0,
        },
    };
    write_pretty(path, &db, true)
}

/// `rag-embeddings.json` (field order = JSON key order).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RagDb<'a> {
    schema_version: u32,
    created_at: &'a str,
    updated_at: &'a str,
    embedding_model: Option<&'a str>,
    embedding_dimensions: u32,
    source: RagSource,
    items: ItemStream<'a>,
    stats: RagStats,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RagSource {
    #[serde(rename = "type")]
    kind: &'static str,
    in_dir: String,
    episode_count: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RagStats {
    total_items: u64,
    skipped_no_time: u64,
    filled_no_time: u64,
    reused_embeddings: u64,
}

#[derive(Serialize)]
struct ItemOut<'a> {
    #[serde(flatten)]
    item: &'a Item,
    embedding: Option<Vec<f32>>,
}

/// Where the items' embeddings come from.
pub enum Vectors<'a> {
    /// `"embedding": null` everywhere (the podcast built without embeddings).
    None,
    /// Random clustered vectors, computed as each item is written.
    Random(&'a RandomEmbedder),
    /// The model's vectors, one per item in item order (`None` for the items
    /// of `--null-embedding-every`).
    Model(&'a [Option<Vec<f32>>]),
}

/// Serialises the item array one item at a time, computing each random
/// embedding just before it is written.
struct ItemStream<'a> {
    items: &'a [Item],
    vectors: Vectors<'a>,
    null_every: Option<u64>,
}

/// Whether `--null-embedding-every` makes `item`'s embedding null.
pub fn is_null(null_every: Option<u64>, item: &Item) -> bool {
    null_every.is_some_and(|n| item.id % n == n - 1)
}

impl Serialize for ItemStream<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.items.len()))?;
        for (i, item) in self.items.iter().enumerate() {
            let embedding = match &self.vectors {
                _ if is_null(self.null_every, item) => None,
                Vectors::None => None,
                Vectors::Random(e) => Some(e.embed(item.id, item.cluster)),
                Vectors::Model(v) => v[i].clone(),
            };
            seq.serialize_element(&ItemOut { item, embedding })?;
        }
        seq.end()
    }
}
