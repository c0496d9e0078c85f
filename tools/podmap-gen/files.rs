//! Writing the output files: pretty JSON exactly as the original tools write it, with the path
//! in every error.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// Creates `dir` and its parents.
pub fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Writes `contents` to `path`.
pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Writes `value` as JSON indented by two spaces, like `JSON.stringify(value, null, 2)`, and a
/// newline after it if `trailing_newline`; returns the size of the file.
pub fn write_pretty<T: Serialize>(path: &Path, value: &T, trailing_newline: bool) -> Result<u64> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut written = || -> Result<()> {
        let mut ser = serde_json::Serializer::with_formatter(
            &mut w,
            serde_json::ser::PrettyFormatter::with_indent(b"  "),
        );
        value.serialize(&mut ser)?;
        if trailing_newline {
            w.write_all(b"\n")?;
        }
        w.flush()?;
        Ok(())
    };
    written().with_context(|| format!("writing {}", path.display()))?;
    Ok(fs::metadata(path)?.len())
}
