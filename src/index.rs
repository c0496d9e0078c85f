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

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::Mmap;
use rayon::prelude::*;

use crate::archive::format::{Header, SectionKind, HEADER_SIZE, ITEM_ALIGN};
use crate::archive::records::{
    schema_hash, ArchivedEpisodeRecord, ArchivedItemRecord, ArchivedPodcastRecord, ArchivedSlot,
    ArchivedSpeakerRecord, ArchivedSpeakersRecord, ArchivedTranscriptRecord, Consistent,
};
use crate::archive::ARCHIVE_FILE;
use crate::error::{ArchiveFault, Error, Result};
use crate::search::{kernel, query_norm, topk::TopK, Filter, Hit, ItemView, SearchIndex};

/// Rows scored by one task of a parallel scan: big enough that scheduling is noise, small
/// enough that both cores stay busy on a few thousand rows.
const ROWS_PER_TASK: usize = 256;

/// An opened archive.
pub struct MmapIndex {
    path: PathBuf,
    header: Header,
    map: Mmap,
    matrix: Range<usize>,
    meta: Range<usize>,
    items: LazyRecords,
    episodes: LazyRecords,
    transcripts: LazyRecords,
    speakers: LazyRecords,
}

/// Episode orders for listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpisodeOrder {
    /// Highest episode number first (the original `/api/episodes/latest`).
    Number,
    /// Newest `date` first; episodes without a date last.
    Date,
}

/// A section of records archived one by one, each checked (checksum, then bytecheck) the
/// first time it is read in this process and remembered as valid in a bitset.
struct LazyRecords {
    kind: SectionKind,
    range: Range<usize>,
    /// Bit `i` is set once record `i` has been validated.
    validated: Box<[AtomicU64]>,
}

impl LazyRecords {
    fn new(kind: SectionKind, range: Range<usize>, count: usize) -> Self {
        LazyRecords {
            kind,
            range,
            validated: (0..count.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Record `i`, stored at `slot`, as a `T`.
    fn get<'a, T>(&self, map: &'a [u8], path: &Path, slot: &ArchivedSlot, i: usize) -> Result<&'a T>
    where
        T: rkyv::Portable
            + Consistent
            + for<'v> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'v, rkyv::rancor::Error>,
            >,
    {
        let fault = |reason: String| {
            Error::archive(
                path,
                ArchiveFault::Structure {
                    section: self.kind.name(),
                    reason: format!("record {i}: {reason}"),
                },
            )
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
        let (word, bit) = (&self.validated[i / 64], 1u64 << (i % 64));
        if word.load(Ordering::Acquire) & bit == 0 {
            if xxhash_rust::xxh3::xxh3_64(bytes) != slot.checksum.to_native() {
                return Err(fault("checksum mismatch".into()));
            }
            let record =
                rkyv::access::<T, rkyv::rancor::Error>(bytes).map_err(|e| fault(e.to_string()))?;
            record.check().map_err(fault)?;
            word.fetch_or(bit, Ordering::Release);
        }
        // SAFETY: these exact bytes passed `rkyv::access` (bytecheck) in this process, either
        // just above or in an earlier call that set the bit, and the mapping never changes.
        Ok(unsafe { rkyv::access_unchecked::<T>(bytes) })
    }
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

    /// Maps and checks an archive file.
    pub fn open(path: &Path) -> Result<Self> {
        let fault = |f| Error::archive(path, f);
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
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
        // SAFETY: the mapping is read-only and podmap never modifies an archive in place:
        // a new archive is written to a temporary file and renamed over the old one, so the
        // mapped inode keeps its contents for as long as this mapping lives. Another program
        // truncating the file would make reads fault (SIGBUS); that is outside podmap's
        // contract, as it is for every mmap-based store.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let header = Header::decode(&map, len).map_err(fault)?;
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
        let matrix = section(SectionKind::Matrix)?;
        let meta = section(SectionKind::Meta)?;
        let range = |kind| section(kind).map(|s| s.offset as usize..s.end() as usize);
        let (items, episodes) = (range(SectionKind::Items)?, range(SectionKind::Episodes)?);
        let (transcripts, speakers) = (
            range(SectionKind::Transcripts)?,
            range(SectionKind::Speakers)?,
        );
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
        let matrix = matrix.offset as usize..matrix.end() as usize;
        let meta_range = meta.offset as usize..meta.end() as usize;
        let meta_bytes = &map[meta_range.clone()];
        if xxhash_rust::xxh3::xxh3_64(meta_bytes) != meta.checksum {
            return Err(fault(ArchiveFault::SectionChecksum { section: "meta" }));
        }
        let record = rkyv::access::<ArchivedPodcastRecord, rkyv::rancor::Error>(meta_bytes)
            .map_err(|e| {
                fault(ArchiveFault::Structure {
                    section: "meta",
                    reason: e.to_string(),
                })
            })?;
        let n = header.item_count as usize;
        let structure = |reason: String| {
            fault(ArchiveFault::Structure {
                section: "meta",
                reason,
            })
        };
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
            header,
            map,
            matrix,
            meta: meta_range,
            items: LazyRecords::new(SectionKind::Items, items, n),
            episodes: LazyRecords::new(SectionKind::Episodes, episodes, m),
            transcripts: LazyRecords::new(SectionKind::Transcripts, transcripts, m),
            speakers: LazyRecords::new(SectionKind::Speakers, speakers, 1),
        };
        // Cast once here so a misaligned matrix is refused at open, not at the first search.
        bytemuck::try_cast_slice::<u8, f32>(&index.map[index.matrix.clone()]).map_err(|e| {
            fault(ArchiveFault::Layout(format!(
                "matrix cannot be read as f32: {e:?}"
            )))
        })?;
        Ok(index)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The archived records, read in place.
    pub fn record(&self) -> &ArchivedPodcastRecord {
        // SAFETY: `open` validated exactly these bytes with `rkyv::access` (bytecheck) in this
        // process, and the mapping is read-only and never changes (see the SAFETY note in
        // `open`), so they are still a valid `ArchivedPodcastRecord`.
        unsafe { rkyv::access_unchecked::<ArchivedPodcastRecord>(&self.map[self.meta.clone()]) }
    }

    /// Item `index`'s archived record, checked on its first read (checksum, then bytecheck).
    /// Panics if `index >= len()`.
    pub fn item_record(&self, index: usize) -> Result<&ArchivedItemRecord> {
        let slot = &self.record().items[index];
        self.items.get(&self.map, &self.path, slot, index)
    }

    /// Every episode number known to the archive, ascending.
    pub fn episode_numbers(&self) -> impl ExactSizeIterator<Item = u32> + '_ {
        self.record().episode_numbers.iter().map(|n| n.to_native())
    }

    fn episode_position(&self, number: u32) -> Option<usize> {
        self.record()
            .episode_numbers
            .binary_search_by(|n| n.to_native().cmp(&number))
            .ok()
    }

    fn episode_at(&self, position: usize) -> Result<&ArchivedEpisodeRecord> {
        let slot = &self.record().episodes[position];
        self.episodes.get(&self.map, &self.path, slot, position)
    }

    /// Episode `number`: metadata (when `<n>.json` existed), file flags, topics.
    pub fn episode(&self, number: u32) -> Result<Option<&ArchivedEpisodeRecord>> {
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
    ) -> Result<(Vec<&ArchivedEpisodeRecord>, usize)> {
        let record = self.record();
        let positions: Box<dyn Iterator<Item = usize>> = match order {
            EpisodeOrder::Date => Box::new(record.by_date.iter().map(|p| p.to_native() as usize)),
            // by_date lists exactly the episodes with metadata; by number, newest first.
            EpisodeOrder::Number => {
                let mut with_meta: Vec<usize> = record
                    .by_date
                    .iter()
                    .map(|p| p.to_native() as usize)
                    .collect();
                with_meta.sort_unstable_by(|a, b| b.cmp(a));
                Box::new(with_meta.into_iter())
            }
        };
        let total = record.by_date.len();
        let page = positions
            .skip(offset)
            .take(limit)
            .map(|p| self.episode_at(p))
            .collect::<Result<Vec<_>>>()?;
        Ok((page, total))
    }

    /// The distinct topics of episode `number`'s RAG items, in item order.
    pub fn topics(&self, number: u32) -> Result<Vec<&str>> {
        Ok(self
            .episode(number)?
            .map(|e| e.topics.iter().map(|t| t.as_str()).collect())
            .unwrap_or_default())
    }

    /// Episode `number`'s transcript, when it has one. Validated on its first read only, so
    /// opening a podcast costs nothing per transcript.
    pub fn transcript(&self, number: u32) -> Result<Option<&ArchivedTranscriptRecord>> {
        let Some(position) = self.episode_position(number) else {
            return Ok(None);
        };
        let slot = &self.record().transcripts[position];
        if slot.len.to_native() == 0 {
            return Ok(None);
        }
        self.transcripts
            .get(&self.map, &self.path, slot, position)
            .map(Some)
    }

    /// The excerpt of a time window of episode `number`, by the original server's rules
    /// (see [`crate::transcript`]); the placeholder when nothing matches.
    pub fn excerpt(&self, number: u32, window: &crate::transcript::Window) -> Result<String> {
        Ok(crate::transcript::excerpt(self.transcript(number)?, window))
    }

    /// The speakers of `speakers/index.json`, in its order; `None` without an index.
    pub fn speakers(&self) -> Result<Option<&ArchivedSpeakersRecord>> {
        let slot = &self.record().speakers;
        if slot.len.to_native() == 0 {
            return Ok(None);
        }
        self.speakers.get(&self.map, &self.path, slot, 0).map(Some)
    }

    /// The speaker with this exact slug.
    pub fn speaker(&self, slug: &str) -> Result<Option<&ArchivedSpeakerRecord>> {
        let Some(speakers) = self.speakers()? else {
            return Ok(None);
        };
        let found = speakers.by_slug.binary_search_by(|&p| {
            speakers.rows[p.to_native() as usize]
                .slug
                .as_str()
                .cmp(slug)
        });
        Ok(found
            .ok()
            .map(|i| &speakers.rows[speakers.by_slug[i].to_native() as usize]))
    }

    pub fn podcast_id(&self) -> &str {
        self.record().podcast_id.as_str()
    }

    /// The whole matrix, `len() × dims()` floats, row-major.
    pub fn matrix(&self) -> &[f32] {
        bytemuck::cast_slice(&self.map[self.matrix.clone()])
    }

    /// The L2-normalised embedding of row `index` (all zeros when the item has none).
    pub fn row(&self, index: usize) -> &[f32] {
        let d = self.dims();
        &self.matrix()[index * d..(index + 1) * d]
    }

    /// Reads the whole archive and checks everything `open` does not: the matrix checksum and
    /// that each row is unit-length (or zero, for items without an embedding).
    pub fn verify(&self) -> Result<()> {
        let fault = |f| Error::archive(&self.path, f);
        for (kind, range) in [
            (SectionKind::Matrix, &self.matrix),
            (SectionKind::Items, &self.items.range),
            (SectionKind::Episodes, &self.episodes.range),
            (SectionKind::Transcripts, &self.transcripts.range),
            (SectionKind::Speakers, &self.speakers.range),
        ] {
            let section = self.header.section(kind).expect("checked at open");
            if xxhash_rust::xxh3::xxh3_64(&self.map[range.clone()]) != section.checksum {
                return Err(fault(ArchiveFault::SectionChecksum {
                    section: kind.name(),
                }));
            }
        }
        (0..self.len())
            .into_par_iter()
            .try_for_each(|i| self.item_record(i).map(drop))?;
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
            if self.map[at as usize..start.max(at) as usize]
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
        let norms = &self.record().norms;
        let bad = self
            .matrix()
            .par_chunks(d)
            .enumerate()
            .find_any(|(i, row)| {
                let len2: f64 = row.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
                if norms[*i].to_native() > 0.0 {
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

/// Where `podmap convert` puts a podcast's archive.
pub fn archive_path(index_dir: &Path, podcast: &str) -> PathBuf {
    index_dir.join(podcast).join(ARCHIVE_FILE)
}

/// Lists `<index_dir>/*/rag.podmap`, sorted by podcast id.
pub fn list_archives(index_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let entries = std::fs::read_dir(index_dir).map_err(|e| Error::io(index_dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(index_dir, e))?;
        let path = entry.path().join(ARCHIVE_FILE);
        if let (true, Some(id)) = (path.is_file(), entry.file_name().to_str()) {
            found.push((id.to_owned(), path));
        }
    }
    found.sort();
    Ok(found)
}

fn view(item: &ArchivedItemRecord) -> ItemView<'_> {
    let subject = item.subject.as_ref();
    ItemView {
        id: item.id.to_native(),
        episode_number: item.episode_number.to_native(),
        episode_title: item.episode_title.as_ref().map(|s| s.as_str()),
        topic: item.topic.as_ref().map(|s| s.as_str()),
        subject_coarse: subject.and_then(|s| s.coarse.as_ref()).map(|s| s.as_str()),
        subject_fine: subject.and_then(|s| s.fine.as_ref()).map(|s| s.as_str()),
        start_sec: item.start_sec.to_native(),
        end_sec: item.end_sec.to_native(),
        start_hms: item.start_hms.as_ref().map(|s| s.as_str()),
        end_hms: item.end_hms.as_ref().map(|s| s.as_str()),
        summary: item.summary.as_ref().map(|s| s.as_str()),
        text: item.text.as_ref().map(|s| s.as_str()),
    }
}

impl SearchIndex for MmapIndex {
    fn len(&self) -> usize {
        self.header.item_count as usize
    }

    fn dims(&self) -> usize {
        self.header.dims as usize
    }

    fn embedded_count(&self) -> usize {
        self.header.embedded_count as usize
    }

    fn model(&self) -> Option<&str> {
        Some(self.header.model.as_str()).filter(|m| !m.is_empty())
    }

    fn item(&self, index: usize) -> Result<ItemView<'_>> {
        self.item_record(index).map(view)
    }

    fn episode_of(&self, index: usize) -> u32 {
        self.record().episode_of[index].to_native()
    }

    fn search_vector(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Hit>> {
        let top = self.scan(query, filter, || TopK::new(k), TopK::push, TopK::merge)?;
        Ok(top.into_sorted())
    }

    fn score_all(&self, query: &[f32], filter: &Filter) -> Result<Vec<Hit>> {
        // Every row is kept, so a heap would only add work: collect, then sort once.
        let push = |hits: &mut Vec<Hit>, index, score| hits.push(Hit { index, score });
        let mut hits = self.scan(query, filter, Vec::new, push, |mut a, b| {
            a.extend(b);
            a
        })?;
        hits.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
        Ok(hits)
    }
}

impl MmapIndex {
    /// [`SearchIndex::score_all`] for several queries in one pass over the matrix: each row
    /// is read from memory once and scored against every query while it is in cache. The scan
    /// is bound by memory bandwidth, so concurrent searches that share a pass cost little more
    /// than one. Results are in query order, each as `score_all` gives it.
    pub fn score_all_batch(&self, queries: &[&[f32]], filter: &Filter) -> Result<Vec<Vec<Hit>>> {
        let d = self.dims();
        let units = queries
            .iter()
            .map(|q| {
                let norm = query_norm(q, d)?;
                Ok(q.iter().map(|&x| x / norm).collect::<Vec<f32>>())
            })
            .collect::<Result<Vec<_>>>()?;
        if self.embedded_count() == 0 {
            return Err(Error::NoEmbeddings);
        }
        let record = self.record();
        let (norms, episodes) = (&record.norms[..], &record.episode_of[..]);
        let per_task: Vec<Vec<Vec<Hit>>> = self
            .matrix()
            .par_chunks(d * ROWS_PER_TASK)
            .enumerate()
            .map(|(task, rows)| {
                let mut acc = vec![Vec::new(); units.len()];
                let first = task * ROWS_PER_TASK;
                for (offset, row) in rows.chunks_exact(d).enumerate() {
                    let i = first + offset;
                    if norms[i].to_native() <= 0.0 || !filter.accepts(episodes[i].to_native()) {
                        continue;
                    }
                    for (hits, unit) in acc.iter_mut().zip(&units) {
                        let score = kernel::dot(unit, row);
                        if score.is_finite() {
                            hits.push(Hit {
                                index: i as u32,
                                score,
                            });
                        }
                    }
                }
                acc
            })
            .collect();
        let mut results: Vec<Vec<Hit>> = vec![Vec::new(); units.len()];
        for task in per_task {
            for (all, hits) in results.iter_mut().zip(task) {
                all.extend(hits);
            }
        }
        for hits in &mut results {
            hits.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
        }
        Ok(results)
    }

    /// Scores every row with an embedding that passes `filter`, in parallel: each task folds
    /// its rows into an accumulator (`init`, `push`), and the tasks' accumulators are merged.
    fn scan<A: Send>(
        &self,
        query: &[f32],
        filter: &Filter,
        init: impl Fn() -> A + Sync + Send,
        push: impl Fn(&mut A, u32, f32) + Sync + Send,
        merge: impl Fn(A, A) -> A + Sync + Send,
    ) -> Result<A> {
        let d = self.dims();
        let norm = query_norm(query, d)?;
        if self.embedded_count() == 0 {
            return Err(Error::NoEmbeddings);
        }
        // Rows are unit-length, so with a unit query the dot product is the cosine.
        let unit: Vec<f32> = query.iter().map(|&x| x / norm).collect();
        let record = self.record();
        let (norms, episodes) = (&record.norms[..], &record.episode_of[..]);
        Ok(self
            .matrix()
            .par_chunks(d * ROWS_PER_TASK)
            .enumerate()
            .map(|(task, rows)| {
                let mut acc = init();
                let first = task * ROWS_PER_TASK;
                for (offset, row) in rows.chunks_exact(d).enumerate() {
                    let i = first + offset;
                    if norms[i].to_native() <= 0.0 || !filter.accepts(episodes[i].to_native()) {
                        continue;
                    }
                    let score = kernel::dot(&unit, row);
                    if score.is_finite() {
                        push(&mut acc, i as u32, score);
                    }
                }
                acc
            })
            .reduce(&init, &merge))
    }
}
