//! The `podmap` command line: argument definitions and what each command prints.
//!
//! stdout carries results (one summary line per podcast, search hits, headers) and stays
//! machine-readable with `--json`; progress bars and diagnostics go to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

mod archive;
mod convert;
mod library;
mod search;

/// podmap: memory-mapped indexes for podcast archives.
///
/// Convert the JSON that the ingest pipeline writes (`db/<podcast>/rag-embeddings.json`) into
/// binary archives once, then search them without parsing anything.
#[derive(Debug, Parser)]
#[command(name = "podmap", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert each podcast (RAG file, episodes, transcripts, speakers) into an archive.
    ///
    /// Streams every input (memory does not grow with file size), converts podcasts in
    /// parallel and replaces each archive atomically: a failed conversion leaves the previous
    /// archive as it was. Podcasts whose input files are unchanged (names, sizes, mtimes)
    /// are skipped. Exits non-zero if any podcast failed, after converting the others.
    Convert(convert::ConvertArgs),
    /// Search one podcast by vector (cosine, exact top-k) or by text (lexical).
    Search(search::SearchArgs),
    /// List a podcast's episodes (those with metadata), newest first.
    Episodes(library::EpisodesArgs),
    /// Print an episode's transcript, or with --from/--to exactly the excerpt chat sources get.
    Transcript(library::TranscriptArgs),
    /// List a podcast's speakers (from speakers/index.json), with profile and image.
    Speakers(library::SpeakersArgs),
    /// Serve the original server's HTTP API from the archives, reloading replaced ones.
    ///
    /// Nothing is parsed at start-up: archives are mapped, so the server answers within
    /// milliseconds whatever their size. With --source json it serves the same API from the
    /// original JSON files, loaded the original way (the baseline).
    Serve(Box<ServeArgs>),
    /// Print an archive's header.
    Inspect(archive::InspectArgs),
    /// Check every archive in an index directory fully (checksums and structure).
    ///
    /// Exits non-zero if any archive fails.
    Verify(archive::VerifyArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Source {
    /// The memory-mapped archive (fast path).
    Mmap,
    /// The original JSON, parsed into memory the way the original server does (baseline).
    Json,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Index directory written by `podmap convert`.
    #[arg(long, value_name = "INDEX_DIR")]
    index: Option<PathBuf>,
    /// Where to read the podcasts from.
    #[arg(long, value_enum, default_value_t = Source::Mmap)]
    source: Source,
    /// Data root in the original layout (with --source json).
    #[arg(long, value_name = "ROOT")]
    data: Option<PathBuf>,
    #[command(flatten)]
    settings: podmap::server::SettingsArgs,
}

const INDEX_REQUIRED: &str = "--index INDEX_DIR is required (or --source json --data ROOT)";
const DATA_REQUIRED: &str = "--source json needs --data ROOT, the original data root";

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Convert(args) => convert::run(args),
        Command::Search(args) => search::run(args),
        Command::Episodes(args) => library::episodes(args),
        Command::Transcript(args) => library::transcript(args),
        Command::Speakers(args) => library::speakers(args),
        Command::Serve(args) => run_serve(*args),
        Command::Inspect(args) => archive::inspect(args),
        Command::Verify(args) => archive::verify(args),
    }
}

fn run_serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = podmap::server::Settings::load(args.settings)?;
    let source = match args.source {
        Source::Mmap => podmap::server::Source::Mmap(args.index.context(INDEX_REQUIRED)?),
        Source::Json => podmap::server::Source::Json(args.data.context(DATA_REQUIRED)?),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(podmap::server::serve(source, settings))?;
    Ok(ExitCode::SUCCESS)
}
