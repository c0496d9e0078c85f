//! Query vectors from `.npy` files: files written by real numpy read back exactly, damaged or
//! unsupported files refused with the file and the reason, and `podmap search --vector q.npy`
//! answering exactly as the same vectors in JSON.

mod common;

use std::path::{Path, PathBuf};

use podmap::input::npy::read_npy;
use podmap::Error;

use common::{podmap, s, text};

/// `$PODMAP_PYTHON` or `python3`: the interpreter `build.rs` found numpy with.
fn python() -> String {
    std::env::var("PODMAP_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// Runs a Python script with numpy imported as `np` and `out` set to the directory.
fn numpy(out: &Path, script: &str) {
    let status = std::process::Command::new(python())
        .args([
            "-c",
            &format!("import numpy as np\nout = {:?}\n{script}", s(out)),
        ])
        .status()
        .expect("run python");
    assert!(status.success(), "python failed: {script}");
}

/// A hand-built `.npy` file: the given version, header text (padded as numpy pads it) and data.
fn npy_bytes(major: u8, header: &str, data: &[u8]) -> Vec<u8> {
    let prefix = if major == 1 { 10 } else { 12 };
    let mut header = header.to_owned();
    while !(prefix + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend([major, 0]);
    if major == 1 {
        out.extend(u16::try_from(header.len()).unwrap().to_le_bytes());
    } else {
        out.extend(u32::try_from(header.len()).unwrap().to_le_bytes());
    }
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

fn floats(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The reason of an `InvalidInput` error for `path`, asserting that it names the file.
fn refusal(path: &Path) -> String {
    match read_npy(path) {
        Err(Error::InvalidInput {
            path: named,
            reason,
        }) => {
            assert_eq!(named, path);
            reason
        }
        other => panic!("{}: expected a refusal, got {other:?}", path.display()),
    }
}

#[test]
fn hand_built_files_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let values = [1.5f32, -2.0, 0.25, 3.0, 4.0, -0.125];
    let two = write(
        dir.path(),
        "two.npy",
        &npy_bytes(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            &floats(&values),
        ),
    );
    let read = read_npy(&two).unwrap();
    assert_eq!((read.len(), read.dims, read.one_dimensional), (2, 3, false));
    assert_eq!(
        read.rows().collect::<Vec<_>>(),
        [&values[..3], &values[3..]]
    );

    let one = write(
        dir.path(),
        "one.npy",
        &npy_bytes(
            2,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }",
            &floats(&values),
        ),
    );
    let read = read_npy(&one).unwrap();
    assert_eq!((read.len(), read.dims, read.one_dimensional), (1, 6, true));
    assert_eq!(read.as_slice(), values);
}

#[test]
fn damaged_and_unsupported_files_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = floats(&[1.0; 6]);
    let header = |descr: &str, fortran: &str, shape: &str| {
        format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}")
    };
    let good = npy_bytes(1, &header("<f4", "False", "(2, 3)"), &data);
    let mut bad_magic = good.clone();
    bad_magic[1] = b'X';
    let mut bad_version = good.clone();
    bad_version[6] = 4;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "f8.npy",
            npy_bytes(1, &header("<f8", "False", "(2, 3)"), &data),
            "dtype \"<f8\" is not supported",
        ),
        (
            "big.npy",
            npy_bytes(1, &header(">f4", "False", "(2, 3)"), &data),
            "dtype \">f4\" is not supported",
        ),
        (
            "fortran.npy",
            npy_bytes(1, &header("<f4", "True", "(2, 3)"), &data),
            "Fortran order",
        ),
        (
            "three.npy",
            npy_bytes(1, &header("<f4", "False", "(1, 2, 3)"), &data),
            "has 3 dimensions",
        ),
        (
            "scalar.npy",
            npy_bytes(1, &header("<f4", "False", "()"), &data[..4]),
            "has 0 dimensions",
        ),
        (
            "empty.npy",
            npy_bytes(1, &header("<f4", "False", "(0, 3)"), &[]),
            "holds no query vector",
        ),
        (
            "short.npy",
            npy_bytes(1, &header("<f4", "False", "(2, 3)"), &data[..20]),
            "truncated .npy file: shape (2, 3) needs 24 bytes of data, the file has 20",
        ),
        (
            "long.npy",
            npy_bytes(1, &header("<f4", "False", "(2, 3)"), &floats(&[1.0; 7])),
            "4 bytes after the data",
        ),
        (
            "header.npy",
            good[..30].to_vec(),
            "truncated .npy file: ends inside the header",
        ),
        (
            "magic.npy",
            bad_magic,
            "does not start with the \\x93NUMPY magic",
        ),
        ("tiny.npy", b"\x93NU".to_vec(), "does not start with"),
        ("version.npy", bad_version, "version 4.0 is not supported"),
        (
            "keys.npy",
            npy_bytes(1, "{'descr': '<f4', 'shape': (2, 3), }", &data),
            "no 'fortran_order' key",
        ),
    ];
    for (name, bytes, wanted) in cases {
        let path = write(dir.path(), name, &bytes);
        let reason = refusal(&path);
        assert!(reason.contains(wanted), "{name}: {reason}");
    }
    assert!(matches!(
        read_npy(&dir.path().join("missing.npy")),
        Err(Error::Io { .. })
    ));
}

#[test]
#[cfg_attr(
    not(podmap_numpy),
    ignore = "needs python3 with numpy (or PODMAP_PYTHON) when building (see build.rs)"
)]
fn files_written_by_numpy_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    numpy(
        dir.path(),
        r#"
import os
m = (np.arange(5 * 7, dtype='<f4').reshape(5, 7) - 11.5) / 3
np.save(os.path.join(out, 'matrix.npy'), m)
np.save(os.path.join(out, 'row.npy'), m[2])
# Versions 2.0 and 3.0 are what numpy writes for big or non-latin-1 headers; write them directly.
for version in [(2, 0), (3, 0)]:
    with open(os.path.join(out, 'v%d.npy' % version[0]), 'wb') as f:
        np.lib.format.write_array(f, m, version=version)
np.save(os.path.join(out, 'f8.npy'), m.astype('<f8'))
np.save(os.path.join(out, 'big.npy'), m.astype('>f4'))
np.save(os.path.join(out, 'fortran.npy'), np.asfortranarray(m))
np.save(os.path.join(out, 'cube.npy'), np.zeros((2, 3, 4), dtype='<f4'))
m.tofile(os.path.join(out, 'matrix.raw'))
"#,
    );
    let raw = std::fs::read(dir.path().join("matrix.raw")).unwrap();
    let expected: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(expected.len(), 35);
    for name in ["matrix.npy", "v2.npy", "v3.npy"] {
        let read = read_npy(&dir.path().join(name)).unwrap();
        assert_eq!((read.len(), read.dims), (5, 7), "{name}");
        assert_eq!(read.as_slice(), expected, "{name}");
    }
    let row = read_npy(&dir.path().join("row.npy")).unwrap();
    assert!(row.one_dimensional);
    assert_eq!(row.as_slice(), &expected[14..21]);
    for (name, wanted) in [
        ("f8.npy", "dtype \"<f8\""),
        ("big.npy", "dtype \">f4\""),
        ("fortran.npy", "Fortran order"),
        ("cube.npy", "shape (2, 3, 4) has 3 dimensions"),
    ] {
        let reason = refusal(&dir.path().join(name));
        assert!(reason.contains(wanted), "{name}: {reason}");
    }
}

/// `search --json` on the fixture podcast with `--vector file`.
fn search(vector: &Path) -> String {
    let index = common::fixtures_index();
    let out = podmap(&[
        "search",
        "--index",
        s(index),
        "--podcast",
        "demo-raumfahrt",
        "--vector",
        s(vector),
        "--json",
        "--top-k",
        "5",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
#[cfg_attr(
    not(podmap_numpy),
    ignore = "needs python3 with numpy (or PODMAP_PYTHON) when building (see build.rs)"
)]
fn search_reads_npy_queries_as_it_reads_json() {
    let dir = tempfile::tempdir().unwrap();
    let queries =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/data/queries/demo-raumfahrt.json");
    numpy(
        dir.path(),
        &format!(
            r#"
import json, os
q = np.array(json.load(open({:?})), dtype='<f4')
np.save(os.path.join(out, 'q.npy'), q)
np.save(os.path.join(out, 'first.npy'), q[0])
# The same file under another name: recognised by its magic bytes.
np.save(os.path.join(out, 'q.bin.npy'), q)
os.rename(os.path.join(out, 'q.bin.npy'), os.path.join(out, 'q.vectors'))
"#,
            s(&queries)
        ),
    );
    let from_json = search(&queries);
    assert_eq!(from_json.lines().count(), 3, "{from_json}");
    assert!(from_json.contains("\"hits\":[{"), "{from_json}");
    assert_eq!(search(&dir.path().join("q.npy")), from_json);
    assert_eq!(search(&dir.path().join("q.vectors")), from_json);
    let first = search(&dir.path().join("first.npy"));
    assert_eq!(first, format!("{}\n", from_json.lines().next().unwrap()));

    // A refused file fails the command with the file and the reason.
    numpy(
        dir.path(),
        "import os\nnp.save(os.path.join(out, 'f8.npy'), np.zeros((2, 384)))",
    );
    let out = podmap(&[
        "search",
        "--index",
        s(common::fixtures_index()),
        "--podcast",
        "demo-raumfahrt",
        "--vector",
        s(&dir.path().join("f8.npy")),
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("f8.npy") && stderr.contains("dtype \"<f8\" is not supported"),
        "{stderr}"
    );
}
