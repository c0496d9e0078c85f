//! Where an archive is written and how it replaces the old one: temporary files beside the
//! destination (named so that those of killed conversions can be found and removed), the
//! permissions of the finished file, and a durable rename.

use std::fs::{self, File};
use std::path::Path;

use crate::error::{Error, Result};

pub(super) const TMP_PREFIX: &str = ".rag.podmap.";
pub(super) const TMP_SUFFIX: &str = ".tmp";

/// Removes the temporary files of conversions that were killed before they finished (they
/// can be as large as the archive). A file whose lock can be taken has no live writer; one
/// being written by a concurrent conversion is locked and left alone.
pub(super) fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with(TMP_PREFIX) && name.ends_with(TMP_SUFFIX)) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if file.try_lock().is_ok() {
            // Best effort: a file that cannot be removed is tried again next time.
            let _ = fs::remove_file(&path);
        }
    }
}

/// Temporary files are created private (0600); an archive is data for the server to read,
/// so it gets the usual 0644.
#[cfg(unix)]
pub(super) fn make_readable(file: &File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
pub(super) fn make_readable(_: &File) -> std::io::Result<()> {
    Ok(())
}

/// Makes a rename durable: the directory entry itself must reach the disk.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}
