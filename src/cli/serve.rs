//! `podmap serve`: sets up logging and an async runtime, then hands over to the library's
//! HTTP server; everything the server does lives in `podmap::server`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::{Source, DATA_REQUIRED, INDEX_REQUIRED};

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
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

pub(super) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    // Settings first: they say how to log (a config file that cannot be read is reported by
    // `main` on stderr, as every other command's errors are).
    let settings = podmap::server::Settings::load(args.settings)?;
    let _log = super::logging::init(settings.log_format);
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
