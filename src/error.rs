//! The crate's error type: every failure names the file it concerns and the reason.
//!
//! One enum for the whole library (as qdrant does with `OperationError`), so callers can match on
//! the kind of failure — a missing file is not a corrupt archive, and neither is a bad query —
//! while the CLI and the server only need `Display`.

use std::io;
use std::path::PathBuf;

/// Why an archive was refused when opened or verified.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveFault {
    #[error("not a podmap archive (bad magic bytes)")]
    BadMagic,
    #[error("archive format version {found} is newer than this podmap reads (up to {supported}); upgrade podmap")]
    NewerVersion { found: u32, supported: u32 },
    #[error("archive format version {found} is no longer supported (this podmap reads {supported}); convert the data again")]
    OlderVersion { found: u32, supported: u32 },
    #[error("written with rkyv format features {found:#x}, this build uses {expected:#x}; convert the data again")]
    RkyvFeatures { found: u32, expected: u32 },
    #[error("record schema hash {found:#018x} differs from this build's {expected:#018x}; convert the data again")]
    SchemaMismatch { found: u64, expected: u64 },
    #[error("file is {actual} bytes, header says {expected}: truncated or extended")]
    Length { actual: u64, expected: u64 },
    #[error("header checksum mismatch: the header is corrupt")]
    HeaderChecksum,
    #[error("checksum mismatch in the {section} section: the file is corrupt")]
    SectionChecksum { section: &'static str },
    #[error("invalid layout: {0}")]
    Layout(String),
    #[error("invalid {section} section: {reason}")]
    Structure {
        section: &'static str,
        reason: String,
    },
}

/// Everything that can go wrong in podmap's library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The cause is part of the message and deliberately not also a `source()`: error
    // chains (`{:#}`) would print it twice.
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },

    #[error("{path}:{line}:{column}: malformed JSON: {message}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("{path}: item {id}: embedding has {found} dimensions, expected {expected}")]
    EmbeddingDimension {
        path: PathBuf,
        id: u32,
        found: usize,
        expected: usize,
    },

    #[error("{path}: {reason}")]
    InvalidInput { path: PathBuf, reason: String },

    #[error("{path}: {fault}")]
    Archive { path: PathBuf, fault: ArchiveFault },

    #[error("query vector has {found} dimensions, the index has {expected}")]
    QueryDimension { expected: usize, found: usize },

    #[error("query vector has zero length or non-finite values")]
    InvalidQuery,

    #[error("this index has no embeddings; use lexical search")]
    NoEmbeddings,

    /// A scan pass shared by concurrent searches panicked; the panic went on in the search
    /// that ran the pass, and the others of that pass get this.
    #[error("the scan this search shared with others failed; search again")]
    ScanFailed,
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, cause: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause,
        }
    }

    pub(crate) fn archive(path: impl Into<PathBuf>, fault: ArchiveFault) -> Self {
        Error::Archive {
            path: path.into(),
            fault,
        }
    }

    pub(crate) fn json(path: impl Into<PathBuf>, err: &serde_json::Error) -> Self {
        Error::Json {
            path: path.into(),
            line: err.line(),
            column: err.column(),
            message: strip_position(&err.to_string()),
        }
    }
}

/// serde_json appends " at line L column C" to its messages; we print the position ourselves.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
