//! Damaged, truncated, foreign and newer archives are refused with a reason, never a panic;
//! a failed conversion leaves the previous archive untouched.

mod common;

use std::path::{Path, PathBuf};

use podmap::archive::format::{Header, SectionKind, HEADER_SIZE, MAGIC};
use podmap::convert::convert_podcast;
use podmap::input::PodcastSource;
use podmap::{ArchiveFault, Error, Filter, MmapIndex, SearchIndex};

/// Converts a small podcast and returns (the archive's path, its bytes).
fn archive(dir: &Path, n: u32, dims: usize) -> (PathBuf, Vec<u8>) {
    common::small_root(dir, "p", n, dims);
    let out = archive_path(dir);
    convert_podcast(&PodcastSource::at(dir, "p"), &out).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    (out, bytes)
}

fn archive_path(dir: &Path) -> PathBuf {
    dir.join("index/p/rag.podmap")
}

/// Opens `bytes` as an archive; if that works, searches and verifies it. Returns whether
/// any step refused the file. Never panics (a panic fails the test).
fn refused(path: &Path, bytes: &[u8], dims: usize) -> bool {
    std::fs::write(path, bytes).unwrap();
    let index = match MmapIndex::open(path) {
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with(&path.display().to_string()),
                "error does not name the file: {msg}"
            );
            return true;
        }
        Ok(index) => index,
    };
    // Whatever the bytes, search must not panic or misbehave; a damaged item is refused
    // when it is first read, before any of its bytes are used.
    let _ = index.search_vector(&common::vector(dims, 7), 5, &Filter::all());
    let text_refused = index.search_text("Thema", 5, &Filter::all()).is_err();
    let item_refused = (0..index.len()).any(|i| index.item(i).is_err());
    assert_eq!(
        text_refused, item_refused,
        "lexical search reads every item"
    );
    let verify_refused = index.verify().is_err();
    if item_refused {
        assert!(verify_refused, "verify must catch what item reads catch");
    }
    verify_refused
}

#[test]
fn every_flipped_byte_is_caught_by_open_or_verify() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 24;
    // 11 rows of 96 bytes end the matrix off a 64-byte boundary, so there is padding too.
    let (_, bytes) = archive(dir.path(), 11, dims);
    let probe = dir.path().join("probe.podmap");
    // Every byte of the header's used part, a stride through the rest, and every byte of the
    // items and meta sections.
    let header = MmapIndex::open(&archive_path(dir.path()))
        .unwrap()
        .header()
        .clone();
    let items_start = header.section(SectionKind::Items).unwrap().offset as usize;
    let mut offsets: Vec<usize> = (0..900).collect();
    offsets.extend((900..items_start).step_by(7));
    // Every byte of the code sections: codes, padding, scales and mean.
    for kind in [SectionKind::Int8Codes, SectionKind::BinaryCodes] {
        let s = header.section(kind).unwrap();
        offsets.extend(s.offset as usize..s.end() as usize);
    }
    offsets.extend(items_start..bytes.len());
    for at in offsets {
        for mask in [0x01u8, 0x80] {
            let mut damaged = bytes.clone();
            damaged[at] ^= mask;
            assert!(
                refused(&probe, &damaged, dims),
                "flip {mask:#x} at byte {at} of {} went unnoticed",
                bytes.len()
            );
        }
    }
}

#[test]
fn every_truncation_and_extension_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = archive(dir.path(), 12, 24);
    let probe = dir.path().join("probe.podmap");
    let mut lengths: Vec<usize> = (0..64).collect();
    lengths.extend((64..bytes.len()).step_by(13));
    lengths.push(bytes.len() - 1);
    for len in lengths {
        std::fs::write(&probe, &bytes[..len]).unwrap();
        let err = MmapIndex::open(&probe).expect_err(&format!("truncated to {len} bytes"));
        assert!(matches!(err, Error::Archive { .. }), "{len}: {err:?}");
    }
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 100]);
    std::fs::write(&probe, &longer).unwrap();
    let err = MmapIndex::open(&probe).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Archive {
                fault: ArchiveFault::Length { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn foreign_files_are_refused_as_not_an_archive() {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("foreign");
    for content in [
        &b""[..],
        b"{\"items\": []}",
        &[0u8; 8192],
        b"\x89PNG\r\n\x1a\n0000000000000",
    ] {
        std::fs::write(&probe, content).unwrap();
        let err = MmapIndex::open(&probe).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Archive {
                    fault: ArchiveFault::BadMagic,
                    ..
                }
            ),
            "{content:?}: {err:?}"
        );
        assert!(err.to_string().contains("not a podmap archive"), "{err}");
    }
    let missing = MmapIndex::open(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }), "{missing:?}");
}

#[test]
fn a_newer_format_version_is_refused_with_that_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut bytes) = archive(dir.path(), 4, 8);
    assert_eq!(bytes[..8], MAGIC);
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = MmapIndex::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Archive {
                fault: ArchiveFault::NewerVersion { found: 99, .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade podmap"), "{err}");
}

/// `bytes` with its header decoded, changed by `change` and encoded again (with a valid
/// checksum), so that only what `change` did is wrong.
fn with_header(bytes: &[u8], change: impl FnOnce(&mut Header)) -> Vec<u8> {
    let mut header = Header::decode(bytes, bytes.len() as u64).unwrap();
    change(&mut header);
    let mut out = bytes.to_vec();
    out[..HEADER_SIZE].copy_from_slice(&header.encode());
    out
}

#[test]
fn code_sections_of_the_wrong_size_or_alignment_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = archive(dir.path(), 11, 24);
    let layout = |fault: &Error| match fault {
        Error::Archive {
            fault: ArchiveFault::Layout(reason),
            ..
        } => reason.clone(),
        other => panic!("not a layout fault: {other:?}"),
    };
    for kind in [SectionKind::Int8Codes, SectionKind::BinaryCodes] {
        let at = |h: &Header| h.sections.iter().position(|s| s.kind == kind).unwrap();
        // Shorter by one row's worth of tail: still inside the file, but not the size the
        // item count and dimensions need.
        let shorter = with_header(&bytes, |h| {
            let i = at(h);
            h.sections[i].len -= 4;
        });
        std::fs::write(&path, &shorter).unwrap();
        let err = MmapIndex::open(&path).unwrap_err();
        assert!(layout(&err).contains(kind.name()), "{err}");
        // Aligned to 64 only: the header is consistent, the promise of a page is not kept.
        let loose = with_header(&bytes, |h| {
            let i = at(h);
            h.sections[i].align = 64;
        });
        std::fs::write(&path, &loose).unwrap();
        let err = MmapIndex::open(&path).unwrap_err();
        assert!(layout(&err).contains("aligned"), "{err}");
        // Missing altogether.
        let missing = with_header(&bytes, |h| {
            let i = at(h);
            h.sections.remove(i);
        });
        std::fs::write(&path, &missing).unwrap();
        let err = MmapIndex::open(&path).unwrap_err();
        assert!(layout(&err).contains("no "), "{err}");
    }
}

#[test]
fn an_older_format_version_is_refused_asking_to_convert_again() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = archive(dir.path(), 4, 8);
    let old = with_header(&bytes, |h| h.version = 2);
    std::fs::write(&path, &old).unwrap();
    let err = MmapIndex::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Archive {
                fault: ArchiveFault::OlderVersion { found: 2, .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("convert the data again"), "{err}");
}

#[test]
fn the_header_fills_one_page_before_the_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = archive(dir.path(), 4, 8);
    let index = MmapIndex::open(&path).unwrap();
    assert_eq!(
        index.matrix().as_ptr() as usize % 4096,
        0,
        "matrix is page-aligned in the mapping"
    );
    assert_eq!(index.header().sections[0].offset, HEADER_SIZE as u64);
}

#[test]
fn a_failed_conversion_leaves_the_previous_archive_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (path, before) = archive(dir.path(), 12, 24);
    let rag_file = dir.path().join("db/p/rag-embeddings.json");
    let text = std::fs::read_to_string(&rag_file).unwrap();
    let source = PodcastSource::at(dir.path(), "p");
    // Cut the input in the middle of the items, and separately break an item's dimension.
    let broken_inputs = [
        text[..text.len() / 2].to_string(),
        text.replacen("\"embedding\": [", "\"embedding\": [0.5,", 3),
    ];
    for broken in broken_inputs {
        std::fs::write(&rag_file, &broken).unwrap();
        let err = convert_podcast(&source, &path).unwrap_err();
        assert!(err.to_string().contains("rag-embeddings.json"), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the previous archive changed"
        );
        MmapIndex::open(&path).unwrap().verify().unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "rag.podmap")
            .collect();
        assert!(
            leftovers.is_empty(),
            "temporary files left behind: {leftovers:?}"
        );
    }
}
