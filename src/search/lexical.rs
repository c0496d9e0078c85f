//! The original server's lexical scoring, for podcasts without embeddings.
//!
//! Query and item text (or summary, when an item has no text) are normalised: lowercased,
//! every non-alphanumeric character replaced by a space, whitespace collapsed. An item scores
//! one point for each query token that occurs in it as a substring, and two more when the whole
//! normalised query does. Items scoring zero are dropped; ties keep index order.
//!
//! One deliberate difference: a query that normalises to nothing returns no hits (the original
//! would give every item two points for containing the empty string).

use super::{Filter, Hit, SearchIndex};
use crate::error::Result;

/// Lowercase, non-alphanumerics to spaces, whitespace collapsed and trimmed.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(c);
        } else {
            pending_space = true;
        }
    }
    out
}

/// Score of one normalised item text against a normalised query and its tokens.
pub fn score(item: &str, query: &str, tokens: &[&str]) -> f32 {
    let mut score = tokens.iter().filter(|t| item.contains(*t)).count() as f32;
    if item.contains(query) {
        score += 2.0;
    }
    score
}

pub fn search<I: SearchIndex + ?Sized>(
    index: &I,
    query: &str,
    k: usize,
    filter: &Filter,
) -> Result<Vec<Hit>> {
    let query = normalize(query);
    if query.is_empty() || k == 0 {
        return Ok(Vec::new());
    }
    let tokens: Vec<&str> = query.split_whitespace().collect();
    let mut hits = Vec::new();
    for i in 0..index.len() {
        let item = index.item(i)?;
        if !filter.accepts(item.episode_number) {
            continue;
        }
        let text = item.text.or(item.summary).unwrap_or("");
        let s = score(&normalize(text), &query, &tokens);
        if s > 0.0 {
            hits.push(Hit {
                index: i as u32,
                score: s,
            });
        }
    }
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    hits.truncate(k);
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_the_original() {
        assert_eq!(
            normalize("  Über-Raumfahrt, die ESA!  2024 "),
            "über raumfahrt die esa 2024"
        );
        assert_eq!(normalize("—…"), "");
        assert_eq!(normalize("STRASSE"), "strasse");
    }

    #[test]
    fn scores_tokens_and_whole_query() {
        let item = normalize("Die Mars-Mission der ESA startet");
        let q = normalize("mars mission");
        let tokens: Vec<&str> = q.split_whitespace().collect();
        assert_eq!(score(&item, &q, &tokens), 4.0);
        let q = normalize("mission mars");
        let tokens: Vec<&str> = q.split_whitespace().collect();
        assert_eq!(score(&item, &q, &tokens), 2.0);
        // Substring, not word, matches: "ars" is inside "mars".
        assert_eq!(score(&item, "ars", &["ars"]), 3.0);
    }
}
