//! `podmap warm`: reads archives into the page cache before the first query needs them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use podmap::index::{list_archives, WarmScope};
use podmap::MmapIndex;

#[derive(Debug, Args)]
pub(super) struct WarmArgs {
    /// Index directory written by `podmap convert`.
    #[arg(value_name = "INDEX_DIR")]
    index: PathBuf,
    /// Only this podcast (repeatable) [default: every archive in INDEX_DIR].
    #[arg(long = "podcast", value_name = "ID")]
    podcasts: Vec<String>,
    /// Every section (items, episodes, transcripts, speakers), not only the vector matrix and
    /// its codes.
    #[arg(long)]
    all: bool,
}

pub(super) fn run(args: WarmArgs) -> anyhow::Result<ExitCode> {
    let mut archives = list_archives(&args.index)
        .with_context(|| format!("cannot list the archives in {}", args.index.display()))?;
    if !args.podcasts.is_empty() {
        for id in &args.podcasts {
            if !archives.iter().any(|(found, _)| found == id) {
                anyhow::bail!(
                    "{}: no archive for podcast {id:?} (expected {})",
                    args.index.display(),
                    podmap::index::archive_path(&args.index, id).display()
                );
            }
        }
        archives.retain(|(id, _)| args.podcasts.contains(id));
    }
    let scope = if args.all {
        WarmScope::All
    } else {
        WarmScope::Vectors
    };
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
    )
    .expect("valid template")
    .progress_chars("=> ");
    for (id, path) in archives {
        let started = Instant::now();
        let index = MmapIndex::open(&path)?;
        let bar =
            ProgressBar::with_draw_target(Some(index.warm_len(scope)), super::progress_target())
                .with_style(style.clone())
                .with_prefix(id.clone());
        let bytes = index.warm(scope, |done| bar.set_position(done));
        bar.finish_and_clear();
        println!(
            "{id}: warmed {bytes} bytes ({:.1} MiB, {}) in {:.1} ms",
            bytes as f64 / (1 << 20) as f64,
            if args.all {
                "all sections"
            } else {
                "matrix and codes"
            },
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(ExitCode::SUCCESS)
}
