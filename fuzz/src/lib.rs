//! What the fuzz targets share: [`seal`] recomputes a mutated archive's checksums, [`reads`]
//! drives every read the library offers. `tests/properties.rs` in the main crate includes
//! both files by path, so the property tests and the fuzzer exercise the same reads.

pub mod reads;
pub mod seal;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A file for this process to write each input to: `MmapIndex::open` takes a path, and the
/// archive is never mapped while the file is rewritten (each input's index is dropped first).
pub fn scratch_file() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("a temporary directory");
        let file = dir.path().join("rag.podmap");
        (dir, file)
    })
    .1
}

/// Writes `bytes` to the scratch file and runs `read` on it, then on a copy of `bytes` with
/// its checksums recomputed ([`seal::reseal`]).
pub fn with_archive(bytes: &[u8], read: impl Fn(&Path) -> usize) {
    let path = scratch_file();
    std::fs::write(path, bytes).expect("write the scratch archive");
    read(path);
    let sealed = seal::reseal(bytes);
    if sealed.as_slice() != bytes {
        std::fs::write(path, sealed.as_slice()).expect("write the scratch archive");
        read(path);
    }
}
