//! Query vectors for `podmap search --vector` (`queries/<id>.json`) and the texts they embed
//! (`queries/<id>.txt`).

use std::path::Path;

use anyhow::Result;

use crate::files;

/// Writes `queries/<id>.json` (one line of JSON: an array of the vectors) and,
/// given the texts they embed, `queries/<id>.txt` (one text per line).
pub fn write(root: &Path, id: &str, vectors: &[Vec<f32>], texts: Option<&[String]>) -> Result<()> {
    let dir = root.join("queries");
    files::create_dir(&dir)?;
    files::write(
        &dir.join(format!("{id}.json")),
        serde_json::to_string(vectors)? + "\n",
    )?;
    if let Some(texts) = texts {
        let lines: String = texts.iter().map(|t| format!("{t}\n")).collect();
        files::write(&dir.join(format!("{id}.txt")), lines)?;
    }
    Ok(())
}
