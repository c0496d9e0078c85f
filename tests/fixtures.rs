//! The committed fixtures are exactly what `tools/make-fixtures.sh` makes, and podmap's main
//! job runs on them.

use std::path::{Path, PathBuf};
use std::process::Command;

use podmap::{Filter, MmapIndex, SearchIndex};

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

#[test]
fn fixtures_are_reproduced_byte_for_byte_by_the_generator() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    let status = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/make-fixtures.sh"))
        .arg(&out)
        .env("PODMAP_GEN", env!("CARGO_BIN_EXE_podmap-gen"))
        .status()
        .unwrap();
    assert!(status.success());
    let committed = fixtures();
    assert_eq!(files(&out), files(&committed));
    for file in files(&committed) {
        assert!(
            std::fs::read(out.join(&file)).unwrap()
                == std::fs::read(committed.join(&file)).unwrap(),
            "{} differs from what the generator makes",
            file.display()
        );
    }
}

#[test]
fn fixture_queries_find_their_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = podmap::convert::ConvertOptions {
        data_root: fixtures(),
        out_dir: tmp.path().to_path_buf(),
        podcasts: Vec::new(),
        force: false,
    };
    let hidden =
        indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
    let reports = podmap::convert::convert_all(&opts, &hidden).unwrap();
    assert_eq!(reports.len(), 3);
    assert!(reports.iter().all(|r| r.result.is_ok()));
    let index = MmapIndex::open_podcast(tmp.path(), "demo-raumfahrt").unwrap();
    let text = std::fs::read_to_string(fixtures().join("queries/demo-raumfahrt.json")).unwrap();
    let queries: Vec<Vec<f32>> = serde_json::from_str(&text).unwrap();
    assert_eq!(queries.len(), 3);
    for q in &queries {
        let hits = index.search_vector(q, 5, &Filter::all()).unwrap();
        assert_eq!(hits.len(), 5);
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        // Each query lies near the cluster of some items; unrelated unit vectors in 384
        // dimensions score about 0.
        assert!(hits[0].score > 0.3, "query found no cluster: {hits:?}");
    }
    let text_only = MmapIndex::open_podcast(tmp.path(), "demo-text").unwrap();
    assert_eq!(text_only.embedded_count(), 0);
    let lexical = text_only
        .search_text("Raumfahrt", 5, &Filter::all())
        .unwrap();
    assert!(!lexical.is_empty());
}
