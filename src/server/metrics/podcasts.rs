//! Per-podcast gauges (`podmap_podcast_*{podcast}`) and refused archives
//! (`podmap_archive_refused_total{podcast,reason}`).
//!
//! The gauges are read from the published catalog at scrape time ([`observe_catalog`]): a
//! handful of values per podcast, and a scrape never shows a podcast that is gone. The
//! generation is the catalog's own count of archives published per podcast
//! ([`Catalog::generations`]), kept by the reloader, so no replacement between two scrapes
//! is missed.

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
    super::handle(); // the first catalog is loaded before the first router is made
    counter!(
        "podmap_archive_refused_total",
        "podcast" => podcast.to_owned(),
        "reason" => reason.as_str()
    )
    .increment(1);
}

/// Sets the per-podcast gauges from `catalog` (at scrape time): the figures of every podcast
/// it serves, and zeros for every podcast it served since start-up and no longer does. The
/// catalog carries its own reload counts, so nothing is remembered here and several catalogs
/// in one process (as in tests) do not disturb each other's podcasts.
pub fn observe_catalog(catalog: &Catalog) {
    for (id, generation) in catalog.generations() {
        set_gauges(id, catalog.get(id).map(|p| (p.as_ref(), generation)));
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
