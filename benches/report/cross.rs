//! The cross-podcast line: K podcasts of N / K items searched as one list
//! ([`quant::top_k_across`]: one pass over all of them, one merged top-k) against the one
//! podcast of N items, in every mode, timed in turns in one run. Operators who split an
//! archive into many podcasts should pay little for it: the target is at most 1.2× the time
//! of the one podcast.

use std::collections::HashSet;
use std::hint::black_box;
use std::path::Path;

use podmap::search::quant;
use podmap::{MmapIndex, SearchIndex, SearchMode};

use crate::datasets::Dataset;
use crate::measure::{self, Search};
use crate::results::{Cross, Recall, Settings};
use crate::support::{bench_data, convert, generate_podcasts};

/// The modes timed, as named in the engine labels (`one exact`, `across int8`, …).
pub const MODES: [&str; 3] = ["exact", "int8", "binary"];

/// Queries of the search across: as many as the one podcast has, taken in turns from the
/// podcasts' own (podmap-gen makes each podcast's near its own cluster centres, as real
/// queries lie near what was embedded).
const QUERIES: usize = 16;

/// K podcasts of `set.items / podcasts` items (podmap-gen, once, into
/// `target/bench-data/`) against `set`'s one podcast; each is searched with queries near its
/// own items.
pub fn measure(set: &Dataset, podcasts: usize, s: &Settings) -> Cross {
    let per = set.items / podcasts;
    eprintln!(
        "report: {podcasts} podcasts of {per} items against {} ({} × {})",
        set.name, set.items, set.dims
    );
    let root = bench_data().join(format!("gen-{podcasts}x{per}x{}", set.dims));
    let ids: Vec<String> = (1..=podcasts).map(|i| format!("part-{i}")).collect();
    let names: Vec<&str> = ids.iter().map(String::as_str).collect();
    generate_podcasts(&root, &names, per, set.dims, QUERIES.div_ceil(podcasts));
    let index_dir = root.join("index");
    for id in &ids {
        convert(&root, &index_dir, id);
    }
    let parts: Vec<MmapIndex> = ids
        .iter()
        .map(|id| MmapIndex::open_podcast(&index_dir, id).expect("a converted part"))
        .collect();
    let queries = part_queries(&root, &ids);
    let one = MmapIndex::open_podcast(&set.index_dir, &set.podcast).expect("the archive");
    let modes: Vec<(String, String, SearchMode)> = MODES
        .iter()
        .map(|name| {
            (
                label("one", name),
                label("across", name),
                name.parse().unwrap(),
            )
        })
        .collect();
    let mut searches: Vec<(&[Vec<f32>], Search)> = Vec::new();
    for (one_label, across_label, mode) in &modes {
        let one = measure::mode_search(one_label, &one, *mode, s.k);
        searches.push((&set.queries, one));
        let parts = &parts;
        let across: Search = (
            across_label,
            Box::new(move |q| {
                black_box(across(parts, q, s.k, *mode));
            }),
        );
        searches.push((&queries, across));
    }
    let latency = measure::interleaved_each(s.seconds, searches);
    let truth: Vec<HashSet<(u32, u32)>> = queries
        .iter()
        .map(|q| {
            across(&parts, q, s.k, SearchMode::Exact)
                .into_iter()
                .collect()
        })
        .collect();
    let recall = modes[1..]
        .iter()
        .map(|&(_, _, mode)| recall(&parts, &queries, &truth, mode, s.k))
        .collect();
    Cross {
        items: parts.iter().map(|p| p.len()).sum(),
        one_items: set.items,
        dims: set.dims,
        podcasts,
        latency,
        recall,
    }
}

/// [`QUERIES`] queries taken in turns from the podcasts' query files.
fn part_queries(root: &Path, ids: &[String]) -> Vec<Vec<f32>> {
    let each: Vec<Vec<Vec<f32>>> = ids
        .iter()
        .map(|id| {
            let text = std::fs::read_to_string(root.join(format!("queries/{id}.json")))
                .expect("a part's queries");
            serde_json::from_str(&text).expect("query vectors as JSON arrays")
        })
        .collect();
    (0..QUERIES)
        .filter_map(|i| each[i % ids.len()].get(i / ids.len()).cloned())
        .collect()
}

/// The top `k` of all `parts` as one list in `mode`: `(podcast, row)` pairs, best first.
fn across(parts: &[MmapIndex], query: &[f32], k: usize, mode: SearchMode) -> Vec<(u32, u32)> {
    let sources: Vec<(&MmapIndex, &[f32])> = parts.iter().map(|p| (p, query)).collect();
    quant::top_k_across(&sources, k, mode)
        .expect("a search across the parts")
        .into_iter()
        .map(|(source, hit)| (source, hit.index))
        .collect()
}

/// Recall@`k` of the search across in `mode` (as served: size rules on the whole list)
/// against the exact search across.
fn recall(
    parts: &[MmapIndex],
    queries: &[Vec<f32>],
    truth: &[HashSet<(u32, u32)>],
    mode: SearchMode,
    k: usize,
) -> Recall {
    let per_query = queries.iter().zip(truth).map(|(q, truth)| {
        let found = across(parts, q, k, mode);
        found.iter().filter(|hit| truth.contains(hit)).count() as f64 / truth.len().max(1) as f64
    });
    measure::recall_of(mode, per_query)
}

/// The engine label of `mode`'s search in `place` (`one` or `across`), as [`measure`] names it.
pub fn label(place: &str, mode: &str) -> String {
    format!("{place} {mode}")
}
