//! Per-podcast gauges (`podmap_podcast_*{podcast}`) and refused archives
//! (`podmap_archive_refused_total{podcast,reason}`).
//!
//! The gauges follow the published catalog: [`observe_catalog`] compares it with the last one
//! it saw (by podcast identity, not by id, so a replaced archive is told from the one it
//! replaced) and sets the gauges of every podcast published since, and zeroes those withdrawn.
//! The reloader calls it after every publish and `/metrics` before every scrape, so no
//! publish is missed and a scrape never shows a podcast that is gone.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use ::metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

use crate::error::{ArchiveFault, Error};
use crate::server::catalog::{Catalog, Podcast};

/// Why an archive was refused or stopped being served: the `reason` label, a fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Shorter or longer than its header says (a copy cut short, a file still being written).
    Truncated,
    /// A checksum, the magic bytes, the layout or a record failed its check.
    Corrupt,
    /// Written by a newer podmap (a format version this build does not read yet).
    NewerVersion,
    /// An older format, other rkyv features or another record schema: convert again.
    Incompatible,
    /// The file disappeared: removed from the index directory, or between listing and opening.
    Deleted,
    /// Any other failure to read the file (permissions, I/O errors).
    Unreadable,
}

impl Refusal {
    /// The reason an open or a verification failed.
    pub fn of(error: &Error) -> Refusal {
        match error {
            Error::Archive { fault, .. } => match fault {
                ArchiveFault::Length { .. } => Refusal::Truncated,
                ArchiveFault::NewerVersion { .. } => Refusal::NewerVersion,
                ArchiveFault::OlderVersion { .. }
                | ArchiveFault::RkyvFeatures { .. }
                | ArchiveFault::SchemaMismatch { .. } => Refusal::Incompatible,
                ArchiveFault::BadMagic
                | ArchiveFault::HeaderChecksum
                | ArchiveFault::SectionChecksum { .. }
                | ArchiveFault::Layout(_)
                | ArchiveFault::Structure { .. } => Refusal::Corrupt,
            },
            Error::Io { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound => {
                Refusal::Deleted
            }
            _ => Refusal::Unreadable,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Truncated => "truncated",
            Refusal::Corrupt => "corrupt",
            Refusal::NewerVersion => "newer_version",
            Refusal::Incompatible => "incompatible",
            Refusal::Deleted => "deleted",
            Refusal::Unreadable => "unreadable",
        }
    }
}

/// Counts an archive refused while serving (by the reloader): a replacement that does not
/// open or verify, a served file that fails verification, an archive removed.
pub fn archive_refused(podcast: &str, reason: Refusal) {
    counter!(
        "podmap_archive_refused_total",
        "podcast" => podcast.to_owned(),
        "reason" => reason.as_str()
    )
    .increment(1);
}

/// What [`observe_catalog`] remembers of a podcast id.
struct Seen {
    /// The podcast last published under this id (weak: the gauges never keep a mapping).
    podcast: Weak<dyn Podcast>,
    /// Podcasts published under this id since start-up.
    generation: u64,
    served: bool,
}

static SEEN: Mutex<BTreeMap<String, Seen>> = Mutex::new(BTreeMap::new());

/// Sets the gauges of every podcast `catalog` publishes that was not published before (new,
/// or a replaced archive: its generation goes up by one), and zeroes the gauges of podcasts
/// no longer served. Cheap when nothing changed: one pointer comparison per podcast.
pub fn observe_catalog(catalog: &Catalog) {
    let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for (id, podcast) in &catalog.podcasts {
        let current = Arc::downgrade(podcast);
        let entry = seen.entry(id.clone()).or_insert_with(|| Seen {
            podcast: Weak::<crate::server::catalog::MmapPodcast>::new(),
            generation: 0,
            served: false,
        });
        if entry.served && Weak::ptr_eq(&entry.podcast, &current) {
            continue;
        }
        entry.podcast = current;
        entry.generation += 1;
        entry.served = true;
        set_gauges(id, Some((podcast.as_ref(), entry.generation)));
    }
    for (id, entry) in seen.iter_mut() {
        if entry.served && !catalog.podcasts.contains_key(id) {
            entry.served = false;
            set_gauges(id, None);
        }
    }
}

/// A served podcast's figures, or zeros for one withdrawn.
fn set_gauges(id: &str, podcast: Option<(&dyn Podcast, u64)>) {
    let (generation, items, bytes, load) = match podcast {
        Some((p, generation)) => (
            generation as f64,
            p.index().len() as f64,
            p.mapped_bytes() as f64,
            p.load_time().map_or(0.0, |t| t.as_secs_f64()),
        ),
        None => (0.0, 0.0, 0.0, 0.0),
    };
    gauge!("podmap_podcast_generation", "podcast" => id.to_owned()).set(generation);
    gauge!("podmap_podcast_items", "podcast" => id.to_owned()).set(items);
    gauge!("podmap_podcast_mapped_bytes", "podcast" => id.to_owned()).set(bytes);
    gauge!("podmap_podcast_load_seconds", "podcast" => id.to_owned()).set(load);
}

pub(super) fn describe() {
    describe_gauge!(
        "podmap_podcast_generation",
        "Archives published for this podcast since start-up (a reload counter); 0 while not served"
    );
    describe_gauge!(
        "podmap_podcast_items",
        "RAG items of the served archive; 0 while not served"
    );
    describe_gauge!(
        "podmap_podcast_mapped_bytes",
        Unit::Bytes,
        "Bytes of the served archive's mapping; 0 for JSON podcasts and while not served"
    );
    describe_gauge!(
        "podmap_podcast_load_seconds",
        Unit::Seconds,
        "Time the served archive took to open (and, for a replacement, to be read whole)"
    );
    describe_counter!(
        "podmap_archive_refused_total",
        "Archives refused or withdrawn while serving, by podcast and reason"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn archive(fault: ArchiveFault) -> Error {
        Error::Archive {
            path: PathBuf::from("x/rag.podmap"),
            fault,
        }
    }

    #[test]
    fn refusals_fall_into_a_fixed_set_of_reasons() {
        let cases = [
            (
                archive(ArchiveFault::Length {
                    actual: 1,
                    expected: 2,
                }),
                "truncated",
            ),
            (archive(ArchiveFault::HeaderChecksum), "corrupt"),
            (archive(ArchiveFault::BadMagic), "corrupt"),
            (
                archive(ArchiveFault::NewerVersion {
                    found: 9,
                    supported: 2,
                }),
                "newer_version",
            ),
            (
                archive(ArchiveFault::SchemaMismatch {
                    found: 1,
                    expected: 2,
                }),
                "incompatible",
            ),
            (
                Error::Io {
                    path: PathBuf::from("x"),
                    cause: std::io::ErrorKind::NotFound.into(),
                },
                "deleted",
            ),
            (
                Error::Io {
                    path: PathBuf::from("x"),
                    cause: std::io::ErrorKind::PermissionDenied.into(),
                },
                "unreadable",
            ),
        ];
        for (error, reason) in cases {
            assert_eq!(Refusal::of(&error).as_str(), reason, "{error}");
        }
    }
}
