//! Transcripts: the original JSON path against the archive, side by side in one run.
//!
//! `cargo bench --bench library`
//!
//! 1. Excerpt of a 5-minute window (from the median timed entry, at most 4,000 bytes, no
//!    speaker filter) of the largest timed transcript of the real corpus (`raumzeit`'s largest
//!    `<n>-ts.json`, if `../shared/corpus` is there), cold and warm:
//!    - JSON cold: parse the whole `<n>-ts.json`, then walk it (the original on a cache miss);
//!    - JSON warm: the entries already parsed, only the walk (the original's cache hit);
//!    - mmap cold: open the podcast's archive, then the excerpt (which checks that transcript
//!      on its first read: checksum and bytecheck);
//!    - mmap warm: archive open and transcript checked, only the excerpt.
//! 2. Opening a podcast does not depend on how much transcript text it holds: two generated
//!    podcasts (`podmap-gen`, into `target/bench-data/` once) of the same shape, with 200 and
//!    2,000 entries per transcript, opened with `MmapIndex::open_podcast`; and, for contrast,
//!    what the JSON path pays to have every transcript of the 1× podcast in memory.
//!
//! At the end a summary prints the ratios as Markdown tables.

mod support;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::Criterion;
use podmap::archive::SectionKind;

use podmap::index::archive_path;
use podmap::transcript::{self, json, parse_time, Window};
use podmap::MmapIndex;
use support::{bench, bench_data, convert, mean};

/// `(episode number, path)` of every `<n>-ts.json` of `podcast` below `data_root`.
fn transcript_files(data_root: &Path, podcast: &str) -> Vec<(u32, PathBuf)> {
    let dir = data_root.join("podcasts").join(podcast).join("episodes");
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let n = name.strip_suffix("-ts.json")?.parse().ok()?;
            Some((n, path))
        })
        .collect();
    found.sort();
    found
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

// ---------------------------------------------------------------------------
// 1. Excerpt of the largest corpus transcript
// ---------------------------------------------------------------------------

/// The corpus transcript and the window excerpted from it.
struct ExcerptCase {
    index_dir: PathBuf,
    podcast: &'static str,
    episode: u32,
    path: PathBuf,
    json_bytes: u64,
    entries: usize,
    window: Window<'static>,
    /// Bytes of the excerpt and lines in it.
    excerpt_len: usize,
    excerpt_lines: usize,
    /// Bytes of the episode's archived transcript record (what its first read checks).
    transcript_record_bytes: u64,
}

fn excerpt_case() -> Option<ExcerptCase> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    let podcast = "raumzeit";
    if !corpus.join("podcasts").join(podcast).is_dir() {
        println!(
            "note: {} not found: the corpus excerpt benchmarks are skipped",
            corpus.display()
        );
        return None;
    }
    let (episode, path) = transcript_files(&corpus, podcast)
        .into_iter()
        .max_by_key(|(n, path)| (file_len(path), *n))
        .expect("raumzeit has transcripts");
    let entries = json::load(&path).unwrap();
    let mut times: Vec<f64> = entries.iter().filter_map(|e| parse_time(&e.time)).collect();
    assert!(!times.is_empty(), "{} has no timed entries", path.display());
    times.sort_by(f64::total_cmp);
    let start = times[times.len() / 2];
    let window = Window {
        start,
        end: start + 300.0,
        speaker: None,
        max_chars: 4000,
    };

    let index_dir = bench_data().join("corpus-index");
    convert(&corpus, &index_dir, podcast);
    let index = MmapIndex::open_podcast(&index_dir, podcast).unwrap();
    let mapped = index.excerpt(episode, &window).unwrap();
    let original = json::excerpt(&entries, &window);
    assert_eq!(
        mapped,
        original,
        "archive and JSON excerpts of {} differ",
        path.display()
    );
    assert_ne!(
        mapped,
        transcript::placeholder(&window),
        "the window of {} is empty",
        path.display()
    );
    let transcript_record_bytes = index.transcript_bytes(episode);
    Some(ExcerptCase {
        transcript_record_bytes,
        index_dir,
        podcast,
        episode,
        json_bytes: file_len(&path),
        path,
        entries: entries.len(),
        window,
        excerpt_len: mapped.len(),
        excerpt_lines: mapped.lines().count(),
    })
}

fn excerpt_benches(c: &mut Criterion, case: &ExcerptCase) {
    let (dir, podcast, n, window) = (&case.index_dir, case.podcast, case.episode, &case.window);
    let mut group = c.benchmark_group("excerpt");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    bench(&mut group, "excerpt/json_cold", || {
        let entries = json::load(&case.path).unwrap();
        json::excerpt(&entries, black_box(window))
    });
    let entries = json::load(&case.path).unwrap();
    bench(&mut group, "excerpt/json_warm", || {
        json::excerpt(&entries, black_box(window))
    });
    bench(&mut group, "excerpt/mmap_cold", || {
        let index = MmapIndex::open_podcast(dir, podcast).unwrap();
        index.excerpt(n, black_box(window)).unwrap()
    });
    // The part of mmap cold that is not the transcript's: mapping and checking the archive.
    bench(&mut group, "excerpt/mmap_open", || {
        MmapIndex::open_podcast(dir, podcast).unwrap()
    });
    let index = MmapIndex::open_podcast(dir, podcast).unwrap();
    index.excerpt(n, window).unwrap();
    bench(&mut group, "excerpt/mmap_warm", || {
        index.excerpt(n, black_box(window)).unwrap()
    });
    group.finish();
}

// ---------------------------------------------------------------------------
// 2. Open time against transcript volume
// ---------------------------------------------------------------------------

/// A generated podcast of the volume series.
struct Volume {
    name: String,
    entries_per_transcript: u32,
    data_root: PathBuf,
    index_dir: PathBuf,
    archive_bytes: u64,
    transcripts_section: u64,
    transcripts_json: u64,
    transcript_count: usize,
}

const VOLUME_PODCAST: &str = "vol";

fn volume(multiple: u32) -> Volume {
    let entries = 200 * multiple;
    let name = format!("vol-{multiple}x");
    let root = bench_data().join(&name);
    if !root.is_dir() {
        // Generated beside the final place and renamed, so an interrupted run leaves no
        // half-written data root behind to be taken as complete.
        let partial = bench_data().join(format!("{name}.partial"));
        let _ = std::fs::remove_dir_all(&partial);
        eprintln!("generating {name} into {} …", root.display());
        let status = Command::new(env!("CARGO_BIN_EXE_podmap-gen"))
            .args(["--out", partial.to_str().unwrap()])
            .args(["--podcast-id", VOLUME_PODCAST])
            .args(["--items", "200", "--dims", "384", "--episodes", "100"])
            .args(["--transcripts-every", "1"])
            .args(["--transcript-entries", &entries.to_string()])
            .status()
            .expect("run podmap-gen");
        assert!(status.success());
        std::fs::rename(&partial, &root).unwrap();
    }
    let index_dir = root.join("index");
    convert(&root, &index_dir, VOLUME_PODCAST);
    let index = MmapIndex::open_podcast(&index_dir, VOLUME_PODCAST).unwrap();
    let transcripts_section = index
        .header()
        .section(SectionKind::Transcripts)
        .expect("transcripts section")
        .len;
    let files = transcript_files(&root, VOLUME_PODCAST);
    Volume {
        name,
        entries_per_transcript: entries,
        archive_bytes: file_len(&archive_path(&index_dir, VOLUME_PODCAST)),
        transcripts_section,
        transcripts_json: files.iter().map(|(_, p)| file_len(p)).sum(),
        transcript_count: files.len(),
        data_root: root,
        index_dir,
    }
}

fn open_benches(c: &mut Criterion, sets: &[Volume]) {
    let mut group = c.benchmark_group("open_podcast");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for set in sets {
        bench(
            &mut group,
            &format!("open_podcast/mmap/{}", set.name),
            || MmapIndex::open_podcast(&set.index_dir, VOLUME_PODCAST).unwrap(),
        );
    }
    // The JSON path's equivalent: every transcript of the podcast parsed into memory.
    let base = &sets[0];
    let files = transcript_files(&base.data_root, VOLUME_PODCAST);
    group.sample_size(10);
    bench(
        &mut group,
        &format!("open_podcast/json_all_transcripts/{}", base.name),
        || {
            files
                .iter()
                .map(|(_, path)| json::load(path).unwrap())
                .collect::<Vec<_>>()
        },
    );
    group.finish();
}

// ---------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------

fn time(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.2} µs", s * 1e6)
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

fn ratio(slow: Duration, fast: Duration) -> f64 {
    slow.as_secs_f64() / fast.as_secs_f64()
}

fn summary(case: Option<&ExcerptCase>, sets: &[Volume]) {
    println!(
        "\n## podmap transcript bench summary ({} threads)\n",
        rayon::current_num_threads()
    );
    if let Some(case) = case {
        let w = &case.window;
        println!(
            "{} episode {}: {} ({} entries); window {} – {} ({} s → {} s), max {} bytes: \
             excerpt of {} lines, {} bytes; archive and JSON excerpts identical.\n",
            case.podcast,
            case.episode,
            mb(case.json_bytes),
            case.entries,
            transcript::format_hms(w.start),
            transcript::format_hms(w.end),
            w.start,
            w.end,
            w.max_chars,
            case.excerpt_lines,
            case.excerpt_len,
        );
    }
    println!("| dataset | measure | JSON path | mmap path | ratio |");
    println!("|---|---|---:|---:|---:|");
    if let Some(case) = case {
        let d = format!("{} #{} (corpus)", case.podcast, case.episode);
        let rows = [
            (
                "5-min excerpt, cold (JSON: parse file + walk; mmap: open + check + excerpt)",
                "excerpt/json_cold",
                "excerpt/mmap_cold",
                "",
            ),
            (
                "5-min excerpt, warm (JSON: entries cached; mmap: open, checked)",
                "excerpt/json_warm",
                "excerpt/mmap_warm",
                "",
            ),
            (
                "5-min excerpt, warm mmap vs JSON parse path",
                "excerpt/json_cold",
                "excerpt/mmap_warm",
                " (target ≥ 50×)",
            ),
        ];
        for (label, json_id, mmap_id, note) in rows {
            if let (Some(j), Some(m)) = (mean(json_id), mean(mmap_id)) {
                println!(
                    "| {d} | {label} | {} | {} | **{:.1}× faster**{note} |",
                    time(j),
                    time(m),
                    ratio(j, m)
                );
            }
        }
    }
    if let Some(case) = case {
        if let (Some(cold), Some(open), Some(warm)) = (
            mean("excerpt/mmap_cold"),
            mean("excerpt/mmap_open"),
            mean("excerpt/mmap_warm"),
        ) {
            let check = cold.saturating_sub(open).saturating_sub(warm);
            println!(
                "| {} #{} (corpus) | mmap cold, split: `open_podcast` + first-read check of \
                 the transcript ({}) + excerpt | | {} + {} + {} | |",
                case.podcast,
                case.episode,
                mb(case.transcript_record_bytes),
                time(open),
                time(check),
                time(warm)
            );
        }
    }
    if let Some(base) = sets.first() {
        if let (Some(j), Some(m)) = (
            mean(&format!("open_podcast/json_all_transcripts/{}", base.name)),
            mean(&format!("open_podcast/mmap/{}", base.name)),
        ) {
            println!(
                "| {} (generated) | open podcast with its {} transcripts (JSON: parse every \
                 `-ts.json`; mmap: `open_podcast`) | {} | {} | **{:.0}× faster** |",
                base.name,
                base.transcript_count,
                time(j),
                time(m),
                ratio(j, m)
            );
        }
    }

    println!("\n### open time against transcript volume\n");
    println!(
        "| dataset | entries per transcript | transcripts (JSON) | transcripts section | \
         archive | `open_podcast` |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for set in sets {
        let open = mean(&format!("open_podcast/mmap/{}", set.name));
        println!(
            "| {} | {} | {} × {} = {} | {} | {} | {} |",
            set.name,
            set.entries_per_transcript,
            set.transcript_count,
            mb(set.transcripts_json / set.transcript_count.max(1) as u64),
            mb(set.transcripts_json),
            mb(set.transcripts_section),
            mb(set.archive_bytes),
            open.map(time).unwrap_or_default()
        );
    }
    if let [small, large, ..] = sets {
        if let (Some(a), Some(b)) = (
            mean(&format!("open_podcast/mmap/{}", small.name)),
            mean(&format!("open_podcast/mmap/{}", large.name)),
        ) {
            println!(
                "\nopen time {} / {}: **{:.2}×** for {:.1}× the transcript bytes (expected ≈ 1×)",
                large.name,
                small.name,
                ratio(b, a),
                large.transcripts_section as f64 / small.transcripts_section.max(1) as f64
            );
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let case = excerpt_case();
    let sets = [volume(1), volume(10)];
    if let Some(case) = &case {
        excerpt_benches(&mut c, case);
    }
    open_benches(&mut c, &sets);
    c.final_summary();
    summary(case.as_ref(), &sets);
}
