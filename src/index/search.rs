//! The mapped archive behind the search traits: its matrix and columns for the exact scan,
//! its code sections for the quantized modes, its items for results.

use super::MmapIndex;
use crate::error::Result;
use crate::search::quant::{BinaryCodes, Int8Codes, Quantized};
use crate::search::scan::{self, Matrix};
use crate::search::{Filter, Hit, ItemView, SearchIndex, SearchMode};

impl Matrix for MmapIndex {
    fn row_len(&self) -> usize {
        self.header.dims as usize
    }

    fn rows(&self) -> &[f32] {
        self.matrix()
    }

    fn embedded_rows(&self) -> usize {
        self.header.embedded_count as usize
    }

    fn columns(&self) -> impl Fn(usize) -> (bool, u32) + Send + Sync + '_ {
        let meta = self.mapped.meta();
        let (norms, episodes) = (&meta.norms[..], &meta.episode_of[..]);
        move |i| (norms[i].to_native() > 0.0, episodes[i].to_native())
    }
}

impl Quantized for MmapIndex {
    fn int8(&self) -> Option<Int8Codes<'_>> {
        Some(self.int8_codes())
    }

    fn binary(&self) -> Option<BinaryCodes<'_>> {
        Some(self.binary_codes())
    }
}

impl SearchIndex for MmapIndex {
    fn len(&self) -> usize {
        self.header.item_count as usize
    }

    fn dims(&self) -> usize {
        self.header.dims as usize
    }

    fn embedded_count(&self) -> usize {
        self.header.embedded_count as usize
    }

    fn model(&self) -> Option<&str> {
        Some(self.header.model.as_str()).filter(|m| !m.is_empty())
    }

    fn item(&self, index: usize) -> Result<ItemView<'_>> {
        self.item_full(index).map(|item| item.view())
    }

    fn episode_of(&self, index: usize) -> u32 {
        self.mapped.meta().episode_of[index].to_native()
    }

    fn search_vector(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Hit>> {
        scan::top_k(self, query, k, filter)
    }

    fn score_all(&self, query: &[f32], filter: &Filter) -> Result<Vec<Hit>> {
        scan::score_all(self, query, filter)
    }

    fn episodes_with_embeddings(&self) -> usize {
        // Every quantized page of search results reports this total, and counting reads and
        // sorts a column entry per row (51 µs at 16,000 rows): counted once per archive.
        *self.episodes_embedded.get_or_init(|| {
            let columns = self.columns();
            crate::search::distinct_episodes(
                (0..self.len())
                    .map(&columns)
                    .filter(|&(embedded, _)| embedded)
                    .map(|(_, episode)| episode),
            )
        })
    }

    fn search_vector_in(
        &self,
        query: &[f32],
        k: usize,
        filter: &Filter,
        mode: SearchMode,
    ) -> Result<Vec<Hit>> {
        crate::search::quant::top_k(self, query, k, filter, mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::convert_podcast;
    use crate::input::PodcastSource;

    /// Episodes whose items all lack an embedding are not counted, and the count kept after
    /// the first call is the count.
    #[test]
    fn episodes_with_embeddings_skips_episodes_without_any_and_keeps_its_count() {
        let dir = tempfile::tempdir().unwrap();
        let rag = dir.path().join("db/demo/rag-embeddings.json");
        std::fs::create_dir_all(rag.parent().unwrap()).unwrap();
        let item = |id: u32, episode: u32, embedding: &str| {
            format!(
                r#"{{"id": {id}, "episodeNumber": {episode}, "startSec": 0, "endSec": 60{embedding}}}"#
            )
        };
        let items = [
            item(0, 1, r#", "embedding": [1, 0]"#),
            item(1, 2, ""),
            item(2, 3, r#", "embedding": [0, 1]"#),
            item(3, 3, r#", "embedding": [1, 1]"#),
            item(4, 4, ""),
        ];
        let json = format!(
            r#"{{"embeddingModel": "m", "embeddingDimensions": 2, "items": [{}]}}"#,
            items.join(",")
        );
        std::fs::write(&rag, json).unwrap();
        let archive = dir.path().join("index/demo/rag.podmap");
        convert_podcast(&PodcastSource::at(dir.path(), "demo"), &archive).unwrap();
        let index = MmapIndex::open(&archive).unwrap();
        assert_eq!(index.len(), 5);
        assert_eq!(index.episodes_with_embeddings(), 2);
        assert_eq!(index.episodes_with_embeddings(), 2);
    }
}
