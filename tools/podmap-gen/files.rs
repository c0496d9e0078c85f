//! Writing the output files: pretty JSON exactly as the original tools write it, with the path
//! in every error.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// Writes `value` as JSON indented by two spaces, like `JSON.stringify(value, null, 2)`, and a
/// newline after it if `trailing_newline`; returns the size of the file.
pub fn write_pretty<T: Serialize>(path: &Path, value: &T, trailing_newline: bool) -> Result<u64> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut ser = serde_json::Serializer::with_formatter(
        &mut w,
        serde_json::ser::PrettyFormatter::with_indent(b"  "),
    );
    value
        .serialize(&mut ser)
        .with_context(|| format!("writing {}", path.display()))?;
    if trailing_newline {
        w.write_all(b"\n")?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(fs::metadata(path)?.len())
}
