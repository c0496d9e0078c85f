//! `podmap analytics`: maintenance of the analytics database that `podmap serve` writes.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use podmap::server::analytics::copy::{self, Progress};
use podmap::server::config::redact;

#[derive(Debug, Args)]
pub(super) struct AnalyticsArgs {
    #[command(subcommand)]
    command: AnalyticsCommand,
}

#[derive(Debug, Subcommand)]
enum AnalyticsCommand {
    /// Copy every page view and episode play into another database, e.g. the original's
    /// analytics.db into PostgreSQL, keeping their ids. A copy that stopped part-way goes on
    /// where it stopped when run again; a finished one copies nothing more. Shows a progress
    /// bar on a terminal and prints the row counts.
    Copy {
        /// Source database: sqlite://FILE or postgres://…
        #[arg(long, value_name = "URL")]
        from: String,
        /// Destination database (created or migrated): empty, or written by an earlier copy
        /// from the same source. Copy before replicas start writing to it.
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

pub(super) fn run(args: AnalyticsArgs) -> anyhow::Result<ExitCode> {
    let AnalyticsCommand::Copy { from, to } = args.command;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let bar = ProgressBar::with_draw_target(None, super::progress_target());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>14} [{bar:40}] {human_pos}/{human_len} rows, eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let mut progress = |step: Progress| match step {
        Progress::Table { table, done, total } => {
            bar.set_message(table.name());
            bar.set_length(total);
            bar.set_position(done.min(total));
            bar.reset_eta();
        }
        Progress::Rows(n) => bar.inc(n),
    };
    let copied = runtime.block_on(copy::copy(&from, &to, &mut progress));
    bar.finish_and_clear();
    let copied = copied.with_context(|| {
        format!(
            "cannot copy {} into {}",
            redact::url(&from),
            redact::url(&to)
        )
    })?;
    println!(
        "copied {} page view(s) and {} episode play(s)",
        copied.page_views, copied.episode_plays
    );
    if copied.page_views_before + copied.episode_plays_before > 0 {
        println!(
            "the destination held {} page view(s) and {} episode play(s) of an earlier copy already",
            copied.page_views_before, copied.episode_plays_before
        );
    }
    Ok(ExitCode::SUCCESS)
}
