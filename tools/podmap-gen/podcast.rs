//! One podcast from start to finish: its episodes, transcripts, speakers, RAG file and query
//! vectors, each from its own stream of the podcast's seed, in the order they are written.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::clusters::RandomEmbedder;
use crate::embeddings::Model;
use crate::episodes::Episode;
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

/// Where the embeddings of a podcast come from.
enum Source<'a> {
    /// None: the podcast is built without embeddings.
    None,
    /// Random clustered vectors.
    Random(RandomEmbedder),
    /// The real model of `--embeddings-url`.
    Model(&'a Model),
}

/// Writes the podcast `spec` below `root`, with `model`'s embeddings if there is one.
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
    let has_transcript = write_episodes(args, spec, seed, &episodes, &ep_dir, &sp_dir)?;
    let items = items::generate(
        seed,
        args.items as usize,
        spec.with_embeddings,
        &episodes,
        &has_transcript,
    );

    let source = match (spec.with_embeddings, model) {
        (false, _) => Source::None,
        (true, None) => Source::Random(RandomEmbedder::new(args.dims as usize, mix(seed, 4))),
        (true, Some(m)) => Source::Model(m),
    };
    let null_every = args.null_embedding_every.filter(|_| spec.with_embeddings);
    let model_vectors = match &source {
        Source::Model(m) => passage_vectors(m, &items, null_every)
            .with_context(|| format!("embedding the items of {id}"))?,
        _ => Vec::new(),
    };
    let (model_name, vectors) = match &source {
        Source::None => (None, Vectors::None),
        Source::Random(e) => (Some(args.model.as_str()), Vectors::Random(e)),
        Source::Model(m) => (
            Some(m.embedder.model.as_str()),
            Vectors::Model(&model_vectors),
        ),
    };
    let dims = if spec.with_embeddings { args.dims } else { 0 };
    let rag_path = db_dir.join("rag-embeddings.json");
    let embeddings = Embeddings {
        model: model_name,
        dims,
        vectors,
        null_every,
    };
    let bytes = rag::write(&rag_path, id, args.episodes, &items, embeddings)?;

    match &source {
        Source::Random(e) if args.queries > 0 && !items.is_empty() => {
            queries::write(root, id, &queries::random(e, &items, args.queries), None)?;
        }
        Source::Model(m) if !args.query_texts.is_empty() => {
            queries::write(root, id, &m.queries, Some(&args.query_texts))?;
        }
        _ => {}
    }
    Ok(PodcastReport {
        rag_path,
        items: items.len(),
        dims,
        bytes,
        transcripts: has_transcript.iter().filter(|&&b| b).count(),
    })
}

/// Writes the metadata of `episodes` and the transcripts of every `--transcripts-every`-th to
/// `ep_dir`, and the speakers the transcripts tell of to `sp_dir`. Returns which episodes have
/// a transcript, in episode order.
fn write_episodes(
    args: &Args,
    spec: &PodcastSpec,
    seed: u64,
    episodes: &[Episode],
    ep_dir: &Path,
    sp_dir: &Path,
) -> Result<Vec<bool>> {
    let mut tally = Tally::default();
    let mut has_transcript = Vec::with_capacity(episodes.len());
    for ep in episodes {
        episodes::write(ep_dir, ep)?;
        let with_ts = args.transcripts_every > 0 && ep.number % args.transcripts_every == 0;
        has_transcript.push(with_ts);
        if with_ts {
            let ts = transcripts::generate(ep, seed, args.transcript_entries, spec.with_embeddings);
            tally.count(ep.number, &ts);
            write_pretty(&ep_dir.join(transcripts::file_name(ep.number)), &ts, false)?;
        }
    }
    speakers::write(sp_dir, tally, seed)?;
    Ok(has_transcript)
}

/// The model's passage embeddings of exactly the `text` each item is written with, in item
/// order; `None` for the items whose embedding `null_every` makes null.
fn passage_vectors(
    model: &Model,
    items: &[Item],
    null_every: Option<u64>,
) -> Result<Vec<Option<Vec<f32>>>> {
    let texts: Vec<&str> = items
        .iter()
        .filter(|i| !is_null(null_every, i))
        .map(|i| i.text.as_str())
        .collect();
    let mut fetched = model.embedder.embed(&texts, "passage")?.into_iter();
    Ok(items
        .iter()
        .map(|i| {
            if is_null(null_every, i) {
                None
            } else {
                fetched.next()
            }
        })
        .collect())
}
