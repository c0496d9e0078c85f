//! `podmap episodes`, `transcript` and `speakers`: what an archive holds besides the search
//! items, read through the index's views and printed as tables, text or JSON.
//!
//! The three commands read one podcast's archive the same way (`PodcastArg`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, ValueEnum};
use serde_json::json;

use podmap::index::EpisodeOrder;
use podmap::transcript::Window;
use podmap::MmapIndex;

/// Which archive to read.
#[derive(Debug, Args)]
struct PodcastArg {
    /// Index directory written by `podmap convert`.
    #[arg(long, value_name = "INDEX_DIR")]
    index: PathBuf,
    /// Podcast id.
    #[arg(long, value_name = "ID")]
    podcast: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Order {
    /// Highest episode number first (as the original's /api/episodes/latest).
    Number,
    /// Newest date first.
    Date,
}

#[derive(Debug, Args)]
pub(super) struct EpisodesArgs {
    #[command(flatten)]
    podcast: PodcastArg,
    /// At most this many episodes.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Skip this many first.
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// Sort order.
    #[arg(long, value_enum, default_value_t = Order::Number)]
    order: Order,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct TranscriptArgs {
    #[command(flatten)]
    podcast: PodcastArg,
    /// Episode number.
    #[arg(long, value_name = "N")]
    episode: u32,
    /// Window start in seconds (with --to: print the excerpt of that window).
    #[arg(long, value_name = "SEC", requires = "to")]
    from: Option<f64>,
    /// Window end in seconds.
    #[arg(long, value_name = "SEC", requires = "from")]
    to: Option<f64>,
    /// Only this speaker's lines (case-insensitive).
    #[arg(long, value_name = "NAME")]
    speaker: Option<String>,
    /// Excerpt length limit in bytes, as the original counts it.
    #[arg(long, value_name = "N", default_value_t = 4000)]
    max_chars: usize,
}

#[derive(Debug, Args)]
pub(super) struct SpeakersArgs {
    #[command(flatten)]
    podcast: PodcastArg,
    /// Print JSON (the shape of the original's /api/speakers).
    #[arg(long)]
    json: bool,
}

fn open(arg: &PodcastArg) -> anyhow::Result<MmapIndex> {
    Ok(MmapIndex::open_podcast(&arg.index, &arg.podcast)?)
}

pub(super) fn episodes(args: EpisodesArgs) -> anyhow::Result<ExitCode> {
    let index = open(&args.podcast)?;
    let order = match args.order {
        Order::Number => EpisodeOrder::Number,
        Order::Date => EpisodeOrder::Date,
    };
    let (page, total) = index.episode_page(order, args.offset, args.limit)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let episodes: Vec<_> = page
            .iter()
            .map(|e| {
                json!({
                    "episodeNumber": e.number(),
                    "title": e.title(),
                    "date": e.date(),
                    "durationSec": e.duration_sec(),
                    "description": e.description(),
                    "speakers": e.speakers().map(|v| v.collect::<Vec<_>>()),
                    "topics": e.topics().collect::<Vec<_>>(),
                    "hasImage": e.has_image(),
                    "hasTranscript": e.has_transcript(),
                })
            })
            .collect();
        writeln!(out, "{}", json!({ "episodes": episodes, "total": total }))?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "{total} episodes")?;
    writeln!(
        out,
        "{:>6}  {:<10}  {:>4}  {:>6}  title",
        "number", "date", "ts", "topics"
    )?;
    for e in page {
        writeln!(
            out,
            "{:>6}  {:<10}  {:>4}  {:>6}  {}",
            e.number(),
            e.date().unwrap_or(""),
            if e.has_transcript() { "yes" } else { "-" },
            e.topics().len(),
            e.title().unwrap_or(""),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn transcript(args: TranscriptArgs) -> anyhow::Result<ExitCode> {
    let index = open(&args.podcast)?;
    let mut out = std::io::stdout().lock();
    if let (Some(start), Some(end)) = (args.from, args.to) {
        let window = Window {
            start,
            end,
            speaker: args.speaker.as_deref(),
            max_chars: args.max_chars,
        };
        writeln!(out, "{}", index.excerpt(args.episode, &window)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(transcript) = index.transcript(args.episode)? else {
        bail!(
            "episode {} of {} has no transcript",
            args.episode,
            args.podcast.podcast
        );
    };
    let filter = Window {
        start: f64::NEG_INFINITY,
        end: f64::INFINITY,
        speaker: args.speaker.as_deref(),
        max_chars: usize::MAX,
    };
    for entry in transcript.entries() {
        if !filter.accepts_speaker(entry.speaker) {
            continue;
        }
        let who = entry
            .speaker
            .filter(|s| !s.trim().is_empty())
            .unwrap_or("unknown");
        let text = entry.text.trim();
        match entry.time {
            "" => writeln!(out, "{who}: {text}")?,
            time => writeln!(out, "[{time}] {who}: {text}")?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn speakers(args: SpeakersArgs) -> anyhow::Result<ExitCode> {
    let index = open(&args.podcast)?;
    let rows: Vec<_> = match index.speakers()? {
        Some(s) => s.iter().collect(),
        None => Vec::new(),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let speakers: Vec<_> = rows
            .iter()
            .map(|r| {
                let mut v = json!({
                    "speaker": r.name(),
                    "slug": r.slug(),
                    "episodesCount": r.episodes_count(),
                    "utterancesCount": r.utterances_count(),
                    "totalWords": r.total_words(),
                    "hasProfile": r.profile().is_some(),
                });
                if let Some(image) = r.image() {
                    v["image"] = json!(image);
                }
                v
            })
            .collect();
        writeln!(out, "{}", json!({ "speakers": speakers }))?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "{} speakers", rows.len())?;
    writeln!(
        out,
        "{:<28} {:<28} {:>8} {:>10} {:>10}  profile",
        "speaker", "slug", "episodes", "utterances", "words"
    )?;
    for r in rows {
        writeln!(
            out,
            "{:<28} {:<28} {:>8} {:>10} {:>10}  {}",
            r.name(),
            r.slug(),
            r.episodes_count(),
            r.utterances_count(),
            r.total_words(),
            if r.profile().is_some() { "yes" } else { "-" }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
