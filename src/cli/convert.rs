//! `podmap convert`: turns the original JSON layout into archives and prints one summary
//! line per podcast.
//!
//! The summary's sizes are the only byte counts the command line prints, so `human_bytes`
//! lives here beside them.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::MultiProgress;

use podmap::convert::{self, ConvertOptions, Outcome};
use podmap::mem::ProcessMemory;

#[derive(Debug, Args)]
pub(super) struct ConvertArgs {
    /// Data root in the original layout: db/<podcast>/rag-embeddings.json and
    /// podcasts/<podcast>/{episodes,speakers}/.
    #[arg(long, value_name = "ROOT")]
    data: PathBuf,
    /// Index directory to write; each podcast goes to <INDEX_DIR>/<podcast>/rag.podmap.
    #[arg(long, value_name = "INDEX_DIR")]
    out: PathBuf,
    /// Convert only this podcast (repeatable). Default: every podcast under ROOT/db and
    /// ROOT/podcasts.
    #[arg(long = "podcast", value_name = "ID")]
    podcasts: Vec<String>,
    /// Convert even if the input has not changed since the archive was written.
    #[arg(long)]
    force: bool,
}

pub(super) fn run(args: ConvertArgs) -> anyhow::Result<ExitCode> {
    let opts = ConvertOptions {
        data_root: args.data,
        out_dir: args.out,
        podcasts: args.podcasts,
        force: args.force,
    };
    let progress = MultiProgress::with_draw_target(super::progress_target());
    let reports = convert::convert_all(&opts, &progress)
        .with_context(|| format!("cannot read data root {}", opts.data_root.display()))?;
    if reports.is_empty() {
        bail!(
            "no podcasts found: expected {}/db/<podcast>/rag-embeddings.json",
            opts.data_root.display()
        );
    }
    let mut failed = 0;
    let mut stdout = std::io::stdout().lock();
    for r in &reports {
        for warning in &r.warnings {
            eprintln!("podmap: warning: {warning}");
        }
        let secs = r.elapsed.as_secs_f64();
        match &r.result {
            Ok(Outcome::Converted(w)) => writeln!(
                stdout,
                "{}: {} items ({} embedded), {} dims, {} episodes, {} transcripts, {} in, {} out, {:.2} s",
                r.podcast,
                w.items,
                w.embedded,
                w.dims,
                w.episodes,
                w.transcripts,
                human_bytes(r.input_bytes),
                human_bytes(w.bytes),
                secs
            )?,
            Ok(Outcome::Unchanged(path)) => writeln!(
                stdout,
                "{}: unchanged ({} is up to date; --force converts anyway)",
                r.podcast,
                path.display()
            )?,
            Err(e) => {
                failed += 1;
                writeln!(stdout, "{}: FAILED", r.podcast)?;
                eprintln!("podmap: error: {}: {e}", r.podcast);
            }
        }
    }
    let mem = ProcessMemory::current();
    eprintln!(
        "podmap: {} podcast(s), {} failed; peak memory {}",
        reports.len(),
        failed,
        human_bytes(mem.peak_rss_kib * 1024)
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
