//! Writes one archive, atomically.
//!
//! Sections are written in file order, each streamed as its input arrives: matrix rows as RAG
//! items are parsed, then the items (spilled to an unnamed temporary file until the matrix is
//! complete, so memory holds one item at a time), then one transcript at a time, serialized
//! straight into the file, then the episodes, the speakers and the meta record. Memory is
//! bounded by a small multiple of the largest single item or transcript, not by the podcast. Everything goes to a temporary file in the destination
//! folder; [`ArchiveWriter::finish`] writes the header, fsyncs and renames the file into place.
//! Until that rename the previous archive is untouched, so a failed or interrupted conversion
//! leaves it as it was. A temporary file is removed when the writer is dropped unfinished.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rkyv::rancor;
use tempfile::NamedTempFile;
use xxhash_rust::xxh3::Xxh3;

use super::chunked::ChunkedWriter;
use super::codes::{encode_binary, encode_int8, read_rows, CodesLayout, MeanAccumulator};
use super::format::{
    align_up, Header, Section, SectionKind, CODES_ALIGN, FORMAT_VERSION, HEADER_SIZE, ITEM_ALIGN,
    MATRIX_ALIGN, MAX_DIMS, MAX_MODEL_LEN, META_ALIGN, RKYV_FEATURES,
};
use super::placement::{make_readable, remove_stale_temporaries, sync_dir, TMP_PREFIX, TMP_SUFFIX};
use super::records::{
    schema_hash, EpisodeRecord, ItemRecord, ManifestRecord, PodcastRecord, Slot, SpeakersRecord,
    TranscriptRecord,
};
use crate::error::{Error, Result};

/// What a finished archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenArchive {
    pub path: PathBuf,
    pub items: u64,
    pub embedded: u64,
    pub dims: u32,
    pub episodes: u64,
    pub transcripts: u64,
    pub bytes: u64,
}

/// Writes one record's bytes into the archive while hashing and counting them for its slot.
pub(crate) struct SlotWriter<'w> {
    archive: &'w mut ArchiveWriter,
    hash: Xxh3,
    len: u64,
    /// The archive's own error, kept so it is reported as itself, not as rkyv's.
    failure: Option<Error>,
}

impl Write for SlotWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Err(e) = self.archive.write(bytes) {
            let message = e.to_string();
            self.failure = Some(e);
            return Err(std::io::Error::other(message));
        }
        self.hash.update(bytes);
        self.len += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the archive was made from: the inputs' total size and a fingerprint of their names,
/// sizes and mtimes, recorded in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Provenance {
    pub len: u64,
    pub fingerprint: u64,
}

/// A section being written: where it started and the running checksum of its bytes.
struct OpenSection {
    kind: SectionKind,
    offset: u64,
    hash: Xxh3,
}

pub struct ArchiveWriter {
    final_path: PathBuf,
    /// Names the input in errors.
    input: PathBuf,
    /// In whole, aligned 2 MiB chunks, so the page cache holds the new archive in huge
    /// folios ([`super::chunked`]).
    out: ChunkedWriter<NamedTempFile>,
    /// Bytes written so far: the file offset of the next byte.
    pos: u64,
    sections: Vec<Section>,
    open: Option<OpenSection>,
    dims: Option<usize>,
    /// `embeddingDimensions` as the file declares it; rows are sized by the first real
    /// embedding, which must match it.
    declared_dims: Option<usize>,
    /// Leading rows without an embedding, written once the first embedding fixes the
    /// dimension (never, if none comes: items without vectors then need no rows at all).
    pending_zero_rows: u64,
    row_bytes: Vec<u8>,
    model: Option<String>,
    record: PodcastRecord,
    /// The items section, spilled to an unnamed temporary file while the matrix is streamed.
    items: BufWriter<File>,
    items_len: u64,
    embedded: u64,
    transcripts: BTreeMap<u32, Slot>,
}

impl ArchiveWriter {
    /// Starts an archive that will replace `final_path` when finished. `input` names the
    /// podcast's main input in error messages.
    pub fn create(final_path: &Path, podcast_id: &str, input: &Path) -> Result<Self> {
        let dir = final_path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        remove_stale_temporaries(dir);
        let tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .suffix(TMP_SUFFIX)
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        // Held until the file is renamed into place or removed: it tells a later conversion
        // that this temporary file is in use, not left behind by a killed one.
        tmp.as_file()
            .try_lock()
            .map_err(|e| Error::io(tmp.path(), std::io::Error::other(e.to_string())))?;
        let items = tempfile::tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
        let mut writer = ArchiveWriter {
            final_path: final_path.to_path_buf(),
            input: input.to_path_buf(),
            out: ChunkedWriter::new(tmp),
            pos: 0,
            sections: Vec::new(),
            open: None,
            dims: None,
            declared_dims: None,
            pending_zero_rows: 0,
            row_bytes: Vec::new(),
            model: None,
            record: PodcastRecord {
                podcast_id: podcast_id.to_owned(),
                manifest: ManifestRecord::default(),
                items: Vec::new(),
                episode_of: Vec::new(),
                norms: Vec::new(),
                episode_numbers: Vec::new(),
                episodes: Vec::new(),
                by_date: Vec::new(),
                transcripts: Vec::new(),
                speakers: Slot::default(),
            },
            items: BufWriter::with_capacity(1 << 20, items),
            items_len: 0,
            embedded: 0,
            transcripts: BTreeMap::new(),
        };
        writer.write(&[0u8; HEADER_SIZE])?;
        writer.open_section(SectionKind::Matrix, MATRIX_ALIGN)?;
        Ok(writer)
    }

    /// Takes the dimension the RAG file declares before its items (`embeddingDimensions`),
    /// so rows can be written from the first item on. 0 or `None`: not declared.
    pub fn begin(&mut self, declared_dims: Option<u64>) -> Result<()> {
        match declared_dims {
            Some(d) if d > 0 => {
                let d = usize::try_from(d)
                    .ok()
                    .filter(|&d| d <= MAX_DIMS)
                    .ok_or_else(|| {
                        self.invalid(format!(
                            "embeddingDimensions {d} is larger than the {MAX_DIMS} podmap supports"
                        ))
                    })?;
                self.declared_dims = Some(d);
            }
            _ => {}
        }
        Ok(())
    }

    /// Appends one RAG item: its embedding (if any) to the matrix, its record to the items.
    pub fn push(&mut self, record: ItemRecord, embedding: Option<&[f32]>) -> Result<()> {
        let norm = match embedding {
            Some([]) => {
                return Err(self.invalid(format!(
                    "item {}: embedding is empty (an item without one has \"embedding\": null)",
                    record.id
                )))
            }
            Some(v) => {
                let dims = match self.dims {
                    Some(d) => d,
                    None => {
                        let expected = self.declared_dims.unwrap_or(v.len());
                        if v.len() != expected {
                            return Err(Error::EmbeddingDimension {
                                path: self.input.clone(),
                                id: record.id,
                                found: v.len(),
                                expected,
                            });
                        }
                        if v.len() > MAX_DIMS {
                            return Err(self.invalid(format!(
                                "item {}: embedding has {} dimensions, more than the {MAX_DIMS} podmap supports",
                                record.id,
                                v.len()
                            )));
                        }
                        self.set_dims(v.len())?;
                        v.len()
                    }
                };
                if v.len() != dims {
                    return Err(Error::EmbeddingDimension {
                        path: self.input.clone(),
                        id: record.id,
                        found: v.len(),
                        expected: dims,
                    });
                }
                let norm = v
                    .iter()
                    .map(|&x| f64::from(x) * f64::from(x))
                    .sum::<f64>()
                    .sqrt();
                if !norm.is_finite() {
                    return Err(
                        self.invalid(format!("item {}: embedding is not finite", record.id))
                    );
                }
                self.write_row(Some((v, norm)))?;
                if norm > 0.0 {
                    self.embedded += 1;
                }
                norm as f32
            }
            None => {
                if self.dims.is_some() {
                    self.write_row(None)?;
                } else {
                    self.pending_zero_rows += 1;
                }
                0.0
            }
        };
        self.record.episode_of.push(record.episode_number);
        self.record.norms.push(norm);
        let bytes = rkyv::to_bytes::<rancor::Error>(&record)
            .map_err(|e| self.invalid(format!("item {}: cannot archive: {e}", record.id)))?;
        let offset = align_up(self.items_len, ITEM_ALIGN);
        let padding = [0u8; ITEM_ALIGN as usize];
        self.items
            .write_all(&padding[..(offset - self.items_len) as usize])
            .and_then(|()| self.items.write_all(&bytes))
            .map_err(|e| Error::io(&self.final_path, e))?;
        self.items_len = offset + bytes.len() as u64;
        self.record.items.push(Slot {
            offset,
            len: bytes.len() as u64,
            checksum: xxhash_rust::xxh3::xxh3_64(&bytes),
        });
        Ok(())
    }

    /// Ends the RAG part: closes the matrix, writes the items, keeps the RAG file's
    /// top-level fields. `None` for a podcast without a RAG file.
    pub fn end_rag(&mut self, manifest: Option<ManifestRecord>) -> Result<()> {
        if let Some(manifest) = manifest {
            self.take_manifest(manifest)?;
        }
        self.close_section()?;
        self.write_codes()?;
        self.open_section(SectionKind::Items, META_ALIGN)?;
        self.copy_spilled_items()?;
        self.close_section()?;
        self.open_section(SectionKind::Transcripts, META_ALIGN)
    }

    /// Writes the int8 and binary code sections (see [`super::codes`]) from the matrix just
    /// closed, read back from the temporary file a row at a time: the binary codes need the
    /// mean of all rows first, so they cannot be written while the rows stream in. Codes go
    /// straight to the file; memory holds a row, the scales and the mean.
    fn write_codes(&mut self) -> Result<()> {
        let matrix = *self.sections.last().expect("the matrix was just closed");
        debug_assert_eq!(matrix.kind, SectionKind::Matrix);
        let dims = self.dims.unwrap_or(0);
        let embedded: Vec<bool> = self.record.norms.iter().map(|&n| n > 0.0).collect();
        let path = self.final_path.clone();
        let io = |e| Error::io(&path, e);
        self.out.flush().map_err(io)?;
        // A second descriptor of the temporary file, with its own position: reading through
        // it leaves the writer's position alone.
        let mut back = File::open(self.out.get_ref().path()).map_err(io)?;

        self.open_section(SectionKind::Int8Codes, CODES_ALIGN)?;
        let mut scales = Vec::with_capacity(embedded.len());
        let mut mean = MeanAccumulator::new(dims);
        let mut codes = vec![0i8; dims];
        read_rows(&mut back, matrix.offset, dims, &embedded, |row, has| {
            scales.push(encode_int8(row, &mut codes));
            if has {
                mean.add(row);
            }
            self.write(bytemuck::cast_slice(&codes))
        })
        .map_err(|e| e.into_error(&path))?;
        self.write_tail(&scales)?;

        self.open_section(SectionKind::BinaryCodes, CODES_ALIGN)?;
        let mean = mean.mean();
        let mut bits = vec![0u8; CodesLayout::binary(0, dims).stride];
        read_rows(&mut back, matrix.offset, dims, &embedded, |row, has| {
            if has {
                encode_binary(row, &mean, &mut bits);
            } else {
                bits.fill(0);
            }
            self.write(&bits)
        })
        .map_err(|e| e.into_error(&path))?;
        self.write_tail(&mean)
    }

    /// Ends a code section: zeros up to a multiple of 64 from its start, then `tail`.
    fn write_tail(&mut self, tail: &[f32]) -> Result<()> {
        let start = self.open.as_ref().expect("a section is open").offset;
        let len = self.pos - start;
        self.write(&vec![0u8; (align_up(len, 64) - len) as usize])?;
        let tail: Vec<u8> = tail.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.write(&tail)?;
        self.close_section()
    }

    /// Appends the spilled item records to the open items section.
    fn copy_spilled_items(&mut self) -> Result<()> {
        let path = self.final_path.clone();
        let io = |e| Error::io(&path, e);
        self.items.flush().map_err(io)?;
        let spill = self.items.get_mut();
        spill.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut reader = std::io::BufReader::new(spill.try_clone().map_err(io)?);
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut reader, &mut chunk).map_err(io)?;
            if n == 0 {
                break;
            }
            self.write(&chunk[..n])?;
        }
        // The spill is no longer needed; release its disk space early.
        self.items.get_mut().set_len(0).map_err(io)?;
        Ok(())
    }

    /// Appends episode `number`'s transcript (after [`ArchiveWriter::end_rag`]).
    pub fn push_transcript(&mut self, number: u32, transcript: &TranscriptRecord) -> Result<()> {
        let slot = self.write_blob(transcript, "transcript")?;
        self.transcripts.insert(number, slot);
        Ok(())
    }

    /// Writes the episodes, the speakers and the meta record, then the header (with the
    /// inputs' total size and fingerprint, to recognise unchanged inputs later); fsyncs and
    /// renames into place. `episodes` must be sorted by number, without duplicates.
    pub fn finish(
        mut self,
        episodes: Vec<EpisodeRecord>,
        speakers: Option<SpeakersRecord>,
        input: Provenance,
    ) -> Result<WrittenArchive> {
        debug_assert!(episodes.windows(2).all(|w| w[0].number < w[1].number));
        self.close_section()?;
        self.open_section(SectionKind::Episodes, META_ALIGN)?;
        for episode in &episodes {
            let slot = self.write_blob(episode, "episode")?;
            self.record.episodes.push(slot);
            self.record.episode_numbers.push(episode.number);
            let transcript = self.transcripts.get(&episode.number).copied();
            self.record.transcripts.push(transcript.unwrap_or_default());
        }
        self.record.by_date = by_date(&episodes);
        self.close_section()?;
        self.open_section(SectionKind::Speakers, META_ALIGN)?;
        if let Some(speakers) = &speakers {
            self.record.speakers = self.write_blob(speakers, "speakers")?;
        }
        self.close_section()?;

        self.open_section(SectionKind::Meta, META_ALIGN)?;
        let meta = rkyv::to_bytes::<rancor::Error>(&self.record)
            .map_err(|e| self.invalid(format!("cannot archive the podcast record: {e}")))?;
        self.write(&meta)?;
        self.close_section()?;

        let dims = self.dims.unwrap_or(0);
        let header = Header {
            version: FORMAT_VERSION,
            rkyv_features: RKYV_FEATURES,
            schema_hash: schema_hash(),
            dims: dims as u32,
            item_count: self.record.items.len() as u64,
            embedded_count: self.embedded,
            input_len: input.len,
            input_fingerprint: input.fingerprint,
            model: self.model.clone().unwrap_or_default(),
            sections: self.sections.clone(),
        };
        let path = self.final_path.clone();
        let io = |e| Error::io(&path, e);
        let mut tmp = self.out.into_inner().map_err(io)?;
        tmp.seek(SeekFrom::Start(0)).map_err(io)?;
        tmp.write_all(&header.encode()).map_err(io)?;
        make_readable(tmp.as_file()).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(&path).map_err(|e| io(e.error))?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        Ok(WrittenArchive {
            path,
            items: header.item_count,
            embedded: self.embedded,
            dims: dims as u32,
            episodes: episodes.len() as u64,
            transcripts: self.transcripts.len() as u64,
            bytes: header.file_len(),
        })
    }

    fn take_manifest(&mut self, manifest: ManifestRecord) -> Result<()> {
        if let Some(model) = &manifest.embedding_model {
            if model.len() > MAX_MODEL_LEN {
                return Err(self.invalid(format!(
                    "embeddingModel is {} bytes long, at most {MAX_MODEL_LEN} are supported",
                    model.len()
                )));
            }
        }
        if let (Some(declared @ 1..), Some(actual)) = (manifest.embedding_dimensions, self.dims) {
            if declared != actual as u64 {
                return Err(self.invalid(format!(
                    "embeddingDimensions is {declared}, but the embeddings have {actual}"
                )));
            }
        }
        self.model = manifest.embedding_model.clone();
        self.record.manifest = manifest;
        Ok(())
    }

    /// Archives `value` with rkyv into the open section, 16-aligned from its start. The bytes
    /// go straight to the file (no buffer the size of the record), with the slot's checksum
    /// computed on the way.
    fn write_blob<T>(&mut self, value: &T, what: &str) -> Result<Slot>
    where
        T: for<'a, 'b, 'c> rkyv::Serialize<
            rkyv::api::high::HighSerializer<
                rkyv::ser::writer::IoWriter<&'b mut SlotWriter<'c>>,
                rkyv::ser::allocator::ArenaHandle<'a>,
                rancor::Error,
            >,
        >,
    {
        let section_start = self.open.as_ref().expect("a section is open").offset;
        let offset = align_up(self.pos - section_start, ITEM_ALIGN);
        self.write(&vec![0u8; (offset - (self.pos - section_start)) as usize])?;
        let mut slot = SlotWriter {
            archive: self,
            hash: Xxh3::new(),
            len: 0,
            failure: None,
        };
        let written = rkyv::api::high::to_bytes_in::<_, rancor::Error>(
            value,
            rkyv::ser::writer::IoWriter::new(&mut slot),
        )
        .map(drop);
        let (hash, len, failure) = (slot.hash.digest(), slot.len, slot.failure.take());
        if let Some(e) = failure {
            return Err(e);
        }
        written.map_err(|e| self.invalid(format!("cannot archive {what}: {e}")))?;
        Ok(Slot {
            offset,
            len,
            checksum: hash,
        })
    }

    /// Pads to `align` (padding belongs to no section) and starts a section there.
    fn open_section(&mut self, kind: SectionKind, align: u64) -> Result<()> {
        debug_assert!(self.open.is_none());
        let next = align_up(self.pos, align);
        let padding = vec![0u8; (next - self.pos) as usize];
        self.out
            .write_all(&padding)
            .map_err(|e| Error::io(&self.final_path, e))?;
        self.pos = next;
        self.open = Some(OpenSection {
            kind,
            offset: next,
            hash: Xxh3::new(),
        });
        Ok(())
    }

    fn close_section(&mut self) -> Result<()> {
        if self
            .open
            .as_ref()
            .is_some_and(|s| s.kind == SectionKind::Matrix)
        {
            // Items that came before the first embedding, when none ever came, have no rows.
            self.pending_zero_rows = 0;
        }
        let open = self.open.take().expect("a section is open");
        let align = match open.kind {
            SectionKind::Matrix => MATRIX_ALIGN,
            SectionKind::Int8Codes | SectionKind::BinaryCodes => CODES_ALIGN,
            _ => META_ALIGN,
        };
        self.sections.push(Section {
            kind: open.kind,
            align: align as u32,
            offset: open.offset,
            len: self.pos - open.offset,
            checksum: open.hash.digest(),
        });
        Ok(())
    }

    fn set_dims(&mut self, dims: usize) -> Result<()> {
        if dims == 0 {
            return Ok(());
        }
        self.dims = Some(dims);
        for _ in 0..std::mem::take(&mut self.pending_zero_rows) {
            self.write_row(None)?;
        }
        Ok(())
    }

    /// Writes a row: the L2-normalised embedding, or zeros.
    fn write_row(&mut self, row: Option<(&[f32], f64)>) -> Result<()> {
        let dims = self.dims.expect("dimension known before rows are written");
        let mut bytes = std::mem::take(&mut self.row_bytes);
        bytes.clear();
        match row {
            Some((v, norm)) if norm > 0.0 => {
                for &x in v {
                    let unit = (f64::from(x) / norm) as f32;
                    bytes.extend_from_slice(&unit.to_le_bytes());
                }
            }
            _ => bytes.resize(dims * 4, 0),
        }
        let written = self.write(&bytes);
        self.row_bytes = bytes;
        written
    }

    /// Writes into the open section (or the header placeholder), keeping its checksum.
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(open) = &mut self.open {
            open.hash.update(bytes);
        }
        self.pos += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(&self.final_path, e))
    }

    fn invalid(&self, reason: String) -> Error {
        Error::InvalidInput {
            path: self.input.clone(),
            reason,
        }
    }
}

/// Positions of the episodes with metadata: newest date first, then higher number first;
/// those without a date last.
fn by_date(episodes: &[EpisodeRecord]) -> Vec<u32> {
    let date = |e: &EpisodeRecord| e.meta.as_ref().and_then(|m| m.date.clone());
    let mut order: Vec<u32> = (0..episodes.len() as u32)
        .filter(|&i| episodes[i as usize].meta.is_some())
        .collect();
    order.sort_by(|&a, &b| {
        let (ea, eb) = (&episodes[a as usize], &episodes[b as usize]);
        date(eb).cmp(&date(ea)).then(eb.number.cmp(&ea.number))
    });
    order
}
