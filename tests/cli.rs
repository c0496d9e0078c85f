//! The `podmap` binary as a user runs it: real files, real exit codes, real messages.

mod common;

use serde_json::Value;

use common::{podmap, s, text};

#[test]
fn convert_search_inspect_verify_round() {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = (dir.path().join("data"), dir.path().join("index"));
    common::small_root(&data, "alpha", 30, 16);
    common::small_root(&data, "beta", 9, 16);

    let out = podmap(&["convert", "--data", s(&data), "--out", s(&index)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("alpha: 30 items (30 embedded), 16 dims"),
        "{stdout}"
    );
    assert!(stdout.contains("beta: 9 items"), "{stdout}");

    // Unchanged inputs are skipped; --force converts again.
    let again = text(&podmap(&["convert", "--data", s(&data), "--out", s(&index)]).stdout);
    assert!(again.contains("alpha: unchanged"), "{again}");
    let forced = text(
        &podmap(&[
            "convert",
            "--data",
            s(&data),
            "--out",
            s(&index),
            "--podcast",
            "beta",
            "--force",
        ])
        .stdout,
    );
    assert!(
        forced.starts_with("beta: 9 items") && !forced.contains("alpha"),
        "{forced}"
    );

    let inspect = podmap(&["inspect", s(&index.join("alpha")), "--json"]);
    assert!(inspect.status.success(), "{}", text(&inspect.stderr));
    let header: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(header["items"], 30);
    assert_eq!(header["dimensions"], 16);
    assert_eq!(header["embeddingModel"], "test/model");
    assert_eq!(header["formatVersion"], 3);

    let verify = podmap(&["verify", s(&index)]);
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    assert_eq!(
        text(&verify.stdout),
        "alpha: ok (30 items, 16 dims)\nbeta: ok (9 items, 16 dims)\n"
    );

    // Two queries in one file: one JSON line each, identical on both sources.
    let queries = dir.path().join("q.json");
    let q: Vec<Vec<f32>> = vec![common::vector(16, 3), common::vector(16, 77)];
    std::fs::write(&queries, serde_json::to_string(&q).unwrap()).unwrap();
    let mapped = podmap(&[
        "search",
        "--index",
        s(&index),
        "--podcast",
        "alpha",
        "--vector",
        s(&queries),
        "--json",
        "--top-k",
        "4",
    ]);
    assert!(mapped.status.success(), "{}", text(&mapped.stderr));
    let parsed = podmap(&[
        "search",
        "--source",
        "json",
        "--data",
        s(&data),
        "--podcast",
        "alpha",
        "--vector",
        s(&queries),
        "--json",
        "--top-k",
        "4",
    ]);
    assert!(parsed.status.success(), "{}", text(&parsed.stderr));
    let lines: Vec<Value> = text(&mapped.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let json_lines: Vec<Value> = text(&parsed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for (a, b) in lines.iter().zip(&json_lines) {
        let ids = |v: &Value| {
            v["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["id"].as_u64().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(a), ids(b));
        assert_eq!(a["hits"].as_array().unwrap().len(), 4);
        let hit = &a["hits"][0];
        for field in [
            "id",
            "episodeNumber",
            "topic",
            "startSec",
            "endSec",
            "score",
        ] {
            assert!(!hit[field].is_null(), "{field} missing in {hit}");
        }
    }
    // Query vector 3 is item 2's own embedding: it must come first with cosine 1.
    assert_eq!(lines[0]["hits"][0]["id"], 2);
    assert!((lines[0]["hits"][0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-5);

    // The quantized modes find item 2 first too, with the exact score; an unknown mode is
    // refused naming the choices.
    for mode in ["int8", "binary"] {
        let quantized = podmap(&[
            "search",
            "--index",
            s(&index),
            "--podcast",
            "alpha",
            "--vector",
            s(&queries),
            "--json",
            "--top-k",
            "4",
            "--mode",
            mode,
            "--oversample",
            "2",
        ]);
        assert!(quantized.status.success(), "{}", text(&quantized.stderr));
        let first: Value =
            serde_json::from_str(text(&quantized.stdout).lines().next().unwrap()).unwrap();
        assert_eq!(first["hits"][0], lines[0]["hits"][0], "{mode}");
    }
    let unknown = podmap(&[
        "search",
        "--index",
        s(&index),
        "--podcast",
        "alpha",
        "--vector",
        s(&queries),
        "--mode",
        "fast",
    ]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("expected exact, int8 or binary"),
        "{}",
        text(&unknown.stderr)
    );

    // Filters restrict the episodes.
    let filtered = podmap(&[
        "search",
        "--index",
        s(&index),
        "--podcast",
        "alpha",
        "--vector",
        s(&queries),
        "--json",
        "--episodes",
        "2..3",
    ]);
    for line in text(&filtered.stdout).lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        for hit in v["hits"].as_array().unwrap() {
            let e = hit["episodeNumber"].as_u64().unwrap();
            assert!((2..=3).contains(&e), "{hit}");
        }
    }

    // Lexical search and the table output.
    let lexical = podmap(&[
        "search",
        "--index",
        s(&index),
        "--podcast",
        "alpha",
        "--text",
        "Thema 12",
    ]);
    let table = text(&lexical.stdout);
    assert!(table.contains("Thema 12"), "{table}");
}

#[test]
fn bad_inputs_are_reported_with_file_and_reason_after_converting_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = (dir.path().join("data"), dir.path().join("index"));
    common::small_root(&data, "good", 6, 8);
    common::write_raw(
        &data,
        "broken",
        "{\n  \"items\": [\n    {\"id\": 0,, }\n  ]\n}\n",
    );
    let mut items: Vec<Value> = (0..4)
        .map(|i| common::item(i, 1, "x", Some(common::vector(8, i + 1))))
        .collect();
    items[2]["embedding"] = serde_json::to_value(common::vector(7, 1)).unwrap();
    common::write_rag(&data, "wrongdim", 8, items);
    let nulls = (0..3)
        .map(|i| common::item(i, 1, "Nur Text", None))
        .collect();
    common::write_rag(&data, "textonly", 0, nulls);

    let out = podmap(&["convert", "--data", s(&data), "--out", s(&index)]);
    assert_eq!(out.status.code(), Some(1));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stdout.contains("good: 6 items"), "{stdout}");
    assert!(
        stdout.contains("textonly: 3 items (0 embedded), 0 dims"),
        "{stdout}"
    );
    assert!(
        stdout.contains("broken: FAILED") && stdout.contains("wrongdim: FAILED"),
        "{stdout}"
    );
    let broken = data.join("db/broken/rag-embeddings.json");
    assert!(
        stderr.contains(&format!("{}:3:14: malformed JSON", broken.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("item 2: embedding has 7 dimensions, expected 8"),
        "{stderr}"
    );
    assert!(!index.join("broken/rag.podmap").exists());

    // A podcast without embeddings answers lexical search and refuses vector search clearly.
    let q = dir.path().join("q.json");
    std::fs::write(&q, "[0.1, 0.2]").unwrap();
    let dense = podmap(&[
        "search",
        "--index",
        s(&index),
        "--podcast",
        "textonly",
        "--vector",
        s(&q),
    ]);
    assert_eq!(dense.status.code(), Some(1));
    assert!(
        text(&dense.stderr).contains("no embeddings; use lexical search"),
        "{}",
        text(&dense.stderr)
    );
    let lexical = podmap(&[
        "search",
        "--index",
        s(&index),
        "--podcast",
        "textonly",
        "--text",
        "nur text",
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&lexical.stdout).unwrap();
    assert_eq!(v["hits"].as_array().unwrap().len(), 3);
    assert_eq!(v["hits"][0]["score"], 4.0);

    // Unknown podcast and missing data root.
    let missing = podmap(&[
        "convert",
        "--data",
        s(&data),
        "--out",
        s(&index),
        "--podcast",
        "nope",
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("nope"),
        "{}",
        text(&missing.stderr)
    );
    let no_root = podmap(&[
        "convert",
        "--data",
        s(&dir.path().join("absent")),
        "--out",
        s(&index),
    ]);
    assert_eq!(no_root.status.code(), Some(1));
    assert!(
        text(&no_root.stderr).contains("absent"),
        "{}",
        text(&no_root.stderr)
    );
}

#[test]
fn verify_and_search_fail_on_a_damaged_archive() {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = (dir.path().join("data"), dir.path().join("index"));
    common::small_root(&data, "p", 8, 8);
    assert!(podmap(&["convert", "--data", s(&data), "--out", s(&index)])
        .status
        .success());
    let archive = index.join("p/rag.podmap");
    let mut bytes = std::fs::read(&archive).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xff;
    std::fs::write(&archive, &bytes).unwrap();
    let verify = podmap(&["verify", s(&index)]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(
        text(&verify.stderr).contains("checksum mismatch in the meta section"),
        "{}",
        text(&verify.stderr)
    );
    let inspect = podmap(&["inspect", s(&archive)]);
    assert_eq!(inspect.status.code(), Some(1));
    assert!(text(&inspect.stderr).contains(&archive.display().to_string()));
}

#[test]
fn help_explains_each_command() {
    let help = text(&podmap(&["--help"]).stdout);
    for cmd in ["convert", "search", "inspect", "verify"] {
        assert!(help.contains(cmd), "{help}");
    }
    let convert = text(&podmap(&["convert", "--help"]).stdout);
    assert!(
        convert.contains("atomically") && convert.contains("--force"),
        "{convert}"
    );
}
