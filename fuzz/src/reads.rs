//! Every read an archive offers, driven over an archive that may be damaged: the fuzz targets
//! and `tests/properties.rs` (included there by path) call these and require only that
//! nothing panics, hangs or overflows. Each function returns how many reads succeeded, so a
//! caller can tell an archive that was refused from one that was read.

use std::path::Path;

use podmap::archive::format::Header;
use podmap::index::EpisodeOrder;
use podmap::transcript::Window;
use podmap::{Filter, MmapIndex, SearchIndex};

/// Decodes `bytes` as the header of a file of `file_len` bytes; a header that decodes
/// encodes to bytes that decode to the same header.
pub fn header(bytes: &[u8], file_len: u64) -> bool {
    let Ok(header) = Header::decode(bytes, file_len) else {
        return false;
    };
    let again = Header::decode(&header.encode(), file_len).expect("an encoded header decodes");
    assert_eq!(again, header, "header round trip");
    true
}

/// Opens the archive at `path` and searches it with fixed queries: vector top-k with and
/// without filters, every score, lexical search; and reads each hit's item.
pub fn open_search(path: &Path) -> usize {
    let Ok(index) = MmapIndex::open(path) else {
        return 0;
    };
    let mut reads = 1;
    let dims = index.dims();
    let query: Vec<f32> = (0..dims).map(|i| ((i % 7) as f32) - 3.0).collect();
    let filters = [
        Filter::all(),
        Filter::episode_range(1, 3),
        Filter::episode_set(vec![2, 0, u32::MAX]),
    ];
    for filter in &filters {
        if let Ok(hits) = index.search_vector(&query, 10, filter) {
            reads += 1;
            for hit in hits {
                assert!(hit.score.is_finite());
                reads += usize::from(index.item(hit.index as usize).is_ok());
            }
        }
        if let Ok(all) = index.score_all(&query, filter) {
            assert!(all.len() <= index.len());
            reads += 1;
        }
        if let Ok(hits) = index.search_text("mond raumfahrt", 5, filter) {
            reads += 1;
            for hit in hits {
                reads += usize::from(index.item(hit.index as usize).is_ok());
            }
        }
    }
    reads
}

/// Opens the archive at `path` and reads everything through the public views: manifest,
/// items, episodes and their pages, transcripts and excerpts, speakers; then verifies it.
pub fn open_read(path: &Path) -> usize {
    let Ok(index) = MmapIndex::open(path) else {
        return 0;
    };
    let mut reads = 1;
    let _ = index.podcast_id().len();
    let m = index.manifest();
    let _ = (m.schema_version(), m.created_at(), m.embedding_model());
    let _ = (m.embedding_dimensions(), m.source_json(), m.stats_json());
    for i in 0..index.len().min(256) {
        let _ = index.norm(i);
        let _ = index.episode_of(i);
        let _ = index.row(i).len();
        if let Ok(item) = index.item_full(i) {
            reads += 1;
            let _ = (
                item.id(),
                item.key(),
                item.duration_sec(),
                item.source_json(),
            );
            let view = item.view();
            let _ = (view.topic, view.summary, view.text, view.start_hms);
        }
    }
    let numbers: Vec<u32> = index.episode_numbers().take(256).collect();
    for &number in &numbers {
        if let Ok(Some(e)) = index.episode(number) {
            reads += 1;
            let _ = (e.number(), e.title(), e.date(), e.url(), e.description());
            let _ = (e.duration(), e.duration_sec(), e.meta_number());
            let _ = e.speakers().map(|s| s.count());
            let _ = e.chapters().map(|s| s.count());
            let _ = e.topics().count();
        }
        let _ = index.topics(number);
        let _ = index.transcript_bytes(number);
        if let Ok(Some(t)) = index.transcript(number) {
            reads += 1;
            let _ = (t.duration(), t.len(), t.is_sorted(), t.timed().count());
            let names: Vec<&str> = t.speakers().collect();
            for entry in t.entries().take(64) {
                let _ = (entry.speaker, entry.time, entry.seconds, entry.text);
            }
            for (start, end, speaker) in [
                (0.0, 60.0, None),
                (30.0, 1e12, names.first().copied()),
                (-5.0, f64::MAX, Some("niemand")),
                (f64::NAN, 10.0, None),
            ] {
                let window = Window {
                    start,
                    end,
                    speaker,
                    max_chars: 200,
                };
                let _ = t.excerpt(&window);
                let _ = index.excerpt(number, &window);
            }
        }
    }
    for order in [EpisodeOrder::Number, EpisodeOrder::Date] {
        if let Ok((page, total)) = index.episode_page(order, 1, 5) {
            assert!(page.len() <= 5 && page.len() <= total);
            reads += 1;
        }
    }
    if let Ok(Some(speakers)) = index.speakers() {
        reads += 1;
        for s in speakers.iter().take(64) {
            let _ = (s.name(), s.profile(), s.image(), s.total_words());
            let _ = s.episodes().count();
            let _ = speakers.get(s.slug());
        }
        let _ = speakers.get("");
        let _ = speakers.get("zz-niemand");
    }
    let _ = index.speaker("tim-pritlove");
    reads += usize::from(index.verify().is_ok());
    reads
}
