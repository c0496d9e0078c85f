//! Exact against quantized search (int8 and sign-bit codes, rescored), on the same archive in
//! one run: top-10 latency per mode, its ratio to exact, and recall@10 against exact.

use std::collections::HashSet;

use criterion::Criterion;
use podmap::{Filter, MmapIndex, SearchIndex, SearchMode};

use crate::support::{bench, mean};
use crate::Dataset;

fn modes() -> [SearchMode; 3] {
    ["exact", "int8", "binary"].map(|m| m.parse().expect("a mode name"))
}

fn id(mode: SearchMode, set: &Dataset) -> String {
    format!("query_mode/{mode}/{}", set.name)
}

/// Top-10 latency of every mode, queries rotating.
pub fn query_modes(c: &mut Criterion, sets: &[Dataset]) {
    let mut group = c.benchmark_group("query_mode");
    for set in sets {
        let index = MmapIndex::open_podcast(&set.index_dir, &set.podcast).unwrap();
        for mode in modes() {
            let mut i = 0;
            bench(&mut group, &id(mode, set), || {
                i += 1;
                let q = &set.queries[i % set.queries.len()];
                index.search_vector_in(q, 10, &Filter::all(), mode).unwrap()
            });
        }
    }
    group.finish();
}

/// Mean recall@10 of `mode` against the exact top-10, over the set's queries.
fn recall(index: &MmapIndex, set: &Dataset, mode: SearchMode) -> f64 {
    let total: f64 = set
        .queries
        .iter()
        .map(|q| {
            let exact: HashSet<u32> = index
                .search_vector(q, 10, &Filter::all())
                .unwrap()
                .iter()
                .map(|h| h.index)
                .collect();
            let hits = index.search_vector_in(q, 10, &Filter::all(), mode).unwrap();
            hits.iter().filter(|h| exact.contains(&h.index)).count() as f64 / 10.0
        })
        .sum();
    total / set.queries.len() as f64
}

/// The table of modes: latency, speed-up over exact, recall@10.
pub fn modes_summary(sets: &[Dataset]) {
    println!("\n## search modes (top-10, default oversampling; recall@10 against exact)\n");
    println!("| dataset | mode | oversample | latency | speed-up over exact | recall@10 |");
    println!("|---|---|---:|---:|---:|---:|");
    for set in sets {
        let index = MmapIndex::open_podcast(&set.index_dir, &set.podcast).unwrap();
        let Some(exact) = mean(&id(SearchMode::Exact, set)) else {
            continue;
        };
        for mode in modes() {
            let Some(t) = mean(&id(mode, set)) else {
                continue;
            };
            println!(
                "| {} | {mode} | {} | {:.3} ms | {:.1}× | {:.3} |",
                set.name,
                mode.oversample(),
                t.as_secs_f64() * 1e3,
                exact.as_secs_f64() / t.as_secs_f64(),
                recall(&index, set, mode)
            );
        }
    }
}
