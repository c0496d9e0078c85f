//! Properties checked on generated inputs (proptest, a bounded number of cases each, fast in
//! debug builds):
//!
//! - a converted fixture archive with bits flipped, its end cut off or ranges overwritten,
//!   with its checksums left stale or recomputed, is refused or read, never a panic; and an
//!   archive that `verify` accepts reads whole;
//! - exact top-k equals a brute-force ranking on random matrices with many ties (ties to the
//!   lower row), with and without episode filters, and so does every score;
//! - range and set filters accept exactly what a plain comparison accepts;
//! - archived transcript excerpts equal the original's linear walk over the JSON, for random
//!   transcripts (sorted or not, untimed entries, blank speakers) and random windows.
//!
//! The damaged-archive reads are the fuzz targets' own (`fuzz/src/reads.rs`), so the fuzzer
//! and these tests exercise the same calls.

mod common;

#[path = "../fuzz/src/reads.rs"]
mod reads;
#[path = "../fuzz/src/seal.rs"]
mod seal;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::json;

use podmap::search::kernel;
use podmap::search::scan::{self, Matrix};
use podmap::transcript::{json as transcript_json, Window};
use podmap::{Filter, Hit, MmapIndex};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Damaged archives

/// The fixture podcast with items, episodes, transcripts and speakers.
fn fixture_archive() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let path = common::fixtures_index().join("demo-raumfahrt/rag.podmap");
        std::fs::read(path).unwrap()
    })
}

#[derive(Debug, Clone)]
enum Damage {
    Flip { at: usize, bit: u8 },
    Truncate { len: usize },
    Overwrite { at: usize, bytes: Vec<u8> },
}

/// A position in a file of `len` bytes: half the time in the 4 KiB header, which every open
/// reads, half the time anywhere.
fn position(len: usize) -> impl Strategy<Value = usize> {
    prop_oneof![0..4096usize.min(len), 0..len]
}

fn damage(len: usize) -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => (position(len), 0..8u8).prop_map(|(at, bit)| Damage::Flip { at, bit }),
        1 => (0..len).prop_map(|len| Damage::Truncate { len }),
        3 => (position(len), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, bytes)| Damage::Overwrite { at, bytes }),
    ]
}

fn apply(bytes: &mut Vec<u8>, damage: &Damage) {
    match damage {
        Damage::Flip { at, bit } => {
            if let Some(b) = bytes.get_mut(*at) {
                *b ^= 1 << bit;
            }
        }
        Damage::Truncate { len } => bytes.truncate(*len),
        Damage::Overwrite { at, bytes: with } => {
            for (i, b) in with.iter().enumerate() {
                if let Some(slot) = bytes.get_mut(at + i) {
                    *slot = *b;
                }
            }
        }
    }
}

/// Every read of `path`; and when `verify` accepts the archive, that every record reads.
fn read_all(path: &Path) {
    reads::open_search(path);
    reads::open_read(path);
    let Ok(index) = MmapIndex::open(path) else {
        return;
    };
    if index.verify().is_ok() {
        for i in 0..podmap::SearchIndex::len(&index) {
            index
                .item_full(i)
                .expect("a verified archive reads every item");
        }
        for n in index.episode_numbers().collect::<Vec<_>>() {
            index.episode(n).expect("and every episode");
            index.transcript(n).expect("and every transcript");
        }
        index.speakers().expect("and its speakers");
    }
}

#[test]
fn the_undamaged_fixture_archive_reads_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rag.podmap");
    std::fs::write(&path, fixture_archive()).unwrap();
    MmapIndex::open(&path).unwrap().verify().unwrap();
    // The reads the damaged archives get find something to read here: searches, items,
    // episodes, transcripts, speakers and the verification.
    assert!(reads::open_search(&path) > 10);
    assert!(reads::open_read(&path) > 10);
    assert!(
        seal::reseal(fixture_archive()).as_slice() == fixture_archive(),
        "resealing an intact archive changes nothing"
    );
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn damaged_archives_are_refused_or_read_never_a_panic(
        damages in prop::collection::vec(damage(fixture_archive().len()), 1..4),
        resealed in any::<bool>(),
    ) {
        let mut bytes = fixture_archive().to_vec();
        for d in &damages {
            apply(&mut bytes, d);
        }
        let head = &bytes[..bytes.len().min(4096)];
        reads::header(head, bytes.len() as u64);
        reads::header(&seal::reseal(head), bytes.len() as u64);
        let dir = tempfile::tempdir().unwrap();
        let path: PathBuf = dir.path().join("rag.podmap");
        if resealed {
            std::fs::write(&path, seal::reseal(&bytes).as_slice()).unwrap();
        } else {
            std::fs::write(&path, &bytes).unwrap();
        }
        read_all(&path);
    }
}

// ---------------------------------------------------------------------------------------------
// Top-k and filters against brute force

/// A matrix in memory: unit rows (zero rows for items without an embedding) and the episode
/// column, as the scan sees an archive.
#[derive(Debug, Clone)]
struct Rows {
    dims: usize,
    rows: Vec<f32>,
    embedded: Vec<bool>,
    episodes: Vec<u32>,
}

impl Matrix for Rows {
    fn row_len(&self) -> usize {
        self.dims
    }
    fn rows(&self) -> &[f32] {
        &self.rows
    }
    fn embedded_rows(&self) -> usize {
        self.embedded.iter().filter(|&&e| e).count()
    }
    fn columns(&self) -> impl Fn(usize) -> (bool, u32) + Send + Sync + '_ {
        move |i| (self.embedded[i], self.episodes[i])
    }
}

/// Rows of small integers (so that equal rows, hence equal scores, are common), normalised;
/// some rows without an embedding; episodes 0..8. Enough rows for more than one scan task.
fn rows() -> impl Strategy<Value = Rows> {
    (1..6usize, 1..600usize).prop_flat_map(|(dims, n)| {
        let row = (
            prop::collection::vec(-2i8..=2, dims),
            prop::bool::weighted(0.9),
            0..8u32,
        );
        prop::collection::vec(row, n).prop_map(move |raw| {
            let mut m = Rows {
                dims,
                rows: Vec::new(),
                embedded: Vec::new(),
                episodes: Vec::new(),
            };
            for (values, wanted, episode) in raw {
                let norm = values
                    .iter()
                    .map(|&v| f32::from(v) * f32::from(v))
                    .sum::<f32>()
                    .sqrt();
                let embedded = wanted && norm > 0.0;
                m.rows.extend(values.iter().map(
                    |&v| {
                        if embedded {
                            f32::from(v) / norm
                        } else {
                            0.0
                        }
                    },
                ));
                m.embedded.push(embedded);
                m.episodes.push(episode);
            }
            m
        })
    })
}

fn filter() -> impl Strategy<Value = Filter> {
    prop_oneof![
        Just(Filter::all()),
        (0..9u32, 0..9u32).prop_map(|(a, b)| Filter::episode_range(a, b)),
        prop::collection::vec(0..9u32, 0..5).prop_map(Filter::episode_set),
    ]
}

/// Every embedded row `filter` lets through, scored with the same kernel as the scan, best
/// first, ties to the lower row: the documented rule, by sorting everything.
fn brute_force(m: &Rows, query: &[f32], filter: &Filter) -> Vec<Hit> {
    let norm = query
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    let unit: Vec<f32> = query
        .iter()
        .map(|&x| (f64::from(x) / norm) as f32)
        .collect();
    let mut hits: Vec<Hit> = (0..m.embedded.len())
        .filter(|&i| m.embedded[i] && plain_accepts(filter, m.episodes[i]))
        .map(|i| Hit {
            index: i as u32,
            score: kernel::dot(&unit, &m.rows[i * m.dims..(i + 1) * m.dims]),
        })
        .filter(|h| h.score.is_finite())
        .collect();
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
    hits
}

/// What a filter means, written out without its sorted set or inclusive range.
fn plain_accepts(filter: &Filter, episode: u32) -> bool {
    match &filter.episodes {
        podmap::search::EpisodeFilter::All => true,
        podmap::search::EpisodeFilter::Range { from, to } => *from <= episode && episode <= *to,
        podmap::search::EpisodeFilter::Set(set) => set.contains(&episode),
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn top_k_equals_brute_force_with_ties_to_the_lower_row(
        (m, query) in rows().prop_flat_map(|m| {
            let dims = m.dims;
            (Just(m), prop::collection::vec(-2i8..=2, dims))
        }),
        k in 0..40usize,
        filter in filter(),
    ) {
        let query: Vec<f32> = query.into_iter().map(f32::from).collect();
        let searchable = m.embedded_rows() > 0 && query.iter().any(|&x| x != 0.0);
        let got = scan::top_k(&m, &query, k, &filter);
        let all = scan::score_all(&m, &query, &filter);
        if !searchable {
            prop_assert!(got.is_err() && all.is_err());
            return Ok(());
        }
        let expected = brute_force(&m, &query, &filter);
        prop_assert_eq!(got.unwrap(), expected.iter().copied().take(k).collect::<Vec<_>>());
        prop_assert_eq!(all.unwrap(), expected);
    }

    /// The read limit's sum reads every float once, whichever thread takes which task.
    #[test]
    fn read_all_sums_every_float(m in rows()) {
        let want: f64 = m.rows.iter().map(|&x| f64::from(x)).sum();
        let got = f64::from(scan::read_all(&m));
        prop_assert!((got - want).abs() <= 1e-3 * (1.0 + want.abs()), "{} against {}", got, want);
    }

    #[test]
    fn filters_accept_what_a_plain_comparison_accepts(
        filter in filter(),
        episode in 0..10u32,
    ) {
        prop_assert_eq!(filter.accepts(episode), plain_accepts(&filter, episode));
    }
}

/// The fixture archive searched with random queries: its top-k is the brute force over its
/// own rows, through the archive's columns and the public views.
#[test]
fn archive_search_equals_brute_force_over_its_rows() {
    use podmap::SearchIndex;
    let index = MmapIndex::open_podcast(common::fixtures_index(), "demo-raumfahrt").unwrap();
    let m = Rows {
        dims: index.dims(),
        rows: index.matrix().to_vec(),
        embedded: (0..index.len()).map(|i| index.norm(i) > 0.0).collect(),
        episodes: (0..index.len()).map(|i| index.episode_of(i)).collect(),
    };
    let mut runner = proptest::test_runner::TestRunner::new(config(32));
    let query = prop::collection::vec(-1.0f32..1.0, m.dims);
    runner
        .run(&(query, filter(), 1..30usize), |(query, filter, k)| {
            let expected = brute_force(&m, &query, &filter);
            let got = index.search_vector(&query, k, &filter).unwrap();
            prop_assert_eq!(got, expected.into_iter().take(k).collect::<Vec<_>>());
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Transcript excerpts against the linear rule

#[derive(Debug, Clone)]
struct Line {
    speaker: &'static str,
    time: String,
    text: String,
}

/// A time as the data writes it (`H:MM:SS`, `M:SS`, bare seconds), or untimed (empty or not
/// a time).
fn time_text(seconds: u32, style: u8) -> String {
    match style {
        0 => format!(
            "{}:{:02}:{:02}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        ),
        1 => format!("{}:{:02}", seconds / 60, seconds % 60),
        2 => seconds.to_string(),
        3 => String::new(),
        _ => "1:2:3:4".to_owned(),
    }
}

/// Transcripts of up to 40 lines: times ascending with repeats (sorted, as in all real data)
/// or in any order; some untimed; speakers from a few names, blank included, in any case.
fn transcript() -> impl Strategy<Value = Vec<Line>> {
    let line = (
        0..40u32,
        prop::sample::select(vec![0u8, 0, 0, 1, 1, 2, 3, 4]),
        prop::sample::select(vec!["Tim Pritlove", "tim pritlove ", "Käthe", "", " "]),
        "[a-zäöü ]{0,30}",
    );
    (prop::collection::vec(line, 0..40), any::<bool>()).prop_map(|(raw, sorted)| {
        let mut at = 0;
        raw.into_iter()
            .map(|(step, style, speaker, text)| {
                let seconds = if sorted {
                    at += step;
                    at
                } else {
                    step * 25
                };
                Line {
                    speaker,
                    time: time_text(seconds, style),
                    text,
                }
            })
            .collect()
    })
}

fn window_parts() -> impl Strategy<Value = (f64, f64, Option<&'static str>, usize)> {
    (
        -10.0..1100.0f64,
        0.0..600.0f64,
        prop::sample::select(vec![None, Some("TIM PRITLOVE"), Some("käthe"), Some("")]),
        prop::sample::select(vec![1usize, 20, 80, 4000]),
    )
        .prop_map(|(start, len, speaker, max)| (start.round(), (start + len).round(), speaker, max))
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn archived_excerpts_equal_the_linear_walk_over_the_json(
        lines in transcript(),
        windows in prop::collection::vec(window_parts(), 1..8),
    ) {
        let root = tempfile::tempdir().unwrap();
        common::small_root(root.path(), "p", 1, 2);
        let episodes = root.path().join("podcasts/p/episodes");
        std::fs::create_dir_all(&episodes).unwrap();
        let entries: Vec<_> = lines
            .iter()
            .map(|l| json!({"speaker": l.speaker, "time": l.time, "text": l.text}))
            .collect();
        let file = episodes.join("1-ts.json");
        std::fs::write(&file, json!({ "transcript": entries }).to_string()).unwrap();
        let archive = root.path().join("index/p/rag.podmap");
        podmap::convert::convert_podcast(&podmap::input::PodcastSource::at(root.path(), "p"), &archive)
            .unwrap();
        let index = MmapIndex::open(&archive).unwrap();
        let original = transcript_json::load(&file).unwrap();
        for (start, end, speaker, max_chars) in windows {
            let window = Window { start, end, speaker, max_chars };
            let archived = index.excerpt(1, &window).unwrap();
            prop_assert_eq!(&archived, &transcript_json::excerpt(&original, &window), "{:?}", window);
            // The length rule: cut at `max_chars` bytes, then `\n…`.
            prop_assert!(
                archived.starts_with("[no transcript") || archived.len() <= max_chars + "\n…".len()
            );
        }
    }
}
