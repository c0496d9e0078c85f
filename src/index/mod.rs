//! A podcast's archive, memory-mapped and read in place.
//!
//! [`MmapIndex::open`] costs O(1) in the size of the vector matrix and of the item texts: it
//! checks the header (magic, version, rkyv features, schema hash, section bounds and
//! alignment), checksums and validates the small meta record with bytecheck, and touches no
//! matrix or item page. Each item is checked (its own checksum, then bytecheck) the first time
//! it is read, and remembered as valid in a bitset, so a query pays only for the hits it
//! returns. The matrix is checked by [`MmapIndex::verify`], which reads everything. A bit flip
//! in the matrix can go unnoticed until `verify`, but it cannot cause undefined behaviour: any
//! bit pattern is a valid `f32`, and search skips non-finite scores.

mod cache;
mod mapping;
mod search;
mod views;

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::archive::codes::CodesLayout;
use crate::archive::format::{Header, SectionKind, CODES_ALIGN, HEADER_SIZE};
use crate::archive::records::schema_hash;
use crate::error::{ArchiveFault, Error, Result};
use crate::search::quant::{BinaryCodes, Int8Codes};
use crate::search::SearchIndex;
use mapping::{Mapped, RawMapping, RecordFault, Sections};

pub use crate::archive::{archive_path, list_archives};
pub use cache::WarmScope;
pub use views::{Entry, Episode, Item, Manifest, Speaker, Speakers, Transcript};

/// An opened archive.
pub struct MmapIndex {
    path: PathBuf,
    /// The file mapped, kept open: a lease ([`MmapIndex::open_leased`]) lives as long as it.
    file: File,
    /// Whether [`MmapIndex::open_leased`] took a lease.
    leased: AtomicBool,
    header: Header,
    mapped: Mapped,
    matrix: Range<usize>,
    /// The int8 and binary code sections (see [`crate::archive::codes`]), checked at open.
    int8: Range<usize>,
    binary: Range<usize>,
    /// Every section's byte range, for `verify`.
    sections: Vec<(SectionKind, Range<usize>)>,
    /// `|mean|²` of the binary codes' mean, worked out on the first binary search.
    binary_mean_sq: OnceLock<f32>,
    /// Distinct episodes with an embedded item, counted on the first quantized search that
    /// reports a total (a pass over every row's columns, which the archive never changes).
    episodes_embedded: OnceLock<usize>,
}

/// Whether [`MmapIndex::open_leased`] took a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// A read lease is held: a writer's `open` (or `truncate`) of the file is held until this
    /// index is dropped, and this process gets SIGIO, [`MmapIndex::lease_broken`] then true.
    Taken,
    /// The file is open for writing somewhere (EAGAIN): it is being written and must not be
    /// mapped yet.
    Busy,
    /// Leases are not available for this file, with the reason: not Linux, not the file's
    /// owner without CAP_LEASE, a file system without leases, `fs.leases-enable = 0`, or a
    /// build without the `server` feature. In-place changes are then not guarded.
    Unsupported(String),
}

/// Episode orders for listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpisodeOrder {
    /// Highest episode number first (the original `/api/episodes/latest`).
    Number,
    /// Newest `date` first; episodes without a date last.
    Date,
}

impl std::fmt::Debug for MmapIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmapIndex")
            .field("path", &self.path)
            .field("header", &self.header)
            .finish()
    }
}

impl MmapIndex {
    /// Opens `<index_dir>/<podcast>/rag.podmap`.
    pub fn open_podcast(index_dir: &Path, podcast: &str) -> Result<Self> {
        Self::open(&archive_path(index_dir, podcast))
    }

    /// Maps and checks an archive file. Takes no lease (see [`MmapIndex::open_leased`]).
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_file(path, false).map(|(index, _)| index)
    }

    /// [`MmapIndex::open`] with a Linux read lease taken on the file **before** a byte of it
    /// is mapped or read: a process opening it for writing or truncating it (`cp` over it,
    /// `rsync --inplace`) is blocked until this index is dropped (or
    /// `/proc/sys/fs/lease-break-time`, 45 s by default, passes), instead of changing the
    /// pages under the mapping. A file open for writing elsewhere is refused with an I/O
    /// error of kind `ResourceBusy`: it is not finished. Where leases are unavailable the
    /// archive opens without one, and the state says why.
    ///
    /// **Only for a process that handles SIGIO**: the kernel announces a writer with SIGIO,
    /// whose default action terminates the process. The server installs a SIGIO handler
    /// before it opens any archive, then polls [`MmapIndex::lease_broken`] to find the
    /// archive being written.
    pub fn open_leased(path: &Path) -> Result<(Self, LeaseState)> {
        Self::open_file(path, true)
    }

    fn open_file(path: &Path, lease: bool) -> Result<(Self, LeaseState)> {
        let fault = |f| Error::archive(path, f);
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let state = if lease {
            lease_file(&file)
        } else {
            LeaseState::Unsupported("not asked for".into())
        };
        if state == LeaseState::Busy {
            return Err(Error::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::ResourceBusy,
                    "the file is open for writing: not served until it is finished",
                ),
            ));
        }
        let stat = file.metadata().map_err(|e| Error::io(path, e))?;
        let len = stat.len();
        if len < HEADER_SIZE as u64 {
            // Too short to map usefully; read what is there for the most precise message.
            let mut head = Vec::new();
            file.read_to_end(&mut head)
                .map_err(|e| Error::io(path, e))?;
            let reason = Header::decode(&head, len)
                .err()
                .unwrap_or(ArchiveFault::Length {
                    actual: len,
                    expected: HEADER_SIZE as u64,
                });
            return Err(fault(reason));
        }
        let raw = RawMapping::of(&file).map_err(|e| Error::io(path, e))?;
        let header = Header::decode(raw.bytes(), len).map_err(fault)?;
        let expected_schema = schema_hash();
        if header.schema_hash != expected_schema {
            return Err(fault(ArchiveFault::SchemaMismatch {
                found: header.schema_hash,
                expected: expected_schema,
            }));
        }
        let section = |kind: SectionKind| {
            header
                .section(kind)
                .copied()
                .ok_or_else(|| fault(ArchiveFault::Layout(format!("no {} section", kind.name()))))
        };
        let range = |kind| section(kind).map(|s| s.offset as usize..s.end() as usize);
        let matrix = section(SectionKind::Matrix)?;
        let meta = section(SectionKind::Meta)?;
        let expected_matrix = header
            .item_count
            .checked_mul(u64::from(header.dims))
            .and_then(|n| n.checked_mul(4));
        if expected_matrix != Some(matrix.len) {
            return Err(fault(ArchiveFault::Layout(format!(
                "matrix is {} bytes, {} items × {} dims need {:?}",
                matrix.len, header.item_count, header.dims, expected_matrix
            ))));
        }
        let codes_range = |kind: SectionKind| -> Result<Range<usize>> {
            let s = section(kind)?;
            let binary = kind == SectionKind::BinaryCodes;
            let expected = CodesLayout::checked(header.item_count, u64::from(header.dims), binary)
                .map(|l| l.len() as u64);
            if expected != Some(s.len) {
                return Err(fault(ArchiveFault::Layout(format!(
                    "{} section is {} bytes, {} items × {} dims need {:?}",
                    kind.name(),
                    s.len,
                    header.item_count,
                    header.dims,
                    expected
                ))));
            }
            if u64::from(s.align) < CODES_ALIGN {
                return Err(fault(ArchiveFault::Layout(format!(
                    "{} section is aligned to {}, not {CODES_ALIGN}",
                    kind.name(),
                    s.align
                ))));
            }
            Ok(s.offset as usize..s.end() as usize)
        };
        let int8 = codes_range(SectionKind::Int8Codes)?;
        let binary = codes_range(SectionKind::BinaryCodes)?;
        let sections: Vec<(SectionKind, Range<usize>)> = SectionKind::ALL
            .into_iter()
            .map(|kind| range(kind).map(|r| (kind, r)))
            .collect::<Result<_>>()?;
        let meta_range = meta.offset as usize..meta.end() as usize;
        if xxhash_rust::xxh3::xxh3_64(&raw.bytes()[meta_range.clone()]) != meta.checksum {
            return Err(fault(ArchiveFault::SectionChecksum { section: "meta" }));
        }
        let structure = |reason: String| {
            fault(ArchiveFault::Structure {
                section: "meta",
                reason,
            })
        };
        let mapped = raw
            .check(Sections {
                meta: meta_range,
                items: range(SectionKind::Items)?,
                episodes: range(SectionKind::Episodes)?,
                transcripts: range(SectionKind::Transcripts)?,
                speakers: range(SectionKind::Speakers)?,
            })
            .map_err(structure)?;
        let record = mapped.meta();
        let n = header.item_count as usize;
        if record.items.len() != n || record.episode_of.len() != n || record.norms.len() != n {
            return Err(structure(format!(
                "{} items, {} episode numbers, {} norms; header says {n}",
                record.items.len(),
                record.episode_of.len(),
                record.norms.len()
            )));
        }
        let m = record.episode_numbers.len();
        if record.episodes.len() != m || record.transcripts.len() != m {
            return Err(structure(format!(
                "{m} episode numbers, {} episodes, {} transcripts",
                record.episodes.len(),
                record.transcripts.len()
            )));
        }
        if !record.episode_numbers.windows(2).all(|w| w[0] < w[1]) {
            return Err(structure(
                "episode numbers are not strictly ascending".into(),
            ));
        }
        if record.by_date.iter().any(|&p| p.to_native() as usize >= m) {
            return Err(structure(
                "date order names an episode that does not exist".into(),
            ));
        }
        let index = MmapIndex {
            path: path.to_path_buf(),
            file,
            leased: AtomicBool::new(state == LeaseState::Taken),
            header,
            mapped,
            matrix: matrix.offset as usize..matrix.end() as usize,
            int8,
            binary,
            sections,
            binary_mean_sq: OnceLock::new(),
            episodes_embedded: OnceLock::new(),
        };
        index.advise_sections();
        // Cast once here so a misaligned matrix is refused at open, not at the first search.
        bytemuck::try_cast_slice::<u8, f32>(&index.mapped.bytes()[index.matrix.clone()]).map_err(
            |e| {
                fault(ArchiveFault::Layout(format!(
                    "matrix cannot be read as f32: {e:?}"
                )))
            },
        )?;
        Ok((index, state))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a lease taken by [`MmapIndex::open_leased`] is being broken (a writer waits for
    /// it) or is gone: the file is about to change, and this index must be dropped soon for
    /// the writer to proceed. Always false without a lease.
    pub fn lease_broken(&self) -> bool {
        if !self.leased.load(Ordering::Acquire) {
            return false;
        }
        #[cfg(all(target_os = "linux", feature = "server"))]
        {
            !mapping::lease::held(&self.file)
        }
        #[cfg(not(all(target_os = "linux", feature = "server")))]
        {
            let _ = &self.file; // kept open only for the lease
            false
        }
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    fn fault(&self, f: RecordFault) -> Error {
        Error::archive(
            &self.path,
            ArchiveFault::Structure {
                section: f.section,
                reason: f.reason,
            },
        )
    }

    pub fn podcast_id(&self) -> &str {
        self.mapped.meta().podcast_id.as_str()
    }

    /// The RAG file's top-level fields.
    pub fn manifest(&self) -> Manifest<'_> {
        Manifest(&self.mapped.meta().manifest)
    }

    /// Item `index` with every archived field, checked on its first read (checksum, then
    /// bytecheck). Panics if `index >= len()`.
    pub fn item_full(&self, index: usize) -> Result<Item<'_>> {
        self.mapped.item(index).map(Item).map_err(|f| self.fault(f))
    }

    /// The original L2 norm of item `index`'s embedding (0 without one).
    pub fn norm(&self, index: usize) -> f32 {
        self.mapped.meta().norms[index].to_native()
    }

    /// Every episode number known to the archive, ascending.
    pub fn episode_numbers(&self) -> impl ExactSizeIterator<Item = u32> + '_ {
        self.mapped
            .meta()
            .episode_numbers
            .iter()
            .map(|n| n.to_native())
    }

    fn episode_position(&self, number: u32) -> Option<usize> {
        self.mapped
            .meta()
            .episode_numbers
            .binary_search_by(|n| n.to_native().cmp(&number))
            .ok()
    }

    fn episode_at(&self, position: usize) -> Result<Episode<'_>> {
        self.mapped
            .episode(position)
            .map(Episode)
            .map_err(|f| self.fault(f))
    }

    /// Episode `number`: metadata (when `<n>.json` existed), file flags, topics.
    pub fn episode(&self, number: u32) -> Result<Option<Episode<'_>>> {
        self.episode_position(number)
            .map(|p| self.episode_at(p))
            .transpose()
    }

    /// The episodes that have metadata, in `order`, from `offset`, at most `limit`; and how
    /// many there are in all.
    pub fn episode_page(
        &self,
        order: EpisodeOrder,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Episode<'_>>, usize)> {
        let by_date = &self.mapped.meta().by_date;
        let positions: Box<dyn Iterator<Item = usize>> = match order {
            EpisodeOrder::Date => Box::new(by_date.iter().map(|p| p.to_native() as usize)),
            // by_date lists exactly the episodes with metadata; by number, newest first.
            EpisodeOrder::Number => {
                let mut with_meta: Vec<usize> =
                    by_date.iter().map(|p| p.to_native() as usize).collect();
                with_meta.sort_unstable_by(|a, b| b.cmp(a));
                Box::new(with_meta.into_iter())
            }
        };
        let page = positions
            .skip(offset)
            .take(limit)
            .map(|p| self.episode_at(p))
            .collect::<Result<Vec<_>>>()?;
        Ok((page, by_date.len()))
    }

    /// The distinct topics of episode `number`'s RAG items, in item order.
    pub fn topics(&self, number: u32) -> Result<Vec<&str>> {
        Ok(self
            .episode(number)?
            .map(|e| e.topics().collect())
            .unwrap_or_default())
    }

    /// Episode `number`'s transcript, when it has one. Validated on its first read only, so
    /// opening a podcast costs nothing per transcript.
    pub fn transcript(&self, number: u32) -> Result<Option<Transcript<'_>>> {
        let Some(position) = self.episode_position(number) else {
            return Ok(None);
        };
        self.mapped
            .transcript(position)
            .map(|t| t.map(Transcript))
            .map_err(|f| self.fault(f))
    }

    /// The size in bytes of episode `number`'s archived transcript (0 without one).
    pub fn transcript_bytes(&self, number: u32) -> u64 {
        self.episode_position(number)
            .map_or(0, |p| self.mapped.meta().transcripts[p].len.to_native())
    }

    /// The excerpt of a time window of episode `number`, by the original server's rules
    /// (see [`crate::transcript`]); the placeholder when nothing matches.
    pub fn excerpt(&self, number: u32, window: &crate::transcript::Window) -> Result<String> {
        Ok(match self.transcript(number)? {
            Some(t) => t.excerpt(window),
            None => crate::transcript::placeholder(window),
        })
    }

    /// The speakers of `speakers/index.json`, in its order; `None` without an index.
    pub fn speakers(&self) -> Result<Option<Speakers<'_>>> {
        self.mapped
            .speakers()
            .map(|s| s.map(Speakers))
            .map_err(|f| self.fault(f))
    }

    /// The speaker with this exact slug.
    pub fn speaker(&self, slug: &str) -> Result<Option<Speaker<'_>>> {
        Ok(self.speakers()?.and_then(|s| s.get(slug)))
    }

    /// The whole matrix, `len() × dims()` floats, row-major.
    pub fn matrix(&self) -> &[f32] {
        bytemuck::cast_slice(&self.mapped.bytes()[self.matrix.clone()])
    }

    /// The int8 codes and their per-row scales.
    pub fn int8_codes(&self) -> Int8Codes<'_> {
        let layout = CodesLayout::int8(self.len(), self.dims());
        let bytes = &self.mapped.bytes()[self.int8.clone()];
        Int8Codes {
            dims: self.dims(),
            codes: bytemuck::cast_slice(&bytes[..layout.codes_len]),
            scales: bytemuck::cast_slice(&bytes[layout.tail_at..]),
        }
    }

    /// The sign bits around the corpus mean, and that mean.
    pub fn binary_codes(&self) -> BinaryCodes<'_> {
        let layout = CodesLayout::binary(self.len(), self.dims());
        let bytes = &self.mapped.bytes()[self.binary.clone()];
        let mean: &[f32] = bytemuck::cast_slice(&bytes[layout.tail_at..]);
        BinaryCodes {
            dims: self.dims(),
            stride: layout.stride,
            bits: &bytes[..layout.codes_len],
            mean,
            mean_sq: *self
                .binary_mean_sq
                .get_or_init(|| crate::search::kernel::dot(mean, mean)),
        }
    }

    /// The L2-normalised embedding of row `index` (all zeros when the item has none).
    pub fn row(&self, index: usize) -> &[f32] {
        let d = self.dims();
        &self.matrix()[index * d..(index + 1) * d]
    }

    /// Reads the whole archive and checks everything `open` does not: every section's
    /// checksum, every record, the padding between sections, and that each row is
    /// unit-length (or zero, for items without an embedding).
    pub fn verify(&self) -> Result<()> {
        let fault = |f| Error::archive(&self.path, f);
        let bytes = self.mapped.bytes();
        for (kind, range) in &self.sections {
            let section = self.header.section(*kind).expect("checked at open");
            if xxhash_rust::xxh3::xxh3_64(&bytes[range.clone()]) != section.checksum {
                return Err(fault(ArchiveFault::SectionChecksum {
                    section: kind.name(),
                }));
            }
        }
        (0..self.len())
            .into_par_iter()
            .try_for_each(|i| self.item_full(i).map(drop))?;
        for number in self.episode_numbers() {
            self.episode(number)?;
            self.transcript(number)?;
        }
        self.speakers()?;
        // Alignment padding between sections is not checksummed: it must be zeros.
        let mut covered: Vec<(u64, u64)> = self
            .header
            .sections
            .iter()
            .map(|s| (s.offset, s.end()))
            .collect();
        covered.sort_unstable();
        let mut at = HEADER_SIZE as u64;
        for (start, end) in covered {
            if bytes[at as usize..start.max(at) as usize]
                .iter()
                .any(|&b| b != 0)
            {
                return Err(fault(ArchiveFault::Layout(format!(
                    "non-zero padding between offsets {at} and {start}"
                ))));
            }
            at = at.max(end);
        }
        let d = self.dims();
        if d == 0 {
            return Ok(());
        }
        let bad = self
            .matrix()
            .par_chunks(d)
            .enumerate()
            .find_any(|(i, row)| {
                let len2: f64 = row.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
                if self.norm(*i) > 0.0 {
                    (len2 - 1.0).abs() > 1e-3
                } else {
                    len2 != 0.0
                }
            });
        match bad {
            Some((i, _)) => Err(fault(ArchiveFault::Structure {
                section: "matrix",
                reason: format!("row {i} does not match its recorded norm"),
            })),
            None => Ok(()),
        }
    }
}

/// Takes a read lease on a freshly opened archive file (see [`MmapIndex::open_leased`]).
fn lease_file(file: &File) -> LeaseState {
    #[cfg(all(target_os = "linux", feature = "server"))]
    {
        match mapping::lease::take_read(file) {
            Ok(()) => LeaseState::Taken,
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => LeaseState::Busy,
            Err(e) => LeaseState::Unsupported(e.to_string()),
        }
    }
    #[cfg(not(all(target_os = "linux", feature = "server")))]
    {
        let _ = file;
        LeaseState::Unsupported("file leases need Linux and podmap's \"server\" feature".into())
    }
}
