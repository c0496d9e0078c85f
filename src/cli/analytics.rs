//! `podmap analytics`: maintenance of the analytics database that `podmap serve` writes.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub(super) struct AnalyticsArgs {
    #[command(subcommand)]
    command: AnalyticsCommand,
}

#[derive(Debug, Subcommand)]
enum AnalyticsCommand {
    /// Copy every page view and episode play into another, empty database, e.g. the
    /// original's analytics.db into PostgreSQL. Prints the row counts.
    Copy {
        /// Source database: sqlite://FILE or postgres://…
        #[arg(long, value_name = "URL")]
        from: String,
        /// Destination database (created or migrated; must hold no rows).
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
    let copied = runtime.block_on(podmap::server::analytics::copy::copy(&from, &to))?;
    println!(
        "copied {} page view(s) and {} episode play(s)",
        copied.page_views, copied.episode_plays
    );
    Ok(ExitCode::SUCCESS)
}
