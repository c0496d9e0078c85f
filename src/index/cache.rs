//! The page-cache policy of a mapped archive: advice per section at open, and warming
//! (`podmap warm`, `podmap serve --preload`) so the first search after a reboot or a deploy
//! does not wait for the disk.

use std::ops::Range;

use super::mapping::Access;
use super::MmapIndex;
use crate::archive::format::SectionKind;

/// What [`MmapIndex::warm`] reads into the page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmScope {
    /// The vector matrix and its int8 and sign-bit codes: what vector searches read whole,
    /// whichever the mode (exact scans the matrix; int8 and binary scan their codes and read
    /// a few matrix rows to rescore).
    Vectors,
    /// The whole file: header, matrix and every record section.
    All,
}

/// The stride at which [`MmapIndex::warm`] touches the mapping: the smallest page size of the
/// targets podmap runs on (a larger page is touched more than once, which costs nothing).
const PAGE: usize = 4096;

impl MmapIndex {
    /// Page-cache advice per section, given once at open (advisory: failures are ignored).
    ///
    /// The record sections (items, episodes, transcripts, speakers) are read a record at a
    /// time at scattered offsets: `Random` turns readahead off for them, so reading a hit's
    /// item does not pull in the 128 KiB around it. The matrix keeps the kernel's default
    /// (`Normal`): every vector search reads it whole and in order, which the default
    /// readahead serves, and `Sequential` would be wrong for it: the kernel does not count
    /// accesses through a `Sequential` range as references, so the pages of a matrix that
    /// every query scans again would be the first reclaimed. `WillNeed` is for when the caller
    /// asks for the matrix to be read in ([`MmapIndex::warm`]: `podmap warm`,
    /// `podmap serve --preload`), not for every open: a process that opens an archive for one
    /// listing should not read its whole matrix.
    pub(super) fn advise_sections(&self) {
        for (kind, range) in &self.sections {
            if matches!(
                kind,
                SectionKind::Items
                    | SectionKind::Episodes
                    | SectionKind::Transcripts
                    | SectionKind::Speakers
            ) {
                self.mapped.advise(range.clone(), Access::Random);
            }
        }
    }

    fn warm_range(&self, scope: WarmScope) -> Range<usize> {
        match scope {
            // The three sections come first in the file, one after the other (only alignment
            // padding between them): one range, one `madvise`.
            WarmScope::Vectors => self
                .sections
                .iter()
                .filter(|(kind, _)| {
                    matches!(
                        kind,
                        SectionKind::Matrix | SectionKind::Int8Codes | SectionKind::BinaryCodes
                    )
                })
                .map(|(_, range)| range.clone())
                .chain(std::iter::once(self.matrix.clone()))
                .reduce(|a, b| a.start.min(b.start)..a.end.max(b.end))
                .unwrap_or_default(),
            WarmScope::All => 0..self.mapped.bytes().len(),
        }
    }

    /// The bytes [`MmapIndex::warm`] reads for `scope`.
    pub fn warm_len(&self, scope: WarmScope) -> u64 {
        self.warm_range(scope).len() as u64
    }

    /// Reads `scope` into the page cache, so that the first search after a reboot or a deploy
    /// does not wait for the disk a readahead window at a time: asks the kernel to read it all
    /// (`madvise(WillNeed)`, which starts the I/O at once, in large requests), then reads one
    /// byte per page, which returns once every page is resident and mapped. Calls `progress`
    /// with the bytes done so far after each 4 MiB and at the end. Returns the bytes warmed.
    ///
    /// The pages stay cached only as long as the kernel keeps them: warming is a head start,
    /// not a lock in memory.
    pub fn warm(&self, scope: WarmScope, mut progress: impl FnMut(u64)) -> u64 {
        const STEP: usize = 4 << 20;
        let range = self.warm_range(scope);
        self.mapped.advise(range.clone(), Access::WillNeed);
        let bytes = &self.mapped.bytes()[range];
        let mut done = 0;
        for chunk in bytes.chunks(STEP) {
            let touched = chunk.iter().step_by(PAGE).fold(0u8, |acc, &b| acc ^ b);
            std::hint::black_box(touched);
            done += chunk.len() as u64;
            progress(done);
        }
        if bytes.is_empty() {
            progress(0);
        }
        done
    }
}
