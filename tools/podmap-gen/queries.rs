//! Query vectors for `podmap search --vector` (`queries/<id>.json`) and the texts they embed
//! (`queries/<id>.txt`).

use std::path::Path;

use anyhow::Result;

use crate::clusters::RandomEmbedder;
use crate::files;
use crate::items::Item;

/// `n` random query vectors (`--queries`) for a podcast with random embeddings and `items`,
/// which must not be empty.
pub fn random(embedder: &RandomEmbedder, items: &[Item], n: u32) -> Vec<Vec<f32>> {
    (0..n)
        .map(|q| {
            // Near the cluster of an item spread evenly through the podcast, so every query
            // has neighbours to find; ids past every item id, so no query equals an item's
            // vector.
            let anchor = &items[q as usize * items.len() / n as usize];
            embedder.embed(u64::MAX - u64::from(q), anchor.cluster)
        })
        .collect()
}

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
