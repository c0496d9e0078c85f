//! The input's plain values turned into archive records.
//!
//! This is where the original's shapes meet the archive's: item fields are kept one for one
//! (free-form JSON as compact text), transcript speakers are interned per episode and times
//! parsed once, and speakers get a slug order for lookups. `input` knows nothing of the
//! archive and `archive` nothing of the JSON; only this module knows both.

use std::collections::HashMap;
use std::path::Path;

use crate::archive::records::{
    EntryRecord, EpisodeMetaRecord, ItemRecord, ManifestRecord, SpeakerRecord, SpeakersRecord,
    SubjectRecord, TranscriptRecord, NO_SPEAKER,
};
use crate::input::library::{EpisodeMeta, SpeakerRow, TranscriptFile};
use crate::input::{RagHeader, RagTail, RawItem};
use crate::transcript::parse_time;

/// An item's record, and its embedding (which goes to the matrix, not the record).
pub(crate) fn item(item: RawItem) -> (ItemRecord, Option<Vec<f32>>) {
    let record = ItemRecord {
        id: item.id,
        key: item.key,
        episode_number: item.episode_number,
        episode_title: item.episode_title,
        topic: item.topic,
        subject: item.subject.map(|s| SubjectRecord {
            coarse: s.coarse,
            fine: s.fine,
        }),
        start_sec: item.start_sec,
        end_sec: item.end_sec,
        start_hms: item.start_hms,
        end_hms: item.end_hms,
        duration_sec: item.duration_sec,
        summary: item.summary,
        source_json: item.source.map(|v| v.to_string()),
        text: item.text,
    };
    (record, item.embedding)
}

/// The RAG file's top-level fields, `stats` included.
pub(crate) fn manifest(tail: &RagTail) -> ManifestRecord {
    let header: &RagHeader = &tail.header;
    ManifestRecord {
        schema_version: header.schema_version,
        created_at: header.created_at.clone(),
        updated_at: header.updated_at.clone(),
        embedding_model: header.embedding_model.clone(),
        embedding_dimensions: header.embedding_dimensions,
        embedding_info_json: header.embedding_info.as_ref().map(|v| v.to_string()),
        source_json: header.source.as_ref().map(|v| v.to_string()),
        stats_json: tail.stats.as_ref().map(|v| v.to_string()),
    }
}

/// Episode metadata as written. A `duration` that is not `[h, m, s]` is kept as written but
/// gives no duration in seconds; a warning names `path`.
pub(crate) fn episode_meta(
    meta: EpisodeMeta,
    path: &Path,
    warnings: &mut Vec<String>,
) -> EpisodeMetaRecord {
    if let Some(d) = meta.duration.as_ref().filter(|d| d.len() != 3) {
        warnings.push(format!(
            "{}: duration {d:?} is not [h, m, s]; the episode has no duration",
            path.display()
        ));
    }
    EpisodeMetaRecord {
        title: meta.title,
        number: meta.number,
        date: meta.date,
        url: meta.url,
        duration: meta.duration,
        description: meta.description,
        speakers: meta.speakers,
        chapters: meta.chapters,
    }
}

/// A transcript with its speakers interned (in order of first appearance) and its times
/// parsed. A non-empty time that does not parse leaves its entry untimed (as the original
/// skips it) and adds a warning naming `path` and the entry.
pub(crate) fn transcript(
    file: TranscriptFile,
    path: &Path,
    warnings: &mut Vec<String>,
) -> TranscriptRecord {
    let mut speakers: Vec<String> = Vec::new();
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut entries = Vec::with_capacity(file.entries.len());
    let (mut timed, mut starts) = (Vec::new(), Vec::new());
    for (i, e) in file.entries.into_iter().enumerate() {
        let speaker = match e.speaker {
            None => NO_SPEAKER,
            Some(name) => *ids.entry(name).or_insert_with_key(|name| {
                speakers.push(name.clone());
                (speakers.len() - 1) as u32
            }),
        };
        let seconds = parse_time(&e.time);
        match seconds {
            Some(t) => {
                timed.push(i as u32);
                starts.push(t);
            }
            None if !e.time.trim().is_empty() => warnings.push(format!(
                "{}: entry {i}: time {:?} is not H:MM:SS, M:SS or seconds; the entry is untimed",
                path.display(),
                e.time
            )),
            None => {}
        }
        entries.push(EntryRecord {
            speaker,
            time: e.time,
            seconds,
            duration: e.duration,
            text: e.text,
        });
    }
    let sorted = starts.windows(2).all(|w| w[0] <= w[1]);
    TranscriptRecord {
        duration: file.duration,
        speakers,
        entries,
        timed,
        starts,
        sorted,
    }
}

/// The speakers in index order, with the slug order lookups search. A slug that appears more
/// than once is reported (naming `path`); lookups find its first row, as the original's.
pub(crate) fn speakers(
    rows: Vec<SpeakerRow>,
    path: &Path,
    warnings: &mut Vec<String>,
) -> SpeakersRecord {
    let rows: Vec<SpeakerRecord> = rows
        .into_iter()
        .map(|r| SpeakerRecord {
            speaker: r.speaker,
            slug: r.slug,
            episodes_count: r.episodes_count,
            utterances_count: r.utterances_count,
            total_words: r.total_words,
            episodes: r.episodes,
            profile: r.profile,
            image: r.image,
        })
        .collect();
    let mut by_slug: Vec<u32> = (0..rows.len() as u32).collect();
    // Stable: equal slugs keep index order, so the first row comes first.
    by_slug.sort_by(|&a, &b| rows[a as usize].slug.cmp(&rows[b as usize].slug));
    for pair in by_slug.windows(2) {
        let (a, b) = (&rows[pair[0] as usize], &rows[pair[1] as usize]);
        if a.slug == b.slug {
            warnings.push(format!(
                "{}: slug {:?} names both {:?} and {:?}; lookups use the first",
                path.display(),
                a.slug,
                a.speaker,
                b.speaker
            ));
        }
    }
    SpeakersRecord { rows, by_slug }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::library::read_transcript;

    #[test]
    fn transcript_interns_speakers_and_warns_on_bad_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("5-ts.json");
        std::fs::write(
            &path,
            r#"{"duration": 99, "transcript": [
                {"speaker": "A", "time": "0:01", "text": " eins "},
                {"speaker": "B", "time": "1:2:3:4", "text": "zwei"},
                {"speaker": "A", "time": "", "text": "drei", "duration": 1.5},
                {"time": "0:00:05", "text": "vier"}
            ]}"#,
        )
        .unwrap();
        let mut warnings = Vec::new();
        let t = transcript(read_transcript(&path).unwrap(), &path, &mut warnings);
        assert_eq!(t.speakers, vec!["A", "B"]);
        assert_eq!(
            t.entries.iter().map(|e| e.speaker).collect::<Vec<_>>(),
            vec![0, 1, 0, NO_SPEAKER]
        );
        assert_eq!(t.timed, vec![0, 3]);
        assert_eq!(t.starts, vec![1.0, 5.0]);
        assert!(t.sorted);
        assert_eq!(t.duration, Some(99.0));
        assert_eq!(t.entries[2].duration, Some(1.5));
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("5-ts.json: entry 1: time \"1:2:3:4\""),
            "{}",
            warnings[0]
        );
    }
}
