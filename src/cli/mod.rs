//! The `podmap` command line: the commands, their arguments, and which module runs each.
//!
//! Each command lives in its own file with its arguments and what it prints. stdout carries
//! results (one summary line per podcast, search hits, headers) and stays machine-readable
//! with `--json`; progress bars and diagnostics go to stderr.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod analytics;
mod archive;
mod convert;
mod library;
mod logging;
mod search;
mod serve;
mod warm;

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
    Serve(Box<serve::ServeArgs>),
    /// Read archives into the page cache, so the first search after a reboot is fast.
    ///
    /// After a reboot or a deploy to a new machine no archive is in the page cache, and the
    /// first search of each podcast reads its whole vector matrix (or, in the int8 and binary
    /// modes, its codes) from disk, a readahead window at a time. `warm` reads the matrices and
    /// codes in beforehand (madvise WillNeed, then one byte per page), printing per podcast the
    /// bytes read and the time; `--all` reads every section.
    /// `podmap serve --preload` does the same at start and after each reload.
    Warm(warm::WarmArgs),
    /// Maintain the analytics database of `podmap serve` (copy it to another store).
    Analytics(analytics::AnalyticsArgs),
    /// Print an archive's header.
    Inspect(archive::InspectArgs),
    /// Check every archive in an index directory fully (checksums and structure).
    ///
    /// Exits non-zero if any archive fails.
    Verify(archive::VerifyArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Convert(args) => convert::run(args),
        Command::Search(args) => search::run(args),
        Command::Episodes(args) => library::episodes(args),
        Command::Transcript(args) => library::transcript(args),
        Command::Speakers(args) => library::speakers(args),
        Command::Serve(args) => serve::run(*args),
        Command::Analytics(args) => analytics::run(args),
        Command::Warm(args) => warm::run(args),
        Command::Inspect(args) => archive::inspect(args),
        Command::Verify(args) => archive::verify(args),
    }
}

/// Where `search` and `serve` read podcasts from (`--source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Source {
    /// The memory-mapped archive (fast path).
    Mmap,
    /// The original JSON, parsed into memory the way the original server does (baseline).
    Json,
}

const INDEX_REQUIRED: &str = "--index INDEX_DIR is required (or --source json --data ROOT)";
const DATA_REQUIRED: &str = "--source json needs --data ROOT, the original data root";

/// Where progress bars draw: stderr on a terminal, nowhere otherwise, so logs and pipes get
/// the closing lines only.
fn progress_target() -> indicatif::ProgressDrawTarget {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    }
}
