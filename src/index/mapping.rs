//! The one place where the read path trusts bytes: the mapping of an archive file and the rkyv
//! records read from it.
//!
//! Everything `unsafe` about reading an archive is in this file (the SIMD kernels in
//! [`crate::search::kernel`] are the only other `unsafe` code). [`Mapped`] owns the mapping
//! together with the validation state of every record section, so a record can only be read
//! unchecked from the very bytes that were checked, and only as the type it was checked as:
//! each section is a [`LazyRecords<T>`] of one archived type.
//!
//! The contract with the file system: an archive is replaced by renaming a new file over it
//! (as `podmap convert` does), never changed in place. A rename leaves the mapped inode as it
//! was for as long as the mapping lives. Writing into the mapped file (`cp` over it, `rsync
//! --inplace`, `truncate`) breaks that contract. On Linux the server guards against it with a
//! read lease on the mapped file ([`lease`]): a writer's `open` is held until the server has
//! stopped reading the mapping. Without a lease, reads in flight when the file changes may
//! fault.

use std::fs::File;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::Mmap;
use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;

use crate::archive::format::{SectionKind, ITEM_ALIGN};
use crate::archive::records::{
    ArchivedEpisodeRecord, ArchivedItemRecord, ArchivedPodcastRecord, ArchivedSlot,
    ArchivedSpeakersRecord, ArchivedTranscriptRecord, Consistent,
};

/// What a record type needs to be validated in place: bytecheck plus the invariants between
/// its fields that bytecheck cannot see.
pub(super) trait Record:
    rkyv::Portable + Consistent + for<'v> CheckBytes<HighValidator<'v, rancor::Error>>
{
}

impl<T> Record for T where
    T: rkyv::Portable + Consistent + for<'v> CheckBytes<HighValidator<'v, rancor::Error>>
{
}

/// A whole archive file, mapped read-only, not yet trusted.
pub(super) struct RawMapping(Mmap);

impl RawMapping {
    pub(super) fn of(file: &File) -> std::io::Result<Self> {
        // SAFETY: the mapping is read-only, and podmap never writes to an archive it has
        // written: a new archive is written to a temporary file and renamed over the old
        // one, so the mapped inode keeps its contents for as long as this mapping lives.
        // Another program writing into the file breaks that contract (see the module
        // documentation); no `&[u8]` handed out here outlives the `Mmap` it borrows from.
        unsafe { Mmap::map(file) }.map(RawMapping)
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Validates the meta record (`meta`, the root of the archive's small rkyv part) and
    /// sets up lazy validation of the record sections. The counts come from the meta record.
    pub(super) fn check(self, sections: Sections) -> Result<Mapped, String> {
        let meta =
            rkyv::access::<ArchivedPodcastRecord, rancor::Error>(&self.0[sections.meta.clone()])
                .map_err(|e| e.to_string())?;
        let (items, episodes) = (meta.items.len(), meta.episode_numbers.len());
        Ok(Mapped {
            items: LazyRecords::new(SectionKind::Items, sections.items, items),
            episodes: LazyRecords::new(SectionKind::Episodes, sections.episodes, episodes),
            transcripts: LazyRecords::new(SectionKind::Transcripts, sections.transcripts, episodes),
            speakers: LazyRecords::new(SectionKind::Speakers, sections.speakers, 1),
            meta: sections.meta,
            map: self.0,
        })
    }
}

/// Byte ranges of the sections, from a decoded header.
pub(super) struct Sections {
    pub meta: Range<usize>,
    pub items: Range<usize>,
    pub episodes: Range<usize>,
    pub transcripts: Range<usize>,
    pub speakers: Range<usize>,
}

/// A record that failed its first-read check.
#[derive(Debug)]
pub(super) struct RecordFault {
    pub section: &'static str,
    pub reason: String,
}

/// A mapped archive whose meta record has been validated; the other records are validated
/// on their first read.
pub(super) struct Mapped {
    map: Mmap,
    meta: Range<usize>,
    items: LazyRecords<ArchivedItemRecord>,
    episodes: LazyRecords<ArchivedEpisodeRecord>,
    transcripts: LazyRecords<ArchivedTranscriptRecord>,
    speakers: LazyRecords<ArchivedSpeakersRecord>,
}

/// Page-cache advice podmap gives for a range of a mapping (`madvise`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// Read a record at a time at scattered offsets: no readahead.
    Random,
    /// About to be read whole: start reading it in now.
    WillNeed,
    /// Scanned whole by every query: map it with huge pages where the page cache holds it in
    /// huge folios, and read it in as such (Linux; elsewhere no advice is given).
    HugePages,
}

impl Mapped {
    pub(super) fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Gives the kernel page-cache advice for `range` of the mapping. Advice is advisory: a
    /// failure (an old kernel, a platform without `madvise`) changes no result, so it is
    /// ignored.
    pub(super) fn advise(&self, range: Range<usize>, access: Access) {
        if range.is_empty() || range.end > self.map.len() {
            return;
        }
        #[cfg(unix)]
        {
            let advice = match access {
                Access::Random => memmap2::Advice::Random,
                Access::WillNeed => memmap2::Advice::WillNeed,
                #[cfg(target_os = "linux")]
                Access::HugePages => memmap2::Advice::HugePage,
                #[cfg(not(target_os = "linux"))]
                Access::HugePages => return,
            };
            // memmap2 widens the range to whole pages itself.
            let _ = self.map.advise_range(advice, range.start, range.len());
        }
        #[cfg(not(unix))]
        let _ = access;
    }

    /// The meta record: manifest, slots and columns.
    pub(super) fn meta(&self) -> &ArchivedPodcastRecord {
        // SAFETY: `RawMapping::check` validated exactly these bytes of this mapping with
        // `rkyv::access` (bytecheck) before constructing `self`, `meta` is private and never
        // changes, and the mapping is read-only (see `RawMapping::of`).
        unsafe { rkyv::access_unchecked::<ArchivedPodcastRecord>(&self.map[self.meta.clone()]) }
    }

    /// Item `i`. Panics if `i` is not below the item count.
    pub(super) fn item(&self, i: usize) -> Result<&ArchivedItemRecord, RecordFault> {
        self.items.get(&self.map, &self.meta().items[i], i)
    }

    /// The episode record at `position` (an index into the episode numbers).
    pub(super) fn episode(&self, position: usize) -> Result<&ArchivedEpisodeRecord, RecordFault> {
        self.episodes
            .get(&self.map, &self.meta().episodes[position], position)
    }

    /// The transcript of the episode at `position`; `None` when it has none.
    pub(super) fn transcript(
        &self,
        position: usize,
    ) -> Result<Option<&ArchivedTranscriptRecord>, RecordFault> {
        let slot = &self.meta().transcripts[position];
        if slot.len.to_native() == 0 {
            return Ok(None);
        }
        self.transcripts.get(&self.map, slot, position).map(Some)
    }

    /// The speakers record; `None` when the podcast has no `speakers/index.json`.
    pub(super) fn speakers(&self) -> Result<Option<&ArchivedSpeakersRecord>, RecordFault> {
        let slot = &self.meta().speakers;
        if slot.len.to_native() == 0 {
            return Ok(None);
        }
        self.speakers.get(&self.map, slot, 0).map(Some)
    }
}

/// A section of records of one type `T`, archived one by one, each checked (checksum, then
/// bytecheck, then [`Consistent`]) the first time it is read in this process and remembered as
/// valid in a bitset. Private to [`Mapped`], which pairs it with the one mapping it describes.
struct LazyRecords<T> {
    kind: SectionKind,
    range: Range<usize>,
    /// Bit `i` is set once record `i` has been validated as a `T`.
    validated: Box<[AtomicU64]>,
    record: PhantomData<fn() -> T>,
}

impl<T: Record> LazyRecords<T> {
    fn new(kind: SectionKind, range: Range<usize>, count: usize) -> Self {
        LazyRecords {
            kind,
            range,
            validated: (0..count.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            record: PhantomData,
        }
    }

    /// Record `i`, stored at `slot` in `map`.
    fn get<'a>(&self, map: &'a [u8], slot: &ArchivedSlot, i: usize) -> Result<&'a T, RecordFault> {
        let fault = |reason: String| RecordFault {
            section: self.kind.name(),
            reason: format!("record {i}: {reason}"),
        };
        let (offset, len) = (slot.offset.to_native(), slot.len.to_native());
        let section_len = (self.range.end - self.range.start) as u64;
        let bytes = match offset.checked_add(len) {
            Some(end) if end <= section_len && offset % ITEM_ALIGN == 0 => {
                let start = self.range.start + offset as usize;
                &map[start..start + len as usize]
            }
            _ => return Err(fault("lies outside its section or is misaligned".into())),
        };
        let Some(word) = self.validated.get(i / 64) else {
            return Err(fault("has no slot".into()));
        };
        let bit = 1u64 << (i % 64);
        if word.load(Ordering::Acquire) & bit == 0 {
            if xxhash_rust::xxh3::xxh3_64(bytes) != slot.checksum.to_native() {
                return Err(fault("checksum mismatch".into()));
            }
            let record =
                rkyv::access::<T, rancor::Error>(bytes).map_err(|e| fault(e.to_string()))?;
            record.check().map_err(fault)?;
            word.fetch_or(bit, Ordering::Release);
        }
        // SAFETY: bit `i` is set only after these bytes (the same slot of the same mapping:
        // the slots live in the validated, immutable meta record and `self` is owned by the
        // one `Mapped` that owns `map`) passed `rkyv::access::<T>` and `T`'s own invariants,
        // just above or in an earlier call; `T` is fixed for this section.
        Ok(unsafe { rkyv::access_unchecked::<T>(bytes) })
    }
}

/// Linux read leases (`fcntl(F_SETLEASE, F_RDLCK)`) on an archive file: while one is held, a
/// process that opens the file for writing or truncates it is blocked and this process gets
/// SIGIO, until the lease is released (the file closed and unmapped) or
/// `/proc/sys/fs/lease-break-time` passes. SIGIO terminates a process by default, so only a
/// caller that handles SIGIO may take one (see `MmapIndex::open_leased`).
#[cfg(all(target_os = "linux", feature = "server"))]
pub(super) mod lease {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;

    /// Takes a read lease on `file` (opened read-only). EAGAIN: the file is open for writing.
    pub(in crate::index) fn take_read(file: &File) -> io::Result<()> {
        // SAFETY: F_SETLEASE takes an integer argument, no pointer; the descriptor is borrowed
        // from `file` for the duration of the call, so it is open and owned by this process.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK) };
        if r == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Whether `file` still holds a read lease that no writer is breaking: F_GETLEASE answers
    /// F_UNLCK as soon as a break is pending (and after the lease is gone).
    pub(in crate::index) fn held(file: &File) -> bool {
        // SAFETY: F_GETLEASE takes no argument; the descriptor is borrowed from `file`.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLEASE) };
        r == libc::F_RDLCK
    }
}
