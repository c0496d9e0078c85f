//! The original data path, kept on purpose as the baseline.
//!
//! [`JsonIndex::load`] parses `rag-embeddings.json` exactly as the original server does: the
//! whole file into `Vec<RagItem>`, every item with its own heap `Vec<f32>`, norms precomputed.
//! Search is the original's too: a sequential dot product per item over all items (rayon), all
//! scores collected, `select_nth_unstable`, then a sort. Benchmarks and tests run it beside
//! [`crate::index::MmapIndex`] through [`SearchIndex`].

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::search::{kernel, query_norm, Filter, Hit, ItemView, SearchIndex};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RagDb {
    #[serde(default)]
    embedding_model: Option<String>,
    #[serde(default)]
    embedding_dimensions: Option<usize>,
    items: Vec<RagItem>,
}

/// The original server's `RagItem`: the fields it deserializes, nothing more.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RagItem {
    id: u32,
    episode_number: u32,
    episode_title: Option<String>,
    topic: Option<String>,
    subject: Option<RagSubject>,
    start_sec: f64,
    end_sec: f64,
    start_hms: Option<String>,
    end_hms: Option<String>,
    summary: Option<String>,
    text: Option<String>,
    embedding: Option<Vec<f32>>,
}

#[derive(Debug, Deserialize)]
struct RagSubject {
    coarse: Option<String>,
    fine: Option<String>,
}

/// A RAG file parsed into memory.
pub struct JsonIndex {
    path: PathBuf,
    model: Option<String>,
    dims: usize,
    items: Vec<RagItem>,
    norms: Vec<f32>,
    embedded: usize,
}

impl JsonIndex {
    /// Parses `<data_root>/db/<podcast>/rag-embeddings.json`.
    pub fn load_podcast(data_root: &Path, podcast: &str) -> Result<Self> {
        Self::load(
            &data_root
                .join("db")
                .join(podcast)
                .join(crate::input::RAG_FILE),
        )
    }

    pub fn load(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let db: RagDb = serde_json::from_reader(BufReader::new(file)).map_err(|e| {
            if e.is_io() {
                Error::io(path, std::io::Error::other(e.to_string()))
            } else {
                Error::json(path, &e)
            }
        })?;
        let norms: Vec<f32> = db
            .items
            .iter()
            .map(|it| {
                it.embedding
                    .as_deref()
                    .map_or(0.0, |v| kernel::dot_sequential(v, v).sqrt())
            })
            .collect();
        let dims = db
            .embedding_dimensions
            .filter(|&d| d > 0)
            .or_else(|| {
                db.items
                    .iter()
                    .find_map(|it| it.embedding.as_ref().map(Vec::len))
            })
            .unwrap_or(0);
        let embedded = norms.iter().filter(|&&n| n > 0.0).count();
        Ok(JsonIndex {
            path: path.to_path_buf(),
            model: db.embedding_model,
            dims,
            items: db.items,
            norms,
            embedded,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl SearchIndex for JsonIndex {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn dims(&self) -> usize {
        self.dims
    }

    fn embedded_count(&self) -> usize {
        self.embedded
    }

    fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    fn item(&self, index: usize) -> Result<ItemView<'_>> {
        let it = &self.items[index];
        let subject = it.subject.as_ref();
        Ok(ItemView {
            id: it.id,
            episode_number: it.episode_number,
            episode_title: it.episode_title.as_deref(),
            topic: it.topic.as_deref(),
            subject_coarse: subject.and_then(|s| s.coarse.as_deref()),
            subject_fine: subject.and_then(|s| s.fine.as_deref()),
            start_sec: it.start_sec,
            end_sec: it.end_sec,
            start_hms: it.start_hms.as_deref(),
            end_hms: it.end_hms.as_deref(),
            summary: it.summary.as_deref(),
            text: it.text.as_deref(),
        })
    }

    fn episode_of(&self, index: usize) -> u32 {
        self.items[index].episode_number
    }

    fn search_vector(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Hit>> {
        query_norm(query, self.dims)?;
        let q_norm = kernel::dot_sequential(query, query).sqrt();
        if self.embedded == 0 {
            return Err(Error::NoEmbeddings);
        }
        let mut scored: Vec<Hit> = self
            .items
            .par_iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let v = item.embedding.as_deref()?;
                let n = self.norms[i];
                if n == 0.0 || v.len() != query.len() || !filter.accepts(item.episode_number) {
                    return None;
                }
                let score = kernel::dot_sequential(query, v) / (q_norm * n);
                score.is_finite().then_some(Hit {
                    index: i as u32,
                    score,
                })
            })
            .collect();
        let rank = |a: &Hit, b: &Hit| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index));
        if k == 0 {
            return Ok(Vec::new());
        }
        if scored.len() > k {
            scored.select_nth_unstable_by(k - 1, rank);
            scored.truncate(k);
        }
        scored.sort_by(rank);
        Ok(scored)
    }
}
