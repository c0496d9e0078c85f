//! The real corpus end to end: convert both podcasts, compare every item with its JSON, and
//! check both search paths against the exact ground truth in `queries.json`.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use podmap::search::{
    rank_episodes_fused, rank_lists, scan, EpisodeBest, EpisodeList, Fusion, Scored,
};
use podmap::{Filter, Hit, JsonIndex, MmapIndex, SearchIndex};
use serde_json::Value;

const PODCASTS: [&str; 2] = ["forschergeist", "raumzeit"];

/// The corpus converted once for all tests of this file.
fn converted() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let corpus = common::corpus();
        let out = tempfile::tempdir().unwrap();
        let reports = common::convert_quietly(&corpus, out.path());
        assert_eq!(reports.len(), 2);
        out
    })
    .path()
}

fn rag_json(podcast: &str) -> Value {
    let path = common::corpus()
        .join("db")
        .join(podcast)
        .join("rag-embeddings.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn opt_str(v: &Value) -> Option<&str> {
    v.as_str()
}

#[test]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
fn every_item_round_trips() {
    let index_dir = converted();
    for podcast in PODCASTS {
        let json = rag_json(podcast);
        let index = MmapIndex::open_podcast(index_dir, podcast).unwrap();
        let items = json["items"].as_array().unwrap();
        assert_eq!(index.len(), items.len(), "{podcast}");
        assert_eq!(
            index.dims(),
            json["embeddingDimensions"].as_u64().unwrap() as usize
        );
        assert_eq!(index.model(), json["embeddingModel"].as_str());
        let m = index.manifest();
        assert_eq!(m.schema_version(), json["schemaVersion"].as_u64());
        assert_eq!(m.created_at(), opt_str(&json["createdAt"]));
        assert_eq!(m.updated_at(), opt_str(&json["updatedAt"]));
        assert_eq!(m.embedding_model(), json["embeddingModel"].as_str());
        assert_eq!(
            m.embedding_dimensions(),
            json["embeddingDimensions"].as_u64()
        );
        let reparse = |s: Option<&str>| s.map(|s| serde_json::from_str::<Value>(s).unwrap());
        assert_eq!(
            reparse(m.embedding_info_json()).as_ref(),
            Some(&json["embeddingInfo"])
        );
        assert_eq!(reparse(m.source_json()).as_ref(), Some(&json["source"]));
        assert_eq!(reparse(m.stats_json()).as_ref(), Some(&json["stats"]));

        for (i, item) in items.iter().enumerate() {
            let full = index.item_full(i).unwrap();
            let rec = full.view();
            let ctx = format!("{podcast} item {i}");
            let obj = item.as_object().unwrap();
            for key in obj.keys() {
                assert!(
                    [
                        "id",
                        "key",
                        "episodeNumber",
                        "episodeTitle",
                        "topic",
                        "subject",
                        "startSec",
                        "endSec",
                        "startHms",
                        "endHms",
                        "durationSec",
                        "summary",
                        "source",
                        "text",
                        "embedding"
                    ]
                    .contains(&key.as_str()),
                    "{ctx}: field {key} is not archived"
                );
            }
            assert_eq!(u64::from(rec.id), item["id"].as_u64().unwrap(), "{ctx}");
            assert_eq!(full.id(), rec.id, "{ctx}");
            assert_eq!(full.key(), opt_str(&item["key"]), "{ctx}");
            assert_eq!(
                u64::from(rec.episode_number),
                item["episodeNumber"].as_u64().unwrap(),
                "{ctx}"
            );
            assert_eq!(full.episode_number(), rec.episode_number, "{ctx}");
            assert_eq!(index.episode_of(i), rec.episode_number);
            assert_eq!(rec.episode_title, opt_str(&item["episodeTitle"]), "{ctx}");
            assert_eq!(rec.topic, opt_str(&item["topic"]), "{ctx}");
            assert_eq!(full.has_subject(), item["subject"].is_object(), "{ctx}");
            if full.has_subject() {
                assert_eq!(
                    rec.subject_coarse,
                    opt_str(&item["subject"]["coarse"]),
                    "{ctx}"
                );
                assert_eq!(rec.subject_fine, opt_str(&item["subject"]["fine"]), "{ctx}");
            }
            assert_eq!(rec.start_sec, item["startSec"].as_f64().unwrap(), "{ctx}");
            assert_eq!(rec.end_sec, item["endSec"].as_f64().unwrap(), "{ctx}");
            assert_eq!(rec.start_hms, opt_str(&item["startHms"]), "{ctx}");
            assert_eq!(rec.end_hms, opt_str(&item["endHms"]), "{ctx}");
            assert_eq!(full.duration_sec(), item["durationSec"].as_f64(), "{ctx}");
            assert_eq!(rec.summary, opt_str(&item["summary"]), "{ctx}");
            assert_eq!(
                reparse(full.source_json()).as_ref(),
                Some(&item["source"]),
                "{ctx}"
            );
            assert_eq!(rec.text, opt_str(&item["text"]), "{ctx}");

            // The row is the embedding scaled to unit length; the norm is kept beside it.
            let embedding: Vec<f32> = serde_json::from_value(item["embedding"].clone()).unwrap();
            let norm = embedding
                .iter()
                .map(|&x| f64::from(x).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!((f64::from(index.norm(i)) - norm).abs() < 1e-6, "{ctx}");
            for (stored, original) in index.row(i).iter().zip(&embedding) {
                assert!(
                    (f64::from(*stored) * norm - f64::from(*original)).abs() < 1e-6,
                    "{ctx}"
                );
            }
        }
        index.verify().unwrap();
    }
}

fn ids(hits: &[Hit]) -> Vec<u32> {
    hits.iter().map(|h| h.index).collect()
}

/// Same ids in the same order, except that neighbours whose scores differ by less than
/// `tie` may swap (float sums in another order can flip exact ties).
fn assert_same_ranking(got: &[Hit], want_ids: &[u32], want_scores: &[f64], tie: f64, ctx: &str) {
    assert_eq!(got.len(), want_ids.len(), "{ctx}");
    let mut got_sorted = ids(got);
    let mut want_sorted = want_ids.to_vec();
    got_sorted.sort_unstable();
    want_sorted.sort_unstable();
    assert_eq!(
        got_sorted,
        want_sorted,
        "{ctx}: recall@{} is below 1",
        want_ids.len()
    );
    for (rank, (hit, &want)) in got.iter().zip(want_ids).enumerate() {
        if hit.index != want {
            let other = want_ids.iter().position(|&id| id == hit.index).unwrap();
            assert!(
                (want_scores[rank] - want_scores[other]).abs() < tie,
                "{ctx}: rank {rank} is {} but should be {want}",
                hit.index
            );
        }
        assert!(
            (f64::from(hit.score) - want_scores[rank]).abs() < 1e-4,
            "{ctx}: score at rank {rank}"
        );
    }
}

#[test]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
fn both_paths_match_the_ground_truth_for_every_query() {
    let index_dir = converted();
    let corpus = common::corpus();
    let mut mapped = HashMap::new();
    let mut parsed = HashMap::new();
    for podcast in PODCASTS {
        mapped.insert(
            podcast.to_owned(),
            MmapIndex::open_podcast(index_dir, podcast).unwrap(),
        );
        parsed.insert(
            podcast.to_owned(),
            JsonIndex::load_podcast(&corpus, podcast).unwrap(),
        );
    }
    let queries = common::corpus_queries();
    assert_eq!(queries.len(), 40);
    for (n, q) in queries.iter().enumerate() {
        let ctx = format!("query {n} ({})", q.podcast);
        let from_map = mapped[&q.podcast]
            .search_vector(&q.embedding, 10, &Filter::all())
            .unwrap();
        let from_json = parsed[&q.podcast]
            .search_vector(&q.embedding, 10, &Filter::all())
            .unwrap();
        assert_same_ranking(
            &from_map,
            &q.top10,
            &q.top10_scores,
            1e-6,
            &format!("{ctx}, mmap"),
        );
        assert_same_ranking(
            &from_json,
            &q.top10,
            &q.top10_scores,
            1e-6,
            &format!("{ctx}, json"),
        );
        let json_scores: Vec<f64> = from_json.iter().map(|h| f64::from(h.score)).collect();
        assert_same_ranking(
            &from_map,
            &ids(&from_json),
            &json_scores,
            1e-6,
            &format!("{ctx}, mmap vs json"),
        );
        // The hit carries the item's metadata, read from the archive.
        let top = mapped[&q.podcast].item(from_map[0].index as usize).unwrap();
        let same = parsed[&q.podcast]
            .item(from_json[0].index as usize)
            .unwrap();
        assert_eq!(top, same, "{ctx}");
    }
}

/// Brute force over the JSON: the expected top-k under a filter.
fn filtered_truth(
    index: &JsonIndex,
    query: &[f32],
    k: usize,
    keep: impl Fn(u32) -> bool,
) -> Vec<u32> {
    let mut all = index
        .search_vector(query, index.len(), &Filter::all())
        .unwrap();
    all.retain(|h| keep(index.item(h.index as usize).unwrap().episode_number));
    all.truncate(k);
    ids(&all)
}

#[test]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
fn filters_are_applied_inside_the_scan() {
    let index_dir = converted();
    let corpus = common::corpus();
    let queries = common::corpus_queries();
    for podcast in PODCASTS {
        let mapped = MmapIndex::open_podcast(index_dir, podcast).unwrap();
        let parsed = JsonIndex::load_podcast(&corpus, podcast).unwrap();
        for q in queries.iter().filter(|q| q.podcast == podcast).take(5) {
            for (from, to) in [(1, 10), (40, 60), (90, 500), (1000, 2000)] {
                let got = mapped
                    .search_vector(&q.embedding, 10, &Filter::episode_range(from, to))
                    .unwrap();
                let want = filtered_truth(&parsed, &q.embedding, 10, |e| (from..=to).contains(&e));
                assert_eq!(ids(&got), want, "{podcast} episodes {from}..={to}");
                for h in &got {
                    let item = mapped.item(h.index as usize).unwrap();
                    assert!((from..=to).contains(&item.episode_number));
                }
            }
            let set = vec![3, 17, 42, 92, 99];
            let got = mapped
                .search_vector(&q.embedding, 10, &Filter::episode_set(set.clone()))
                .unwrap();
            let want = filtered_truth(&parsed, &q.embedding, 10, |e| set.contains(&e));
            assert!(!want.is_empty());
            assert_eq!(ids(&got), want, "{podcast} episode set");
        }
    }
}

#[test]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
fn lexical_search_is_the_same_on_both_paths() {
    let index_dir = converted();
    let corpus = common::corpus();
    for podcast in PODCASTS {
        let mapped = MmapIndex::open_podcast(index_dir, podcast).unwrap();
        let parsed = JsonIndex::load_podcast(&corpus, podcast).unwrap();
        for text in [
            "Raumfahrt",
            "Wissenschaft und Forschung",
            "Mars Mission",
            "Universität",
            "qqqqq",
        ] {
            let a = mapped.search_text(text, 10, &Filter::all()).unwrap();
            let b = parsed.search_text(text, 10, &Filter::all()).unwrap();
            assert_eq!(a, b, "{podcast} {text:?}");
            if text != "qqqqq" && podcast == "raumzeit" {
                assert!(!a.is_empty(), "{podcast} {text:?} found nothing");
            }
        }
    }
}

#[test]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
fn query_of_wrong_dimension_is_refused() {
    let index_dir = converted();
    let index = MmapIndex::open_podcast(index_dir, "raumzeit").unwrap();
    let err = index
        .search_vector(&[0.5; 383], 10, &Filter::all())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "query vector has 383 dimensions, the index has 384"
    );
    assert!(index
        .search_vector(&[0.0; 384], 10, &Filter::all())
        .is_err());
}

#[test]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
fn batched_and_concurrent_scans_equal_single_scans() {
    let index_dir = converted();
    let queries: Vec<Vec<f32>> = common::corpus_queries()
        .into_iter()
        .filter(|q| q.podcast == "raumzeit")
        .map(|q| q.embedding)
        .collect();
    let index = MmapIndex::open_podcast(index_dir, "raumzeit").unwrap();
    let single: Vec<Vec<Hit>> = queries
        .iter()
        .map(|q| index.score_all(q, &Filter::all()).unwrap())
        .collect();
    assert_eq!(single[0].len(), index.len(), "every row is scored");
    let refs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
    assert_eq!(
        podmap::search::scan::score_all_batch(&index, &refs, &Filter::all()).unwrap(),
        single
    );
    // Through the server's batcher, from many threads at once.
    let podcast = podmap::server::catalog::MmapPodcast::open(&podmap::index::archive_path(
        index_dir, "raumzeit",
    ))
    .unwrap();
    let best: Vec<Vec<EpisodeBest>> = queries
        .iter()
        .map(|q| sorted(scan::best_per_episode(&index, q).unwrap()))
        .collect();
    assert_eq!(
        scan::best_per_episode_batch(&index, &refs)
            .unwrap()
            .into_iter()
            .map(sorted)
            .collect::<Vec<_>>(),
        best
    );
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..queries.len() * 3)
            .map(|i| {
                let (podcast, q) = (&podcast, &queries[i % queries.len()]);
                scope.spawn(move || {
                    sorted(podmap::server::Podcast::best_per_episode(podcast, q).unwrap())
                })
            })
            .collect();
        for (i, handle) in handles.into_iter().enumerate() {
            assert_eq!(
                handle.join().unwrap(),
                best[i % queries.len()],
                "thread {i}"
            );
        }
    });
}

fn sorted(mut episodes: Vec<EpisodeBest>) -> Vec<EpisodeBest> {
    episodes.sort_by_key(|e| (e.source, e.episode));
    episodes
}

/// Pages to compare for `total` episodes: the first ones, some in between, the last one,
/// and past the end.
fn pages(total: usize) -> Vec<(usize, usize)> {
    let mut pages = Vec::new();
    for offset in [
        0,
        1,
        7,
        10,
        33,
        49,
        100,
        total.saturating_sub(1),
        total,
        usize::MAX,
    ] {
        for size in [1, 3, 10, 50, usize::MAX] {
            pages.push((offset, size));
        }
    }
    pages
}

/// Episodes of `index` (from its scan) whose kept hits do not give three positions although
/// there were more: the case settled by scoring the episode again.
fn unsettled(index: &MmapIndex, episodes: &[EpisodeBest]) -> usize {
    let positions = |e: &EpisodeBest| {
        let mut starts: Vec<f64> = Vec::new();
        for hit in e.hits() {
            let start = index.item(hit.index as usize).unwrap().start_sec;
            if !starts.iter().any(|t| (t - start).abs() < 1.0) {
                starts.push(start);
            }
        }
        starts.len().min(3)
    };
    episodes
        .iter()
        .filter(|e| !e.complete() && positions(e) < 3)
        .count()
}

#[test]
#[cfg_attr(
    not(podmap_corpus),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS)"
)]
fn episodes_from_the_scan_page_as_grouping_every_hit_does() {
    let index_dir = converted();
    let indexes: Vec<MmapIndex> = PODCASTS
        .iter()
        .map(|p| MmapIndex::open_podcast(index_dir, p).unwrap())
        .collect();
    let queries = common::corpus_queries();
    let (mut compared, mut resorted) = (0, 0);
    for (qi, query) in queries.iter().enumerate() {
        let q = query.embedding.as_slice();
        let full: Vec<Vec<Hit>> = indexes
            .iter()
            .map(|index| index.score_all(q, &Filter::all()).unwrap())
            .collect();
        let old = |which: &[usize], fusion, lexical: bool, offset, size| {
            let scored: Vec<Scored> = which
                .iter()
                .map(|&p| Scored {
                    index: &indexes[p] as &dyn SearchIndex,
                    hits: if lexical && p == 0 {
                        indexes[p]
                            .search_text("Forschung", indexes[p].len(), &Filter::all())
                            .unwrap()
                    } else {
                        full[p].clone()
                    },
                })
                .collect();
            rank_episodes_fused(&scored, fusion, offset, size).unwrap()
        };
        // One podcast, as the route scans it.
        for (p, index) in indexes.iter().enumerate() {
            let best = scan::best_per_episode(index, q).unwrap();
            resorted += unsettled(index, &best);
            let lists = [EpisodeList::from_scan(index, best, q)];
            for (offset, size) in pages(lists[0].len()) {
                let new = rank_lists(&lists, Fusion::Scores, offset, size).unwrap();
                assert_eq!(
                    new,
                    old(&[p], Fusion::Scores, false, offset, size),
                    "query {qi} podcast {p} page {offset}+{size}"
                );
                compared += 1;
            }
        }
        // Both podcasts in one pass, ranked by score; and by reciprocal rank beside a lexical
        // search of the first.
        let sources: Vec<(&MmapIndex, &[f32])> = indexes.iter().map(|i| (i, q)).collect();
        let mut per_source = vec![Vec::new(); indexes.len()];
        for best in scan::best_per_episode_across(&sources).unwrap() {
            per_source[best.source as usize].push(best);
        }
        let lists: Vec<EpisodeList> = indexes
            .iter()
            .zip(per_source)
            .map(|(index, best)| EpisodeList::from_scan(index, best, q))
            .collect();
        let total = lists.iter().map(EpisodeList::len).sum();
        for (offset, size) in pages(total) {
            let new = rank_lists(&lists, Fusion::Scores, offset, size).unwrap();
            assert_eq!(
                new,
                old(&[0, 1], Fusion::Scores, false, offset, size),
                "query {qi} across, page {offset}+{size}"
            );
            compared += 1;
        }
        let lexical = indexes[0]
            .search_text("Forschung", indexes[0].len(), &Filter::all())
            .unwrap();
        let mixed = [
            EpisodeList::from_hits(&indexes[0], lexical),
            EpisodeList::from_scan(
                &indexes[1],
                scan::best_per_episode(&indexes[1], q).unwrap(),
                q,
            ),
        ];
        let total = mixed.iter().map(EpisodeList::len).sum();
        for (offset, size) in pages(total) {
            let fusion = Fusion::reciprocal_rank();
            let new = rank_lists(&mixed, fusion, offset, size).unwrap();
            assert_eq!(
                new,
                old(&[0, 1], fusion, true, offset, size),
                "query {qi} mixed, page {offset}+{size}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, queries.len() * 4 * 50);
    // Not asserted: how often the kept hits fall short depends on the data.
    eprintln!("{resorted} episodes of single-podcast scans needed their hits scored again");
}
