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
    ///
    /// The matrix and the code sections are advised `HugePages`: a scan through 4 KiB pages
    /// misses the TLB every page, and on a virtual machine each miss walks two sets of page
    /// tables. Where the page cache holds the archive in 2 MiB folios (as `podmap convert`
    /// writes it, see `archive::chunked`, or as reading through this mapping brings it in),
    /// one TLB entry covers 2 MiB. Measured with the exact scan's kernel on 2 cores over one
    /// archive mapped twice in one process, huge and with `NOHUGEPAGE`, 40 rounds in turns:
    /// 16,000 × 3,072, median 3.01–3.05 ms huge against 3.26–3.27 ms; 64,000 × 3,072,
    /// 16.3–16.6 ms against 16.7–16.8 ms (means 16.9–17.6 against 18.2–18.6 ms). The advice
    /// only sets the mapping's flags: open still reads no page of it.
    pub(super) fn advise_sections(&self) {
        for (kind, range) in &self.sections {
            let access = match kind {
                SectionKind::Items
                | SectionKind::Episodes
                | SectionKind::Transcripts
                | SectionKind::Speakers => Access::Random,
                SectionKind::Matrix | SectionKind::Int8Codes | SectionKind::BinaryCodes => {
                    Access::HugePages
                }
                SectionKind::Meta => continue,
            };
            self.mapped.advise(range.clone(), access);
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
