//! The on-disk archive: one file per podcast, `<INDEX_DIR>/<podcast>/rag.podmap`.
//!
//! ```text
//! offset 0      header (4096 bytes): magic, version, rkyv features, schema hash, model,
//!               dimensions, counts, input fingerprint, section table, header checksum
//! offset 4096   matrix: item_count × dims f32, little-endian, row-major, L2-normalised rows
//!               (zero rows for items without an embedding)
//! page-aligned  int8 codes: item_count × dims i8, then item_count f32 scales
//! page-aligned  binary codes: item_count × ⌈dims/8⌉ bytes of sign bits, then dims f32 (mean)
//! 64-aligned    items, transcripts, episodes, speakers: slotted rkyv records, each
//!               16-aligned, checksummed and validated on first read
//! 64-aligned    meta: rkyv archive of [`records::PodcastRecord`] (manifest, slots, columns),
//!               validated at open
//! ```
//!
//! The matrix is raw rather than inside rkyv so that it is one contiguous, 4096-aligned block
//! that SIMD kernels scan directly, that has no 32-bit offset limit, and that open never has to
//! touch. `docs/FORMAT.md` is the full contract.

mod chunked;
pub mod codes;
pub mod format;
mod placement;
pub mod records;
pub mod writer;

pub use format::{Header, SectionKind, FORMAT_VERSION, MAGIC};
pub use records::{ItemRecord, ManifestRecord, PodcastRecord, Slot, SubjectRecord};
pub use writer::{ArchiveWriter, Provenance, WrittenArchive};

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// File name of a podcast's archive inside `<INDEX_DIR>/<podcast>/`.
pub const ARCHIVE_FILE: &str = "rag.podmap";

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
