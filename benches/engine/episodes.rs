//! The HTTP search's episode ranking: a hit per item sorted and grouped (the former path)
//! against the best hits of each episode kept in the scan, on one podcast; and a search of K
//! podcasts in one pass against one podcast of as many items, exact and in the quantized
//! modes (one code scan across the K podcasts against the one podcast's own search).
//!
//! Timed side by side in one process: each round runs every variant a few times, and the
//! median round is reported, so drift of the machine hits all variants alike.
//! `PODMAP_BENCH_ONLY=episodes cargo bench --bench engine`; `PODMAP_BENCH_EPISODE_ITEMS`,
//! `PODMAP_BENCH_EPISODE_DIMS` and `PODMAP_BENCH_PODCASTS` (K) size the generated sets.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use podmap::search::{quant, rank_episodes_fused, rank_lists, scan, EpisodeList, Fusion, Scored};
use podmap::{Filter, MmapIndex, SearchIndex, SearchMode};

use crate::support::{bench_data, convert, env_usize, generate_podcasts};
use crate::Dataset;

/// Episodes of the page asked for.
const PAGE: usize = 10;
/// The quantized modes at their default oversampling.
const BINARY: SearchMode = SearchMode::Binary {
    oversample: quant::BINARY_OVERSAMPLE,
};
const INT8: SearchMode = SearchMode::Int8 {
    oversample: quant::INT8_OVERSAMPLE,
};
/// Rounds timed; the median is reported.
const ROUNDS: usize = 15;

/// The page the former path answers: every item scored, sorted, grouped.
fn old_page(indexes: &[&MmapIndex], query: &[f32]) -> usize {
    let scored: Vec<Scored> = indexes
        .iter()
        .map(|&index| Scored {
            index,
            hits: scan::score_all(index, query, &Filter::all()).unwrap(),
        })
        .collect();
    let page = rank_episodes_fused(&scored, Fusion::Scores, 0, PAGE).unwrap();
    page.total + page.episodes.len()
}

/// The page the search answers now: one pass keeping each episode's best hits.
fn new_page(indexes: &[&MmapIndex], query: &[f32]) -> usize {
    let page = rank_lists(&exact_lists(indexes, query), Fusion::Scores, 0, PAGE).unwrap();
    page.total + page.episodes.len()
}

/// The episodes of `indexes` from one exact pass over them.
fn exact_lists<'a>(indexes: &[&'a MmapIndex], query: &'a [f32]) -> Vec<EpisodeList<'a>> {
    if let [index] = indexes {
        let best = scan::best_per_episode(*index, query).unwrap();
        return vec![EpisodeList::from_scan(*index, best, query)];
    }
    let sources: Vec<(&MmapIndex, &[f32])> = indexes.iter().map(|&i| (i, query)).collect();
    let mut per_source = vec![Vec::new(); indexes.len()];
    for best in scan::best_per_episode_across(&sources).unwrap() {
        per_source[best.source as usize].push(best);
    }
    indexes
        .iter()
        .zip(per_source)
        .map(|(&index, best)| EpisodeList::from_scan(index, best, query))
        .collect()
}

/// The page a quantized search in `mode` answers, as the route builds it: several podcasts
/// whose rows together are enough for their codes are one code scan across them
/// ([`quant::top_k_across`]); otherwise those too small for their codes are one exact pass
/// and the others a search each. A first round of the route's search asks for as many hits
/// as here, and on these podcasts it covers the page.
fn quantized_page(indexes: &[&MmapIndex], query: &[f32], mode: SearchMode) -> usize {
    let k = (PAGE + 1) * 8;
    let floats = indexes.iter().map(|index| index.matrix().len()).sum();
    let mut lists: Vec<EpisodeList> = Vec::new();
    if indexes.len() > 1 && quant::served_mode(mode, floats) != SearchMode::Exact {
        let sources: Vec<(&MmapIndex, &[f32])> = indexes.iter().map(|&i| (i, query)).collect();
        let mut per_source = vec![Vec::new(); indexes.len()];
        for (source, hit) in quant::top_k_across(&sources, k, mode).unwrap() {
            per_source[source as usize].push(hit);
        }
        for (&index, hits) in indexes.iter().zip(per_source) {
            lists.push(EpisodeList::from_hits(index, hits));
        }
    } else {
        let (exact, alone): (Vec<&MmapIndex>, Vec<&MmapIndex>) = indexes
            .iter()
            .partition(|index| quant::served_mode(mode, index.matrix().len()) == SearchMode::Exact);
        if !exact.is_empty() {
            lists.extend(exact_lists(&exact, query));
        }
        for index in alone {
            let hits = index
                .search_vector_in(query, k, &Filter::all(), mode)
                .unwrap();
            lists.push(EpisodeList::from_hits(index, hits));
        }
    }
    let page = rank_lists(&lists, Fusion::Scores, 0, PAGE).unwrap();
    page.total + page.episodes.len()
}

type Variant<'a> = (&'a str, Box<dyn Fn(&[f32]) -> usize + 'a>);

/// Median time per query of each variant over [`ROUNDS`] interleaved rounds.
fn race(variants: &[Variant], queries: &[Vec<f32>]) -> Vec<Duration> {
    for (_, run) in variants {
        black_box(run(&queries[0]));
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    for round in 0..ROUNDS {
        for (v, (_, run)) in variants.iter().enumerate() {
            let started = Instant::now();
            for i in 0..queries.len().min(8) {
                black_box(run(&queries[(round + i) % queries.len()]));
            }
            times[v].push(started.elapsed() / queries.len().min(8) as u32);
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort();
            t[t.len() / 2]
        })
        .collect()
}

fn print(title: &str, variants: &[Variant], times: &[Duration]) {
    println!("\n{title}");
    for ((name, _), t) in variants.iter().zip(times) {
        let ratio = t.as_secs_f64() / times[0].as_secs_f64();
        println!(
            "  {name:<44} {:>9.3} ms  {ratio:>5.2}×",
            t.as_secs_f64() * 1e3
        );
    }
}

/// Generated podcasts: `ids` (each `items` × `dims`), converted into `root/index`.
fn generate(root: &Path, ids: &[String], items: usize, dims: usize) -> PathBuf {
    let index_dir = root.join("index");
    let names: Vec<&str> = ids.iter().map(String::as_str).collect();
    generate_podcasts(root, &names, items, dims, 8);
    for id in ids {
        convert(root, &index_dir, id);
    }
    index_dir
}

fn queries(root: &Path, id: &str) -> Vec<Vec<f32>> {
    let text = std::fs::read_to_string(root.join(format!("queries/{id}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn episode_ranking(sets: &[Dataset]) {
    // (a) One podcast: the real one and a generated one.
    let (items, dims) = (
        env_usize("PODMAP_BENCH_EPISODE_ITEMS", 12_000),
        env_usize("PODMAP_BENCH_EPISODE_DIMS", 768),
    );
    let k = env_usize("PODMAP_BENCH_PODCASTS", 4);
    let one_root = bench_data().join(format!("episodes-1x{items}x{dims}"));
    let one_dir = generate(&one_root, &["one".into()], items, dims);
    let one = MmapIndex::open_podcast(&one_dir, "one").unwrap();
    let one_queries = queries(&one_root, "one");
    let mut singles: Vec<(String, MmapIndex, Vec<Vec<f32>>)> = sets
        .iter()
        .filter(|s| s.name == "raumzeit")
        .map(|s| {
            let index = MmapIndex::open_podcast(&s.index_dir, &s.podcast).unwrap();
            (s.name.clone(), index, s.queries.clone())
        })
        .collect();
    singles.push((
        format!("gen {items}×{dims}"),
        MmapIndex::open_podcast(&one_dir, "one").unwrap(),
        one_queries.clone(),
    ));
    let mut summary = Vec::new();
    for (name, index, queries) in &singles {
        let variants: Vec<Variant> = vec![
            (
                "hit per item, sorted, grouped",
                Box::new(|q| old_page(&[index], q)),
            ),
            (
                "best hits per episode in the scan",
                Box::new(|q| new_page(&[index], q)),
            ),
        ];
        let times = race(&variants, queries);
        print(
            &format!("episode page of {PAGE}, {name} ({} items)", index.len()),
            &variants,
            &times,
        );
        summary.push(format!(
            "{name}: in-scan / sorted = {:.2}",
            times[1].as_secs_f64() / times[0].as_secs_f64()
        ));
    }

    // (b) K podcasts of items / K against one of `items`.
    let ids: Vec<String> = (1..=k).map(|i| format!("part-{i}")).collect();
    let k_root = bench_data().join(format!("episodes-{k}x{}x{dims}", items / k));
    let k_dir = generate(&k_root, &ids, items / k, dims);
    let parts: Vec<MmapIndex> = ids
        .iter()
        .map(|id| MmapIndex::open_podcast(&k_dir, id).unwrap())
        .collect();
    let part_refs: Vec<&MmapIndex> = parts.iter().collect();
    let variants: Vec<Variant> = vec![
        ("one podcast, one pass", Box::new(|q| new_page(&[&one], q))),
        (
            "K podcasts, one pass across them",
            Box::new(|q| new_page(&part_refs, q)),
        ),
        (
            "K podcasts, one after another (sorted)",
            Box::new(|q| old_page(&part_refs, q)),
        ),
        (
            "one podcast, binary",
            Box::new(|q| quantized_page(&[&one], q, BINARY)),
        ),
        (
            "K podcasts, binary",
            Box::new(|q| quantized_page(&part_refs, q, BINARY)),
        ),
        (
            "one podcast, int8",
            Box::new(|q| quantized_page(&[&one], q, INT8)),
        ),
    ];
    let times = race(&variants, &one_queries);
    print(
        &format!(
            "{k} podcasts of {} items against one of {items} ({dims} dims)",
            items / k
        ),
        &variants,
        &times,
    );
    summary.push(format!(
        "{k} podcasts / one podcast, same items = {:.2} (former path: {:.2})",
        times[1].as_secs_f64() / times[0].as_secs_f64(),
        times[2].as_secs_f64() / times[0].as_secs_f64()
    ));
    summary.push(format!(
        "{k} podcasts / one podcast, same items, binary = {:.2}",
        times[4].as_secs_f64() / times[3].as_secs_f64()
    ));
    println!("\nepisode ranking, medians of {ROUNDS} rounds:");
    for line in summary {
        println!("  {line}");
    }
}
