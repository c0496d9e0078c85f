//! Episodes, transcripts and speakers: round trips against the corpus files, excerpts against a
//! plain re-implementation of the original rules, and bad inputs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use podmap::convert::convert_podcast;
use podmap::index::EpisodeOrder;
use podmap::input::PodcastSource;
use podmap::transcript::{json, parse_time, Window};
use podmap::{Error, MmapIndex, SearchIndex};
use serde_json::Value;

const PODCASTS: [&str; 2] = ["forschergeist", "raumzeit"];

fn converted() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let corpus = common::corpus();
        let out = tempfile::tempdir().unwrap();
        for r in common::convert_quietly(&corpus, out.path()) {
            assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        }
        out
    })
    .path()
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn episodes_dir(podcast: &str) -> PathBuf {
    common::corpus()
        .join("podcasts")
        .join(podcast)
        .join("episodes")
}

/// Episode numbers of `<n>.json` and `<n>-ts.json` files in a corpus podcast.
fn numbered_files(podcast: &str, suffix: &str) -> Vec<u32> {
    let mut numbers: Vec<u32> = std::fs::read_dir(episodes_dir(podcast))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let digits = name.strip_suffix(suffix)?;
            digits.parse().ok()
        })
        .collect();
    numbers.sort_unstable();
    numbers
}

#[test]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
fn every_episode_round_trips() {
    let index_dir = converted();
    for podcast in PODCASTS {
        let index = MmapIndex::open_podcast(index_dir, podcast).unwrap();
        let with_meta = numbered_files(podcast, ".json");
        let with_ts = numbered_files(podcast, "-ts.json");
        assert!(!with_meta.is_empty());
        for &n in &with_meta {
            let ctx = format!("{podcast} episode {n}");
            let json = read(&episodes_dir(podcast).join(format!("{n}.json")));
            assert_eq!(
                json.as_object().unwrap().len(),
                8,
                "{ctx}: the corpus has 8 fields"
            );
            let episode = index.episode(n).unwrap().unwrap();
            assert!(episode.has_metadata(), "{ctx}");
            assert_eq!(episode.title(), json["title"].as_str(), "{ctx}");
            assert_eq!(
                episode.meta_number().map(u64::from),
                json["number"].as_u64(),
                "{ctx}"
            );
            assert_eq!(episode.date(), json["date"].as_str(), "{ctx}");
            assert_eq!(episode.url(), json["url"].as_str(), "{ctx}");
            assert_eq!(episode.description(), json["description"].as_str(), "{ctx}");
            assert_eq!(
                Value::from(episode.duration().unwrap()),
                json["duration"],
                "{ctx}"
            );
            let speakers: Vec<&str> = episode.speakers().unwrap().collect();
            assert_eq!(Value::from(speakers), json["speakers"], "{ctx} speakers");
            let chapters: Vec<&str> = episode.chapters().unwrap().collect();
            assert_eq!(Value::from(chapters), json["chapters"], "{ctx} chapters");
            assert_eq!(episode.has_transcript(), with_ts.contains(&n), "{ctx}");
            let image = ["jpg", "jpeg", "png", "webp"]
                .iter()
                .any(|ext| episodes_dir(podcast).join(format!("{n}.{ext}")).exists());
            assert_eq!(episode.has_image(), image, "{ctx}");
        }
        let (page, total) = index.episode_page(EpisodeOrder::Number, 0, 1000).unwrap();
        assert_eq!(total, with_meta.len());
        let listed: Vec<u32> = page.iter().map(|e| e.number()).collect();
        let mut newest_first = with_meta.clone();
        newest_first.reverse();
        assert_eq!(listed, newest_first, "{podcast}: by number, newest first");
        let (by_date, _) = index.episode_page(EpisodeOrder::Date, 0, 1000).unwrap();
        let dates: Vec<&str> = by_date.iter().map(|e| e.date().unwrap()).collect();
        assert!(dates.windows(2).all(|w| w[0] >= w[1]), "{podcast}: by date");
        let (second_page, _) = index.episode_page(EpisodeOrder::Number, 5, 3).unwrap();
        assert_eq!(
            second_page.iter().map(|e| e.number()).collect::<Vec<_>>(),
            newest_first[5..8]
        );
    }
}

#[test]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
fn every_transcript_entry_round_trips() {
    let index_dir = converted();
    for podcast in PODCASTS {
        let index = MmapIndex::open_podcast(index_dir, podcast).unwrap();
        for n in numbered_files(podcast, "-ts.json") {
            let ctx = format!("{podcast} transcript {n}");
            let json = read(&episodes_dir(podcast).join(format!("{n}-ts.json")));
            let t = index
                .transcript(n)
                .unwrap()
                .unwrap_or_else(|| panic!("{ctx} missing"));
            assert_eq!(t.duration(), json["duration"].as_f64(), "{ctx}");
            let entries = json["transcript"].as_array().unwrap();
            assert_eq!(t.len(), entries.len(), "{ctx}");
            assert_eq!(t.entries().len(), entries.len(), "{ctx}");
            let mut timed = Vec::new();
            for (i, (got, want)) in t.entries().zip(entries).enumerate() {
                assert_eq!(got.speaker, want["speaker"].as_str(), "{ctx} entry {i}");
                assert_eq!(got.time, want["time"].as_str().unwrap(), "{ctx} entry {i}");
                assert_eq!(got.text, want["text"].as_str().unwrap(), "{ctx} entry {i}");
                assert_eq!(got.duration, want["duration"].as_f64(), "{ctx} entry {i}");
                let seconds = parse_time(want["time"].as_str().unwrap());
                assert_eq!(got.seconds, seconds, "{ctx} entry {i}");
                if seconds.is_some() {
                    timed.push(i as u32);
                }
            }
            assert_eq!(t.timed().collect::<Vec<_>>(), timed, "{ctx}");
            let distinct: std::collections::BTreeSet<&str> = entries
                .iter()
                .filter_map(|e| e["speaker"].as_str())
                .collect();
            assert_eq!(
                t.speakers().len(),
                distinct.len(),
                "{ctx}: speakers are interned"
            );
        }
        // Episodes without a transcript have none.
        for n in numbered_files(podcast, ".json") {
            if !episodes_dir(podcast).join(format!("{n}-ts.json")).exists() {
                assert!(index.transcript(n).unwrap().is_none(), "{podcast} {n}");
            }
        }
    }
}

#[test]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
fn speakers_and_profiles_round_trip() {
    let index_dir = converted();
    let corpus = common::corpus();
    for podcast in PODCASTS {
        let index = MmapIndex::open_podcast(index_dir, podcast).unwrap();
        let dir = corpus.join("podcasts").join(podcast).join("speakers");
        let index_file = dir.join("index.json");
        if !index_file.exists() {
            // raumzeit has only a -meta.json and no index: no speakers, as in the original.
            assert!(index.speakers().unwrap().is_none(), "{podcast}");
            continue;
        }
        let rows = read(&index_file);
        let rows = rows.as_array().unwrap();
        let speakers = index.speakers().unwrap().unwrap();
        assert_eq!(speakers.len(), rows.len());
        for (got, want) in speakers.iter().zip(rows) {
            let slug = want["slug"].as_str().unwrap();
            assert_eq!(got.name(), want["speaker"].as_str().unwrap());
            assert_eq!(got.slug(), slug);
            assert_eq!(
                got.episodes_count(),
                want["episodesCount"].as_u64().unwrap()
            );
            assert_eq!(
                got.utterances_count(),
                want["utterancesCount"].as_u64().unwrap()
            );
            assert_eq!(got.total_words(), want["totalWords"].as_u64().unwrap());
            let episodes: Vec<u64> = got.episodes().map(u64::from).collect();
            assert_eq!(Value::from(episodes), want["episodes"]);
            let profile = std::fs::read_to_string(dir.join(format!("{slug}.md"))).ok();
            assert_eq!(got.profile(), profile.as_deref(), "{slug}");
            let image = std::fs::read(dir.join(format!("{slug}-meta.json")))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v["image"].as_str().map(str::to_owned));
            assert_eq!(got.image(), image.as_deref(), "{slug}");
            // Lookup by slug, umlauts included.
            assert_eq!(index.speaker(slug).unwrap().unwrap().slug(), slug);
        }
        assert!(index.speaker("nobody-here").unwrap().is_none());
    }
    let forschergeist = MmapIndex::open_podcast(index_dir, "forschergeist").unwrap();
    assert!(forschergeist.speaker("stefan-kröpelin").unwrap().is_some());
}

#[test]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
fn topics_are_the_items_topics_in_order_without_repeats() {
    let index_dir = converted();
    let corpus = common::corpus();
    for podcast in PODCASTS {
        let index = MmapIndex::open_podcast(index_dir, podcast).unwrap();
        let rag = read(&corpus.join("db").join(podcast).join("rag-embeddings.json"));
        let mut want: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
        for item in rag["items"].as_array().unwrap() {
            let topic = item["topic"].as_str().unwrap_or("");
            let list = want
                .entry(item["episodeNumber"].as_u64().unwrap())
                .or_default();
            if !topic.trim().is_empty() && !list.iter().any(|t| t == topic) {
                list.push(topic.to_owned());
            }
        }
        for (episode, topics) in want {
            assert_eq!(
                index.topics(episode as u32).unwrap(),
                topics,
                "{podcast} {episode}"
            );
        }
    }
}

/// A small deterministic generator for windows.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}

#[test]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
fn excerpts_equal_the_original_rules_for_many_windows() {
    let index_dir = converted();
    let mut rng = Lcg(7);
    let mut compared = 0;
    let mut non_placeholder = 0;
    for podcast in PODCASTS {
        let index = MmapIndex::open_podcast(index_dir, podcast).unwrap();
        for n in numbered_files(podcast, "-ts.json") {
            let entries = json::load(&episodes_dir(podcast).join(format!("{n}-ts.json"))).unwrap();
            let last = entries
                .iter()
                .filter_map(|e| parse_time(&e.time))
                .fold(0.0, f64::max);
            let names: Vec<String> = entries.iter().filter_map(|e| e.speaker.clone()).collect();
            let mut windows: Vec<(f64, f64)> =
                vec![(0.0, 0.0), (last + 10.0, last + 500.0), (0.0, last + 1.0)];
            for _ in 0..12 {
                let start = rng.next(last as u64 + 60) as f64;
                windows.push((start, start + rng.next(900) as f64));
            }
            for (start, end) in windows {
                // The speaker filter in several spellings: it ignores ASCII case and the
                // entry's surrounding spaces.
                let pick = names.get(rng.next(names.len() as u64) as usize).cloned();
                let filters = [
                    None,
                    pick.clone(),
                    pick.map(|p| p.to_uppercase()),
                    Some("Niemand".to_owned()),
                ];
                for speaker in &filters {
                    for max_chars in [4000, 2200, 37] {
                        let window = Window {
                            start,
                            end,
                            speaker: speaker.as_deref(),
                            max_chars,
                        };
                        let got = index.excerpt(n, &window).unwrap();
                        let want = json::excerpt(&entries, &window);
                        assert_eq!(got, want, "{podcast} {n} {window:?}");
                        compared += 1;
                        if !got.starts_with("[no transcript entries") {
                            non_placeholder += 1;
                            assert!(
                                got.len() <= max_chars + "\n…".len(),
                                "{podcast} {n} {window:?}"
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(compared > 5000, "{compared}");
    assert!(
        non_placeholder > 1000,
        "only {non_placeholder} windows had text"
    );
}

#[test]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
fn forschergeist_has_no_timestamps_so_excerpts_are_placeholders() {
    let index_dir = converted();
    let index = MmapIndex::open_podcast(index_dir, "forschergeist").unwrap();
    for n in numbered_files("forschergeist", "-ts.json") {
        let window = Window {
            start: 0.0,
            end: 100_000.0,
            speaker: None,
            max_chars: 4000,
        };
        assert_eq!(
            index.excerpt(n, &window).unwrap(),
            "[no transcript entries found in window 0:00 - 27:46:40]"
        );
    }
    // No transcript at all (episode 56) gives the placeholder too, with the speaker note.
    let window = Window {
        start: 60.0,
        end: 120.0,
        speaker: Some("Tim Pritlove"),
        max_chars: 4000,
    };
    assert_eq!(
        index.excerpt(56, &window).unwrap(),
        "[no transcript entries found in window 1:00 - 2:00 (filtered by speaker: Tim Pritlove)]"
    );
}

fn podmap(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_podmap"))
        .args(args)
        .output()
        .unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const EPISODE: &str = r#"{"title": "T", "number": 1, "date": "2020-01-01", "url": "u", "duration": [0, 1, 2], "description": "d", "speakers": [], "chapters": []}"#;

#[test]
fn bad_library_files_are_errors_naming_the_file_and_the_rest_converts() {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = (dir.path().join("data"), dir.path().join("index"));
    // good: only podcasts/<id>/ (no RAG file), with a transcript whose time is malformed.
    write(&data.join("podcasts/good/episodes/1.json"), EPISODE);
    write(
        &data.join("podcasts/good/episodes/1-ts.json"),
        r#"{"transcript": [{"speaker": "A", "time": "0:05", "text": "hallo"}, {"speaker": "A", "time": "1:2:3:4", "text": "x"}]}"#,
    );
    write(
        &data.join("podcasts/badts/episodes/2-ts.json"),
        "{\"transcript\": [ {\"speaker\": ",
    );
    write(&data.join("podcasts/badep/episodes/3.json"), &EPISODE[..40]);
    write(&data.join("podcasts/badspk/episodes/4.json"), EPISODE);
    write(
        &data.join("podcasts/badspk/speakers/index.json"),
        r#"{"speaker": "A"}"#,
    );

    let out = podmap(&[
        "convert",
        "--data",
        data.to_str().unwrap(),
        "--out",
        index.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("good: 0 items (0 embedded), 0 dims, 1 episodes, 1 transcripts"),
        "{stdout}"
    );
    for (podcast, file) in [
        ("badts", "episodes/2-ts.json"),
        ("badep", "episodes/3.json"),
        ("badspk", "speakers/index.json"),
    ] {
        assert!(stdout.contains(&format!("{podcast}: FAILED")), "{stdout}");
        let path = data.join("podcasts").join(podcast).join(file);
        assert!(
            stderr.contains(&format!("{}:", path.display())),
            "{podcast}: {stderr}"
        );
    }
    assert!(stderr.contains("malformed JSON"), "{stderr}");
    let warning = format!(
        "warning: {}: entry 1: time \"1:2:3:4\"",
        data.join("podcasts/good/episodes/1-ts.json").display()
    );
    assert!(stderr.contains(&warning), "{stderr}");

    // The podcast without a RAG file serves its episodes and transcript.
    let good = MmapIndex::open_podcast(&index, "good").unwrap();
    assert_eq!(good.dims(), 0);
    let window = Window {
        start: 0.0,
        end: 10.0,
        speaker: None,
        max_chars: 4000,
    };
    assert_eq!(good.excerpt(1, &window).unwrap(), "[0:05] A: hallo");
    let excerpt = podmap(&[
        "transcript",
        "--index",
        index.to_str().unwrap(),
        "--podcast",
        "good",
        "--episode",
        "1",
        "--from",
        "0",
        "--to",
        "10",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&excerpt.stdout),
        "[0:05] A: hallo\n"
    );
}

#[test]
fn a_damaged_transcript_fails_alone_on_first_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write(&data.join("podcasts/p/episodes/1.json"), EPISODE);
    let transcript =
        r#"{"transcript": [{"speaker": "A", "time": "0:05", "text": "UNIQUE-MARKER eins"}]}"#;
    write(&data.join("podcasts/p/episodes/1-ts.json"), transcript);
    write(
        &data.join("podcasts/p/episodes/2-ts.json"),
        &transcript.replace("eins", "zwei"),
    );
    let out = dir.path().join("p.podmap");
    convert_podcast(&PodcastSource::at(&data, "p"), &out).unwrap();
    let mut bytes = std::fs::read(&out).unwrap();
    let at = bytes
        .windows(13)
        .position(|w| w == b"UNIQUE-MARKER")
        .unwrap();
    bytes[at] = b'X';
    std::fs::write(&out, &bytes).unwrap();

    // Opening does not read transcripts, so it succeeds; the damaged one fails when read,
    // every time, and the other is fine.
    let index = MmapIndex::open(&out).unwrap();
    for _ in 0..2 {
        let err = index.transcript(1).map(|t| t.is_some()).unwrap_err();
        assert!(matches!(err, Error::Archive { .. }), "{err:?}");
        assert!(err.to_string().contains("transcripts section"), "{err}");
    }
    assert!(index.transcript(2).unwrap().is_some());
    assert!(index.verify().is_err());
}

#[test]
fn unsorted_and_odd_times_give_the_same_excerpts_as_the_linear_walk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Times that go backwards, repeat, mix formats and include untimed entries.
    let transcript = r#"{"transcript": [
        {"speaker": "A", "time": "0:10", "text": "a"},
        {"speaker": " b ", "time": "", "text": "untimed"},
        {"speaker": "B", "time": "0:00:05", "text": "back in time"},
        {"speaker": "", "time": "20", "text": "  bare seconds  "},
        {"time": "0:20", "text": "no speaker"},
        {"speaker": "A", "time": "1:00:00", "text": "an hour"},
        {"speaker": "A", "time": "0:30", "text": "Größe über 4 Bytes"}
    ]}"#;
    write(&data.join("podcasts/p/episodes/1-ts.json"), transcript);
    write(
        &data.join("podcasts/p/episodes/2-ts.json"),
        &transcript.replace("0:00:05", "0:00:15"),
    );
    let out = dir.path().join("p.podmap");
    convert_podcast(&PodcastSource::at(&data, "p"), &out).unwrap();
    let index = MmapIndex::open(&out).unwrap();
    assert!(!index.transcript(1).unwrap().unwrap().is_sorted());
    let path = |n: u32| data.join(format!("podcasts/p/episodes/{n}-ts.json"));
    for n in [1, 2] {
        let entries = json::load(&path(n)).unwrap();
        for (start, end) in [
            (0.0, 0.0),
            (5.0, 5.0),
            (0.0, 25.0),
            (10.0, 3600.0),
            (19.9995, 20.0005),
            (3601.0, 9999.0),
        ] {
            for speaker in [None, Some("a"), Some("B"), Some("")] {
                for max_chars in [1, 14, 15, 16, 4000] {
                    let window = Window {
                        start,
                        end,
                        speaker,
                        max_chars,
                    };
                    assert_eq!(
                        index.excerpt(n, &window).unwrap(),
                        json::excerpt(&entries, &window),
                        "{n} {window:?}"
                    );
                }
            }
        }
    }
}
