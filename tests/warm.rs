//! Warming archives into the page cache: `podmap warm` on the fixtures, its refusals, the
//! library call it makes, and `podmap serve --preload` warming before it answers.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::Value;

use common::{podmap, s, text};
use podmap::index::WarmScope;
use podmap::{MmapIndex, SearchIndex};

#[test]
fn warm_names_each_podcast_with_the_bytes_it_read() {
    let index = common::fixtures_index();
    let out = podmap(&["warm", s(index)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let archives = podmap::index::list_archives(index).unwrap();
    assert_eq!(stdout.lines().count(), archives.len(), "{stdout}");
    for ((id, path), line) in archives.iter().zip(stdout.lines()) {
        let one = MmapIndex::open(path).unwrap();
        let vectors = one.warm_len(WarmScope::Vectors);
        // The matrix and its codes: a quarter (int8 codes) and more beyond the matrix.
        assert!(vectors > (one.matrix().len() * 4 * 5 / 4) as u64, "{line}");
        assert!(
            line.starts_with(&format!("{id}: warmed {vectors} bytes ("))
                && line.contains("matrix and codes"),
            "{line}"
        );
    }

    // --podcast and --all: one podcast, every section (more than its matrix).
    let out = podmap(&["warm", s(index), "--podcast", "demo-raumfahrt", "--all"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let file_len = std::fs::metadata(podmap::index::archive_path(index, "demo-raumfahrt"))
        .unwrap()
        .len();
    let line = stdout.lines().next().unwrap();
    let bytes: u64 = line
        .strip_prefix("demo-raumfahrt: warmed ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    let index_one = MmapIndex::open_podcast(index, "demo-raumfahrt").unwrap();
    assert!(
        bytes > (index_one.matrix().len() * 4) as u64 && bytes <= file_len,
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}

#[test]
fn warm_refuses_an_unknown_directory_or_podcast() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-index");
    let out = podmap(&["warm", s(&missing)]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot list the archives in") && stderr.contains("no-such-index"),
        "{stderr}"
    );

    let out = podmap(&[
        "warm",
        s(common::fixtures_index()),
        "--podcast",
        "no-such-podcast",
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no archive for podcast \"no-such-podcast\""),
        "{stderr}"
    );
}

#[test]
fn warm_reports_what_it_read_and_progress_up_to_it() {
    let index = MmapIndex::open_podcast(common::fixtures_index(), "demo-raumfahrt").unwrap();
    for scope in [WarmScope::Vectors, WarmScope::All] {
        let mut seen = Vec::new();
        let bytes = index.warm(scope, |done| seen.push(done));
        assert_eq!(bytes, index.warm_len(scope));
        assert_eq!(seen.last(), Some(&bytes), "{scope:?}");
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{scope:?}: {seen:?}");
    }
    // The matrix and its codes: int8 codes alone are a quarter of the matrix's bytes.
    let matrix = (index.matrix().len() * 4) as u64;
    assert!(index.warm_len(WarmScope::Vectors) > matrix + matrix / 4);
    assert!(index.warm_len(WarmScope::Vectors) < index.warm_len(WarmScope::All));
    // Warming reads; it changes nothing the archive answers.
    index.verify().unwrap();
}

/// `podmap serve --preload` logs each archive it warmed before it starts listening, then
/// answers a search.
#[test]
fn serve_preload_warms_before_serving_and_answers() {
    let (mut child, received) = common::serve_with_json_logs(&["--preload"]);
    let mut preloaded = Vec::new();
    let serving = loop {
        let line = received
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}; preloaded so far: {preloaded:?}"));
        let parsed: Value = serde_json::from_str(&line).unwrap();
        let message = parsed["message"].as_str().unwrap_or("").to_owned();
        if message.starts_with("preloaded") {
            preloaded.push(parsed["podcast"].as_str().unwrap().to_owned());
        }
        if message.starts_with("podmap serving") {
            break message;
        }
    };
    let archives: Vec<String> = podmap::index::list_archives(common::fixtures_index())
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(preloaded, archives);
    let addr = serving
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the address in the start-up line");
    let body = r#"{"query": "Raumstation", "podcastId": "demo-raumfahrt"}"#;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "POST /api/episodes/search HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let json = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let json: Value = serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert!(!json["episodes"].as_array().unwrap().is_empty(), "{answer}");
}

/// The `VmFlags` of the mapping of this process that holds `address` (`/proc/self/smaps`).
#[cfg(target_os = "linux")]
fn vm_flags(address: usize) -> Vec<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        let range = line
            .split_whitespace()
            .next()
            .and_then(|r| r.split_once('-'));
        if let Some((start, end)) = range.filter(|_| !line.ends_with(':') && line.contains(' ')) {
            if let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) {
                inside = (start..end).contains(&address);
                continue;
            }
        }
        if let Some(flags) = line.strip_prefix("VmFlags:").filter(|_| inside) {
            return flags.split_whitespace().map(str::to_owned).collect();
        }
    }
    panic!("no mapping holds {address:#x}");
}

/// The page-cache advice given at open: the matrix and the code sections are scanned whole
/// by every query and advised huge pages (`hg`), the records are read one at a time and
/// advised random access (`rr`), without readahead.
#[cfg(target_os = "linux")]
#[test]
fn open_advises_huge_pages_for_the_vectors_and_random_reads_for_the_records() {
    let index = MmapIndex::open_podcast(common::fixtures_index(), "demo-raumfahrt").unwrap();
    let matrix = index.matrix();
    assert!(
        matrix.len() * 4 >= 2 * 4096,
        "the fixture's matrix spans whole pages"
    );
    let flags = vm_flags(matrix.as_ptr() as usize);
    assert!(flags.iter().any(|f| f == "hg"), "matrix: {flags:?}");
    assert!(!flags.iter().any(|f| f == "rr"), "matrix: {flags:?}");
    let codes = index.binary_codes();
    let flags = vm_flags(codes.bits.as_ptr() as usize);
    assert!(flags.iter().any(|f| f == "hg"), "sign bits: {flags:?}");

    let text = (0..index.len())
        .filter_map(|i| index.item_full(i).unwrap().view().text)
        .max_by_key(|t| t.len())
        .expect("an item with text");
    let flags = vm_flags(text.as_ptr() as usize + text.len() / 2);
    assert!(flags.iter().any(|f| f == "rr"), "item text: {flags:?}");
    assert!(!flags.iter().any(|f| f == "hg"), "item text: {flags:?}");
}
