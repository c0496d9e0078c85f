//! The converter and the search against hostile or sloppy input: every case fails alone with
//! the file and the reason, or converts with a warning; none panics, none replaces a good
//! archive with a worse one, none grows without bound.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use podmap::convert::{convert_all, ConvertOptions, Outcome, Report};
use podmap::{Filter, MmapIndex, SearchIndex};
use serde_json::json;

use common::{podmap, s, text};

fn convert(data: &Path, out: &Path) -> Vec<Report> {
    let opts = ConvertOptions {
        data_root: data.to_path_buf(),
        out_dir: out.to_path_buf(),
        podcasts: Vec::new(),
        force: true,
    };
    let hidden =
        indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
    convert_all(&opts, &hidden).unwrap()
}

fn report<'a>(reports: &'a [Report], podcast: &str) -> &'a Report {
    reports.iter().find(|r| r.podcast == podcast).unwrap()
}

fn episodes_dir(data: &Path, podcast: &str) -> std::path::PathBuf {
    let dir = data.join("podcasts").join(podcast).join("episodes");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn an_empty_embedding_fails_its_podcast_with_file_and_item_and_the_others_report() {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = (dir.path().join("data"), dir.path().join("index"));
    common::small_root(&data, "good", 6, 4);
    // Declared 0 with an empty vector; and undeclared with an empty first vector.
    common::write_raw(
        &data,
        "zero",
        r#"{"embeddingDimensions": 0, "items": [{"id": 7, "episodeNumber": 1, "startSec": 0, "endSec": 1, "embedding": []}]}"#,
    );
    common::write_raw(
        &data,
        "undeclared",
        r#"{"items": [{"id": 3, "episodeNumber": 1, "startSec": 0, "endSec": 1, "embedding": []}]}"#,
    );
    let out = podmap(&["convert", "--data", s(&data), "--out", s(&index)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stdout.contains("good: 6 items"), "{stdout}");
    for (podcast, id) in [("zero", 7), ("undeclared", 3)] {
        let file = format!("{podcast}/rag-embeddings.json: item {id}: embedding is empty");
        assert!(stderr.contains(&file), "{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_declared_dimension_no_item_uses_writes_no_rows_and_a_huge_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = (dir.path().join("data"), dir.path().join("index"));
    let no_vectors = |dims: u64| {
        json!({"embeddingDimensions": dims, "items": [
            {"id": 0, "episodeNumber": 1, "startSec": 0, "endSec": 1},
            {"id": 1, "episodeNumber": 1, "startSec": 1, "endSec": 2},
            {"id": 2, "episodeNumber": 2, "startSec": 0, "endSec": 1},
        ]})
        .to_string()
    };
    common::write_raw(&data, "unused", &no_vectors(4096));
    common::write_raw(&data, "huge", &no_vectors(268_435_455));
    let reports = convert(&data, &index);
    let unused = report(&reports, "unused");
    let Ok(Outcome::Converted(written)) = &unused.result else {
        panic!("{:?}", unused.result)
    };
    assert_eq!(written.items, 3);
    assert!(
        written.bytes < 64 * 1024,
        "{} bytes for 3 items without vectors",
        written.bytes
    );
    let huge = report(&reports, "huge").result.as_ref().unwrap_err();
    assert!(
        huge.to_string()
            .contains("embeddingDimensions 268435455 is larger than the 65536"),
        "{huge}"
    );
    assert!(!index.join("huge").join("rag.podmap").exists());
}

#[test]
fn many_distinct_speakers_convert_and_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = (dir.path().join("data"), dir.path().join("index"));
    let entries: Vec<_> = (0..20_000)
        .map(|i| json!({"speaker": format!("S{i}"), "time": format!("{}", i), "text": "x"}))
        .collect();
    std::fs::write(
        episodes_dir(&data, "talk").join("1-ts.json"),
        json!({ "transcript": entries }).to_string(),
    )
    .unwrap();
    let reports = convert(&data, &index);
    assert!(report(&reports, "talk").result.is_ok());
    let archive = MmapIndex::open_podcast(&index, "talk").unwrap();
    let t = archive.transcript(1).unwrap().unwrap();
    assert_eq!(t.speakers().len(), 20_000);
    let names: Vec<&str> = t.entries().map(|e| e.speaker.unwrap()).collect();
    assert_eq!(names[0], "S0");
    assert_eq!(names[19_999], "S19999");
}

#[test]
fn byte_order_marks_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = (dir.path().join("data"), dir.path().join("index"));
    let rag = common::small_root(&data, "bom", 3, 4);
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(std::fs::read(&rag).unwrap());
    std::fs::write(&rag, bytes).unwrap();
    let episodes = episodes_dir(&data, "bom");
    std::fs::write(
        episodes.join("1.json"),
        "\u{feff}{\"title\": \"Mit BOM\", \"duration\": [1, 2, 3]}",
    )
    .unwrap();
    std::fs::write(
        episodes.join("1-ts.json"),
        "\u{feff}{\"transcript\": [{\"speaker\": \"A\", \"time\": \"0:01\", \"text\": \"Hallo\"}]}",
    )
    .unwrap();
    let reports = convert(&data, &index);
    assert!(
        report(&reports, "bom").result.is_ok(),
        "{:?}",
        reports[0].result
    );
    let archive = MmapIndex::open_podcast(&index, "bom").unwrap();
    assert_eq!(archive.len(), 3);
    let episode = archive.episode(1).unwrap().unwrap();
    assert_eq!(episode.title(), Some("Mit BOM"));
    assert_eq!(episode.duration_sec(), Some(3723));
}

#[test]
fn two_files_for_one_episode_warn_and_the_plain_name_wins() {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = (dir.path().join("data"), dir.path().join("index"));
    let episodes = episodes_dir(&data, "dup");
    for (name, title) in [
        ("0.json", "null"),
        ("00.json", "doppelnull"),
        ("007.json", "sieben"),
    ] {
        std::fs::write(episodes.join(name), json!({ "title": title }).to_string()).unwrap();
    }
    std::fs::write(episodes.join("7.json"), json!({"title": "7"}).to_string()).unwrap();
    let reports = convert(&data, &index);
    let r = report(&reports, "dup");
    assert!(r.result.is_ok(), "{:?}", r.result);
    let archive = MmapIndex::open_podcast(&index, "dup").unwrap();
    assert_eq!(archive.episode(0).unwrap().unwrap().title(), Some("null"));
    assert_eq!(archive.episode(7).unwrap().unwrap().title(), Some("7"));
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("00.json") && w.contains("both name episode 0")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn repeated_item_ids_and_speaker_slugs_are_reported_and_lookups_take_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = (dir.path().join("data"), dir.path().join("index"));
    let items = (0..3)
        .map(|_| common::item(0, 1, "Mond", Some(common::vector(4, 1))))
        .collect();
    common::write_rag(&data, "dup", 4, items);
    let speakers = data.join("podcasts/dup/speakers");
    std::fs::create_dir_all(&speakers).unwrap();
    std::fs::write(
        speakers.join("index.json"),
        json!([
            {"speaker": "Erste", "slug": "gleich"},
            {"speaker": "Andere", "slug": "anders"},
            {"speaker": "Zweite", "slug": "gleich"},
        ])
        .to_string(),
    )
    .unwrap();
    let reports = convert(&data, &index);
    let r = report(&reports, "dup");
    assert!(r.result.is_ok(), "{:?}", r.result);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("rag-embeddings.json: item id 0 appears 3 times")),
        "{:?}",
        r.warnings
    );
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("index.json: slug \"gleich\" names both")),
        "{:?}",
        r.warnings
    );
    let archive = MmapIndex::open_podcast(&index, "dup").unwrap();
    assert_eq!(archive.speaker("gleich").unwrap().unwrap().name(), "Erste");
    assert_eq!(archive.speaker("anders").unwrap().unwrap().name(), "Andere");
}

#[test]
fn folder_names_the_api_cannot_serve_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = (dir.path().join("data"), dir.path().join("index"));
    common::small_root(&data, "fine", 3, 4);
    common::small_root(&data, "trailing ", 3, 4);
    let long = "x".repeat(201);
    common::small_root(&data, &long, 3, 4);
    let reports = convert(&data, &index);
    assert!(report(&reports, "fine").result.is_ok());
    let trailing = report(&reports, "trailing ").result.as_ref().unwrap_err();
    assert!(trailing.to_string().contains("white space"), "{trailing}");
    let too_long = report(&reports, &long).result.as_ref().unwrap_err();
    assert!(too_long.to_string().contains("201 bytes"), "{too_long}");
    assert!(!index.join("trailing ").exists());
}

#[test]
fn a_duration_that_is_not_hms_gives_no_seconds_and_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = (dir.path().join("data"), dir.path().join("index"));
    let episodes = episodes_dir(&data, "odd");
    std::fs::write(
        episodes.join("1.json"),
        json!({"title": "vier", "duration": [4294967295u32, 4294967295u32, 1, 2]}).to_string(),
    )
    .unwrap();
    let reports = convert(&data, &index);
    let r = report(&reports, "odd");
    assert!(
        r.warnings.iter().any(|w| w.contains("is not [h, m, s]")),
        "{:?}",
        r.warnings
    );
    let archive = MmapIndex::open_podcast(&index, "odd").unwrap();
    let episode = archive.episode(1).unwrap().unwrap();
    assert_eq!(episode.duration_sec(), None);
    assert_eq!(episode.duration().unwrap().len(), 4, "kept as written");
}

#[test]
fn stale_temporary_files_are_removed_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = (dir.path().join("data"), dir.path().join("index"));
    common::small_root(&data, "p", 3, 4);
    let folder = index.join("p");
    std::fs::create_dir_all(&folder).unwrap();
    let stale = folder.join(".rag.podmap.killed.tmp");
    std::fs::write(&stale, vec![0u8; 4096]).unwrap();
    let live = folder.join(".rag.podmap.running.tmp");
    std::fs::write(&live, b"in use").unwrap();
    let writer = std::fs::File::open(&live).unwrap();
    writer.lock().unwrap();
    let reports = convert(&data, &index);
    assert!(report(&reports, "p").result.is_ok());
    assert!(!stale.exists(), "a killed conversion's file is removed");
    assert!(live.exists(), "a locked (live) one is kept");
    drop(writer);
}

#[test]
fn huge_query_components_do_not_overflow_the_norm() {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = (dir.path().join("data"), dir.path().join("index"));
    common::small_root(&data, "p", 6, 4);
    convert(&data, &index);
    let archive = MmapIndex::open_podcast(&index, "p").unwrap();
    let big = archive
        .search_vector(&[3e38; 4], 6, &Filter::all())
        .unwrap();
    let unit = archive.search_vector(&[1.0; 4], 6, &Filter::all()).unwrap();
    assert_eq!(big.len(), 6);
    for (b, u) in big.iter().zip(&unit) {
        assert_eq!(b.index, u.index);
        assert!(
            (b.score - u.score).abs() < 1e-5,
            "{} vs {}",
            b.score,
            u.score
        );
    }
}

/// Runs `podmap` as the unprivileged user `nobody` (root reads everything, whatever the mode
/// bits say), or as the current user when that is not root.
fn podmap_unprivileged(args: &[&str]) -> Output {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| text(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut command = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        c.arg(env!("CARGO_BIN_EXE_podmap"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_podmap"))
    };
    command.args(args).output().expect("run podmap")
}

#[test]
fn unreadable_input_fails_its_podcast_and_leaves_the_archive_untouched() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = (dir.path().join("data"), dir.path().join("index"));
    common::small_root(&data, "locked", 6, 4);
    episodes_dir(&data, "locked");
    std::fs::write(
        data.join("podcasts/locked/episodes/1.json"),
        json!({"title": "eins"}).to_string(),
    )
    .unwrap();
    common::small_root(&data, "open", 3, 4);
    let out = podmap(&["convert", "--data", s(&data), "--out", s(&index)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Everything readable and writable by the unprivileged user, then take access away.
    for entry in walk(dir.path()) {
        let mode = if entry.is_dir() { 0o777 } else { 0o666 };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let archive = index.join("locked/rag.podmap");
    let before = std::fs::read(&archive).unwrap();
    let mode = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    for (what, path, locked_mode) in [
        ("RAG folder", data.join("db/locked"), 0o000),
        (
            "episodes folder",
            data.join("podcasts/locked/episodes"),
            0o666,
        ),
    ] {
        mode(&path, locked_mode);
        let out =
            podmap_unprivileged(&["convert", "--data", s(&data), "--out", s(&index), "--force"]);
        mode(&path, 0o777);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.contains("Permission denied"), "{what}: {stderr}");
        assert!(text(&out.stdout).contains("open: 3 items"), "{what}");
        assert_eq!(
            std::fs::read(&archive).unwrap(),
            before,
            "{what}: archive untouched"
        );
    }
    let _ = dir.path().join(".");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        if all[i].is_dir() {
            let mut children: Vec<_> = std::fs::read_dir(&all[i])
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            all.append(&mut children);
        }
        i += 1;
    }
    all
}
