//! Writes one archive, atomically.
//!
//! Rows go to a temporary file in the destination folder as items arrive, so the embeddings are
//! never held in memory; only the (small) item archives are, until [`ArchiveWriter::finish`]
//! appends them and the meta record, writes the header, fsyncs and renames the file into place. Until that rename
//! the previous archive is untouched, and a failed or interrupted conversion leaves it as it was.
//! A temporary file is removed when the writer is dropped without finishing.

use std::fs::{self, File};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use tempfile::NamedTempFile;
use xxhash_rust::xxh3::Xxh3;

use super::format::{
    align_up, Header, Section, SectionKind, FORMAT_VERSION, HEADER_SIZE, ITEM_ALIGN, MATRIX_ALIGN,
    MAX_MODEL_LEN, META_ALIGN, RKYV_FEATURES,
};
use super::records::{
    schema_hash, ItemRecord, ItemSlot, ManifestRecord, PodcastRecord, SubjectRecord,
};
use crate::error::{Error, Result};
use crate::input::{RagHeader, RagTail, RawItem};

/// Size and modification time of an input file: recorded in the header so that an unchanged
/// input can be skipped without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InputFingerprint {
    pub len: u64,
    pub mtime_ns: u64,
}

impl InputFingerprint {
    pub fn of(path: &Path) -> Result<Self> {
        let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(InputFingerprint {
            len: meta.len(),
            mtime_ns,
        })
    }
}

/// What a finished archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenArchive {
    pub path: PathBuf,
    pub items: u64,
    pub embedded: u64,
    pub dims: u32,
    pub bytes: u64,
}

pub struct ArchiveWriter {
    final_path: PathBuf,
    /// Names the input in errors.
    input: PathBuf,
    fingerprint: InputFingerprint,
    out: BufWriter<NamedTempFile>,
    dims: Option<usize>,
    /// Leading rows without an embedding, written once the dimension is known.
    pending_zero_rows: u64,
    matrix_hash: Xxh3,
    row_bytes: Vec<u8>,
    model: Option<String>,
    record: PodcastRecord,
    /// The items section so far: one rkyv archive per item, 16-aligned.
    items: Vec<u8>,
    embedded: u64,
}

impl ArchiveWriter {
    /// Starts an archive that will replace `final_path` when finished.
    pub fn create(
        final_path: &Path,
        podcast_id: &str,
        input: &Path,
        fingerprint: InputFingerprint,
    ) -> Result<Self> {
        let dir = final_path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(".rag.podmap.")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, tmp);
        let placeholder = [0u8; HEADER_SIZE];
        out.write_all(&placeholder)
            .map_err(|e| Error::io(final_path, e))?;
        Ok(ArchiveWriter {
            final_path: final_path.to_path_buf(),
            input: input.to_path_buf(),
            fingerprint,
            out,
            dims: None,
            pending_zero_rows: 0,
            matrix_hash: Xxh3::new(),
            row_bytes: Vec::new(),
            model: None,
            record: PodcastRecord {
                podcast_id: podcast_id.to_owned(),
                manifest: ManifestRecord::default(),
                items: Vec::new(),
                episode_of: Vec::new(),
                norms: Vec::new(),
            },
            items: Vec::new(),
            embedded: 0,
        })
    }

    /// Takes the RAG file's top-level fields that precede `items`: the dimension, when given,
    /// lets rows be written from the first item on.
    pub fn begin(&mut self, header: &RagHeader) -> Result<()> {
        match header.embedding_dimensions {
            Some(d) if d > 0 => {
                let d = usize::try_from(d)
                    .ok()
                    .filter(|&d| d <= u32::MAX as usize / 4)
                    .ok_or_else(|| self.invalid(format!("embeddingDimensions {d} is too large")))?;
                self.set_dims(d)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Appends one item: its embedding to the matrix, the rest to the records.
    pub fn push(&mut self, item: RawItem) -> Result<()> {
        let norm = match &item.embedding {
            Some(v) => {
                let dims = match self.dims {
                    Some(d) => d,
                    None => {
                        self.set_dims(v.len())?;
                        v.len()
                    }
                };
                if v.len() != dims {
                    return Err(Error::EmbeddingDimension {
                        path: self.input.clone(),
                        id: item.id,
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
                    return Err(self.invalid(format!("item {}: embedding is not finite", item.id)));
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
        self.record.episode_of.push(item.episode_number);
        self.record.norms.push(norm);
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
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&record)
            .map_err(|e| self.invalid(format!("item {}: cannot archive: {e}", record.id)))?;
        let offset = align_up(self.items.len() as u64, ITEM_ALIGN);
        self.items.resize(offset as usize, 0);
        self.items.extend_from_slice(&bytes);
        self.record.items.push(ItemSlot {
            offset,
            len: bytes.len() as u64,
            checksum: xxhash_rust::xxh3::xxh3_64(&bytes),
        });
        Ok(())
    }

    /// Archives the records, writes the header, fsyncs and renames into place. `tail` holds
    /// the top-level fields, including those that follow `items`.
    pub fn finish(mut self, tail: &RagTail) -> Result<WrittenArchive> {
        let header = &tail.header;
        if let Some(model) = &header.embedding_model {
            if model.len() > MAX_MODEL_LEN {
                return Err(self.invalid(format!(
                    "embeddingModel is {} bytes long, at most {MAX_MODEL_LEN} are supported",
                    model.len()
                )));
            }
        }
        if let (Some(declared @ 1..), Some(actual)) = (header.embedding_dimensions, self.dims) {
            if declared != actual as u64 {
                return Err(self.invalid(format!(
                    "embeddingDimensions is {declared}, but the embeddings have {actual}"
                )));
            }
        }
        self.model = header.embedding_model.clone();
        self.record.manifest = ManifestRecord {
            schema_version: header.schema_version,
            created_at: header.created_at.clone(),
            updated_at: header.updated_at.clone(),
            embedding_model: header.embedding_model.clone(),
            embedding_dimensions: header.embedding_dimensions,
            embedding_info_json: header.embedding_info.as_ref().map(|v| v.to_string()),
            source_json: header.source.as_ref().map(|v| v.to_string()),
            stats_json: tail.stats.as_ref().map(|v| v.to_string()),
        };
        let dims = self.dims.unwrap_or(0);
        let rows = self.record.items.len() as u64;
        let matrix = Section {
            kind: SectionKind::Matrix,
            align: MATRIX_ALIGN as u32,
            offset: HEADER_SIZE as u64,
            len: rows * dims as u64 * 4,
            checksum: self.matrix_hash.digest(),
        };
        let items_offset = self.pad_to(matrix.end(), META_ALIGN)?;
        let items_bytes = std::mem::take(&mut self.items);
        self.write(&items_bytes)?;
        let items = Section {
            kind: SectionKind::Items,
            align: META_ALIGN as u32,
            offset: items_offset,
            len: items_bytes.len() as u64,
            checksum: xxhash_rust::xxh3::xxh3_64(&items_bytes),
        };
        drop(items_bytes);
        let meta_offset = self.pad_to(items.end(), META_ALIGN)?;
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&self.record)
            .map_err(|e| self.invalid(format!("cannot archive records: {e}")))?;
        self.write(&bytes)?;
        let meta = Section {
            kind: SectionKind::Meta,
            align: META_ALIGN as u32,
            offset: meta_offset,
            len: bytes.len() as u64,
            checksum: xxhash_rust::xxh3::xxh3_64(&bytes),
        };
        let header = Header {
            version: FORMAT_VERSION,
            rkyv_features: RKYV_FEATURES,
            schema_hash: schema_hash(),
            dims: dims as u32,
            item_count: rows,
            embedded_count: self.embedded,
            input_len: self.fingerprint.len,
            input_mtime_ns: self.fingerprint.mtime_ns,
            model: self.model.clone().unwrap_or_default(),
            sections: vec![matrix, items, meta],
        };
        let path = self.final_path.clone();
        let io = |e| Error::io(&path, e);
        let mut tmp = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        tmp.seek(SeekFrom::Start(0)).map_err(io)?;
        tmp.write_all(&header.encode()).map_err(io)?;
        make_readable(tmp.as_file()).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(&path).map_err(|e| io(e.error))?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        Ok(WrittenArchive {
            path,
            items: rows,
            embedded: self.embedded,
            dims: dims as u32,
            bytes: header.file_len(),
        })
    }

    /// Writes zeros from `at` (the current end) up to the next multiple of `align`.
    fn pad_to(&mut self, at: u64, align: u64) -> Result<u64> {
        let next = align_up(at, align);
        self.write(&vec![0u8; (next - at) as usize])?;
        Ok(next)
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
    fn write_row(&mut self, row: Option<(&Vec<f32>, f64)>) -> Result<()> {
        let dims = self.dims.expect("dimension known before rows are written");
        self.row_bytes.clear();
        match row {
            Some((v, norm)) if norm > 0.0 => {
                for &x in v {
                    let unit = (f64::from(x) / norm) as f32;
                    self.row_bytes.extend_from_slice(&unit.to_le_bytes());
                }
            }
            _ => self.row_bytes.resize(dims * 4, 0),
        }
        self.matrix_hash.update(&self.row_bytes);
        let row = std::mem::take(&mut self.row_bytes);
        let written = self.write(&row);
        self.row_bytes = row;
        written
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
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

/// Temporary files are created private (0600); an archive is data for the server to read,
/// so it gets the usual 0644.
#[cfg(unix)]
fn make_readable(file: &File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn make_readable(_: &File) -> std::io::Result<()> {
    Ok(())
}

/// Makes a rename durable: the directory entry itself must reach the disk.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}
