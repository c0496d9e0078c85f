//! `podmap inspect` and `podmap verify`: look at archives as files — one archive's header and
//! sections, or every archive in an index directory checked in full.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use serde_json::json;

use podmap::archive::format::SectionKind;
use podmap::index::{archive_path, list_archives};
use podmap::{MmapIndex, SearchIndex};

#[derive(Debug, Args)]
pub(super) struct InspectArgs {
    /// An archive: <INDEX_DIR>/<podcast> or the rag.podmap file itself.
    path: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct VerifyArgs {
    /// Index directory written by `podmap convert`.
    index: PathBuf,
}

pub(super) fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let path = if args.path.is_dir() {
        args.path.join(podmap::archive::ARCHIVE_FILE)
    } else {
        args.path.clone()
    };
    let index = MmapIndex::open(&path)?;
    let h = index.header();
    let manifest = index.manifest();
    let sections: Vec<_> = h
        .sections
        .iter()
        .map(|s| json!({"kind": s.kind.name(), "offset": s.offset, "length": s.len, "align": s.align, "checksum": format!("{:016x}", s.checksum)}))
        .collect();
    let info = json!({
        "path": path,
        "podcast": index.podcast_id(),
        "formatVersion": h.version,
        "rkyvFeatures": format!("{:#x}", h.rkyv_features),
        "schemaHash": format!("{:016x}", h.schema_hash),
        "embeddingModel": index.model(),
        "dimensions": h.dims,
        "items": h.item_count,
        "embeddedItems": h.embedded_count,
        "inputBytes": h.input_len,
        "inputFingerprint": format!("{:016x}", h.input_fingerprint),
        "createdAt": manifest.created_at(),
        "updatedAt": manifest.updated_at(),
        "fileBytes": h.file_len(),
        "sections": sections,
    });
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{info}")?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "path            {}", path.display())?;
    writeln!(out, "podcast         {}", index.podcast_id())?;
    writeln!(out, "format version  {}", h.version)?;
    writeln!(
        out,
        "rkyv features   {:#x} (little-endian, aligned, 32-bit offsets)",
        h.rkyv_features
    )?;
    writeln!(out, "schema hash     {:016x}", h.schema_hash)?;
    writeln!(out, "model           {}", index.model().unwrap_or("(none)"))?;
    writeln!(out, "dimensions      {}", h.dims)?;
    writeln!(
        out,
        "items           {} ({} with embeddings)",
        h.item_count, h.embedded_count
    )?;
    writeln!(
        out,
        "input           {} bytes, fingerprint {:016x}",
        h.input_len, h.input_fingerprint
    )?;
    writeln!(out, "file            {} bytes", h.file_len())?;
    for s in &h.sections {
        let what = match s.kind {
            SectionKind::Matrix => "f32 rows, L2-normalised",
            SectionKind::Items => "rkyv item records",
            SectionKind::Episodes => "rkyv episode records",
            SectionKind::Transcripts => "rkyv transcripts",
            SectionKind::Speakers => "rkyv speakers",
            SectionKind::Meta => "rkyv manifest, slots, columns",
            SectionKind::Int8Codes => "int8 codes, per-row scales",
            SectionKind::BinaryCodes => "sign bits around the mean, the mean",
        };
        writeln!(
            out,
            "section {:<11} offset {:>10}  length {:>10}  xxh3 {:016x}  ({what})",
            s.kind.name(),
            s.offset,
            s.len,
            s.checksum
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let archives = list_archives(&args.index)?;
    if archives.is_empty() {
        bail!(
            "no archives in {}: expected <INDEX_DIR>/<podcast>/rag.podmap",
            args.index.display()
        );
    }
    let mut failed = 0;
    // A locked stdout and `?`, not println!: `podmap verify … | head` must end quietly.
    let mut out = std::io::stdout().lock();
    for (podcast, path) in &archives {
        debug_assert_eq!(path, &archive_path(&args.index, podcast));
        match MmapIndex::open(path).and_then(|index| index.verify().map(|()| index)) {
            Ok(index) => writeln!(
                out,
                "{podcast}: ok ({} items, {} dims)",
                index.len(),
                index.dims()
            )?,
            Err(e) => {
                failed += 1;
                writeln!(out, "{podcast}: FAILED")?;
                out.flush()?;
                eprintln!("podmap: error: {e}");
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
