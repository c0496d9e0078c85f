//! One podcast from start to finish: its episodes, transcripts, speakers, RAG file and query
//! vectors, each from its own stream of the podcast's seed, in the order they are written.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::clusters::Embedder;
use crate::embeddings::ModelEmbedder;
use crate::files::{self, write_pretty};
use crate::items::Item;
use crate::rag::{self, is_null, Embeddings, Vectors};
use crate::rng::{fnv1a, mix};
use crate::speakers::{self, Tally};
use crate::{episodes, items, queries, transcripts, Args};

/// A podcast to generate.
pub struct PodcastSpec {
    pub id: String,
    pub with_embeddings: bool,
}

/// What was written for a podcast, for the summary line.
pub struct PodcastReport {
    pub rag_path: PathBuf,
    pub items: usize,
    pub dims: u32,
    pub bytes: u64,
    pub transcripts: usize,
}

/// The real model and the query vectors of `--query-text`, with `--embeddings-url`.
pub struct Model {
    pub embedder: ModelEmbedder,
    pub queries: Vec<Vec<f32>>,
}

/// Writes the podcast `spec` below `root`.
pub fn generate(
    args: &Args,
    root: &Path,
    spec: &PodcastSpec,
    model: Option<&Model>,
) -> Result<PodcastReport> {
    let id = &spec.id;
    let seed = mix(args.seed, fnv1a(id));
    let ep_dir = root.join("podcasts").join(id).join("episodes");
    let sp_dir = root.join("podcasts").join(id).join("speakers");
    let db_dir = root.join("db").join(id);
    for d in [&ep_dir, &sp_dir, &db_dir] {
        files::create_dir(d)?;
    }

    let episodes = episodes::generate(id, seed, args.episodes);
    let mut tally = Tally::default();
    let mut has_transcript = Vec::with_capacity(episodes.len());
    for ep in &episodes {
        episodes::write(&ep_dir, ep)?;

        let with_ts = args.transcripts_every > 0 && ep.number % args.transcripts_every == 0;
        has_transcript.push(with_ts);
        if !with_ts {
            continue;
        }
        let ts = transcripts::generate(ep, seed, args.transcript_entries, spec.with_embeddings);
        tally.count(ep.number, &ts);
        write_pretty(&ep_dir.join(transcripts::file_name(ep.number)), &ts, false)?;
    }
    speakers::write(&sp_dir, tally, seed)?;

    // RAG database.
    let items = items::generate(
        seed,
        args.items as usize,
        spec.with_embeddings,
        &episodes,
        &has_transcript,
    );
    let null_every = if spec.with_embeddings {
        args.null_embedding_every
    } else {
        None
    };
    let embedder = (spec.with_embeddings && model.is_none())
        .then(|| Embedder::new(args.dims as usize, mix(seed, 4)));
    // The model's passage embeddings of exactly the `text` each item is written with.
    let model_vectors: Vec<Option<Vec<f32>>> = match model {
        Some(m) if spec.with_embeddings => {
            let wanted: Vec<&Item> = items.iter().filter(|i| !is_null(null_every, i)).collect();
            let texts: Vec<&str> = wanted.iter().map(|i| i.text.as_str()).collect();
            let mut fetched = m
                .embedder
                .embed(&texts, "passage")
                .with_context(|| format!("embedding the items of {id}"))?
                .into_iter();
            items
                .iter()
                .map(|i| {
                    if is_null(null_every, i) {
                        None
                    } else {
                        fetched.next()
                    }
                })
                .collect()
        }
        _ => Vec::new(),
    };
    let vectors = match (&embedder, model) {
        (Some(e), _) => Vectors::Random(e),
        (None, Some(_)) if spec.with_embeddings => Vectors::Model(&model_vectors),
        _ => Vectors::None,
    };
    let dims = if spec.with_embeddings { args.dims } else { 0 };
    let rag_path = db_dir.join("rag-embeddings.json");
    let bytes = rag::write(
        &rag_path,
        id,
        args.episodes,
        &items,
        Embeddings {
            model: spec.with_embeddings.then_some(match model {
                Some(m) => m.embedder.model.as_str(),
                None => args.model.as_str(),
            }),
            dims,
            vectors,
            null_every,
        },
    )?;
    if let (Some(embedder), 1.., false) = (&embedder, args.queries, items.is_empty()) {
        // Ids past every item id, so no query equals an item's vector.
        let queries: Vec<Vec<f32>> = (0..args.queries)
            .map(|q| {
                // Near the cluster of an item spread evenly through the podcast, so every
                // query has neighbours to find.
                let anchor = &items[q as usize * items.len() / args.queries as usize];
                embedder.embed(u64::MAX - u64::from(q), anchor.cluster)
            })
            .collect();
        queries::write(root, id, &queries, None)?;
    }
    if let (Some(m), true, false) = (model, spec.with_embeddings, args.query_texts.is_empty()) {
        queries::write(root, id, &m.queries, Some(&args.query_texts))?;
    }
    Ok(PodcastReport {
        rag_path,
        items: items.len(),
        dims,
        bytes,
        transcripts: has_transcript.iter().filter(|&&b| b).count(),
    })
}
