//! The report's datasets: generated podcasts of N items × 3,072 dims (made once with
//! podmap-gen into `target/bench-data/`, as the engine bench makes its own) and the real
//! corpus's podcasts, whose queries come with a float64 ground truth.

use std::path::{Path, PathBuf};

use podmap::{MmapIndex, SearchIndex};

use crate::support::{bench_data, convert, corpus, generated_podcast};

pub struct Dataset {
    pub name: String,
    /// `generated` or `corpus`.
    pub kind: &'static str,
    pub data_root: PathBuf,
    pub index_dir: PathBuf,
    pub podcast: String,
    pub items: usize,
    pub dims: usize,
    pub queries: Vec<Vec<f32>>,
    /// The exact top-10 rows of each query, where the data brings them (the corpus).
    pub truth: Option<Vec<Vec<u32>>>,
    pub matrix_bytes: u64,
    pub json_bytes: u64,
}

/// The generated podcast of `items` × `dims` (16 queries, made near its cluster centres).
pub fn generated(items: usize, dims: usize) -> Dataset {
    let root = generated_podcast(items, dims);
    let queries = read_vectors(&root.join("queries/big.json"));
    finish(
        format!("gen-{items}"),
        "generated",
        root.clone(),
        root.join("index"),
        "big",
        queries,
        None,
    )
}

/// Every podcast of the corpus, if it is beside the checkout, with its queries and truth.
pub fn corpus_podcasts() -> Vec<Dataset> {
    let Some(root) = corpus() else {
        eprintln!("report: no corpus beside the checkout (../shared/corpus), left out");
        return Vec::new();
    };
    let text = std::fs::read_to_string(root.join("queries.json")).expect("queries.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("queries.json is JSON");
    let queries = doc["queries"].as_array().expect("a queries array");
    let mut podcasts: Vec<String> = queries
        .iter()
        .filter_map(|q| q["podcast"].as_str().map(str::to_owned))
        .collect();
    podcasts.sort();
    podcasts.dedup();
    let index_dir = bench_data().join("corpus-index");
    podcasts
        .into_iter()
        .map(|podcast| {
            convert(&root, &index_dir, &podcast);
            let mine: Vec<&serde_json::Value> = queries
                .iter()
                .filter(|q| q["podcast"] == podcast.as_str())
                .collect();
            let vectors = mine
                .iter()
                .map(|q| serde_json::from_value(q["embedding"].clone()).expect("an embedding"))
                .collect();
            let truth = mine
                .iter()
                .map(|q| serde_json::from_value(q["top10"].clone()).expect("top10 ids"))
                .collect();
            finish(
                podcast.clone(),
                "corpus",
                root.clone(),
                index_dir.clone(),
                &podcast,
                vectors,
                Some(truth),
            )
        })
        .collect()
}

fn read_vectors(path: &Path) -> Vec<Vec<f32>> {
    let text = std::fs::read_to_string(path).expect("query vectors");
    serde_json::from_str(&text).expect("query vectors as JSON arrays")
}

fn finish(
    name: String,
    kind: &'static str,
    data_root: PathBuf,
    index_dir: PathBuf,
    podcast: &str,
    queries: Vec<Vec<f32>>,
    truth: Option<Vec<Vec<u32>>>,
) -> Dataset {
    let json = data_root
        .join("db")
        .join(podcast)
        .join("rag-embeddings.json");
    let json_bytes = std::fs::metadata(&json).map(|m| m.len()).unwrap_or(0);
    let index = MmapIndex::open_podcast(&index_dir, podcast).expect("the converted archive");
    let dims = index.dims();
    let matrix_bytes = (index.matrix().len() * 4) as u64;
    Dataset {
        name,
        kind,
        data_root,
        index_dir,
        podcast: podcast.to_owned(),
        items: index.matrix().len() / dims.max(1),
        dims,
        queries,
        truth,
        matrix_bytes,
        json_bytes,
    }
}

impl Dataset {
    /// This dataset's scratch folder (query files, `.npy` copies for the peers).
    pub fn scratch(&self) -> PathBuf {
        let dir = bench_data().join("report").join(&self.name);
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    }
}
