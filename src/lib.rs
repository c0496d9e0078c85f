//! podmap: a memory-mapped binary index engine for podcast archives.
//!
//! Data flows one way, and the modules follow it (`docs/ARCHITECTURE.md` shows the layers and
//! what each may import):
//!
//! 1. [`input`] — the original JSON layout (`db/<podcast>/rag-embeddings.json`,
//!    `podcasts/<podcast>/…`), streamed, as plain values.
//! 2. [`convert`] — turns those values into archive records, one podcast per task, atomically.
//! 3. [`archive`] — the on-disk format: header, raw f32 matrix, rkyv records; and its writer.
//! 4. [`index`] — an archive memory-mapped and checked, read in place through typed views.
//! 5. [`search`] — exact top-k cosine over the mapped matrix, shared scan passes, lexical
//!    fallback, hits grouped into ranked episodes.
//! 6. [`server`] (feature `server`) — the original HTTP API over the mapped indexes.
//!
//! Beside the flow: [`transcript`] holds the original's time and excerpt rules that both data
//! paths share; [`json_index`] keeps the original in-memory JSON path as a baseline behind the
//! same [`search::SearchIndex`] trait, so the two are compared with the same code; [`mem`]
//! reads the process's memory figures for benchmarks; [`error`] is the one error type.
//!
//! With `default-features = false` the library has no async runtime and no HTTP stack.
//!
//! ```
//! use podmap::convert::convert_podcast;
//! use podmap::input::PodcastSource;
//! use podmap::{Filter, MmapIndex, SearchIndex};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let rag_file = dir.path().join("db/demo/rag-embeddings.json");
//! std::fs::create_dir_all(rag_file.parent().unwrap())?;
//! std::fs::write(&rag_file, r#"{"embeddingModel": "m", "embeddingDimensions": 2, "items": [
//!     {"id": 0, "episodeNumber": 1, "topic": "Mond", "startSec": 0, "endSec": 60, "embedding": [1, 0]},
//!     {"id": 1, "episodeNumber": 2, "topic": "Mars", "startSec": 0, "endSec": 90, "embedding": [0, 3]}
//! ]}"#)?;
//!
//! // JSON → archive (streamed, written atomically) …
//! let source = PodcastSource::at(dir.path(), "demo");
//! let archive = dir.path().join("index/demo/rag.podmap");
//! convert_podcast(&source, &archive)?;
//!
//! // … → mapped index → search.
//! let index = MmapIndex::open(&archive)?;
//! let hits = index.search_vector(&[0.1, 0.9], 1, &Filter::all())?;
//! assert_eq!(index.item(hits[0].index as usize)?.topic, Some("Mars"));
//! # Ok(())
//! # }
//! ```

// Archives are read in place: the matrix and the rkyv records are little-endian on disk.
#[cfg(target_endian = "big")]
compile_error!("podmap reads its archives in place and supports little-endian targets only");

// The data flow, in order.
pub mod archive;
pub mod convert;
pub mod index;
pub mod input;
pub mod search;
#[cfg(feature = "server")]
pub mod server;

// Beside it.
pub mod error;
pub mod json_index;
pub mod mem;
pub mod transcript;

pub use error::{ArchiveFault, Error, Result};
pub use index::MmapIndex;
pub use json_index::JsonIndex;
pub use search::{Filter, Hit, ItemView, SearchIndex, SearchMode};
