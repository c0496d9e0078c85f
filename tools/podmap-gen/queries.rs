//! Query vectors for `podmap search --vector` (`queries/<id>.json`) and the texts they embed
//! (`queries/<id>.txt`).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `queries/<id>.json` (one line of JSON: an array of the vectors) and,
/// given the texts they embed, `queries/<id>.txt` (one text per line).
pub fn write(root: &Path, id: &str, vectors: &[Vec<f32>], texts: Option<&[String]>) -> Result<()> {
    let dir = root.join("queries");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{id}.json"));
    fs::write(&path, serde_json::to_string(vectors)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    if let Some(texts) = texts {
        let path = dir.join(format!("{id}.txt"));
        let lines: String = texts.iter().map(|t| format!("{t}\n")).collect();
        fs::write(&path, lines).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
