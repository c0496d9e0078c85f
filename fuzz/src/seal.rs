//! Recomputes an archive's checksums after its bytes were changed, so that a mutated archive
//! reaches the checks behind them (bytecheck, the records' own invariants, the views) instead
//! of stopping at the first checksum. Without it nearly every mutation is refused by a
//! checksum and the deeper readers are never exercised.
//!
//! Shared by the fuzz targets and `tests/properties.rs` (included there by path). Safe code
//! only: slot positions inside the meta record are found from the addresses rkyv hands out.

use podmap::archive::format::HEADER_SIZE;
use podmap::archive::records::{ArchivedPodcastRecord, ArchivedSlot};
use podmap::archive::MAGIC;
use rkyv::util::AlignedVec;
use xxhash_rust::xxh3::xxh3_64;

const SECTIONS_AT: usize = 336;
const SECTION_ENTRY: usize = 32;
const MAX_SECTIONS: usize = 16;
const CHECKSUM_AT: usize = HEADER_SIZE - 8;
/// Section kinds as the header numbers them.
const META: u32 = 2;
const ITEMS: u32 = 3;
const EPISODES: u32 = 4;
const TRANSCRIPTS: u32 = 5;
const SPEAKERS: u32 = 6;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The byte range of each section the table names (kind, range), clipped to none when it
/// does not lie inside the file.
fn sections(b: &[u8]) -> Vec<(u32, usize, std::ops::Range<usize>)> {
    let count = (u32_at(b, 36) as usize).min(MAX_SECTIONS);
    (0..count)
        .filter_map(|i| {
            let at = SECTIONS_AT + i * SECTION_ENTRY;
            let (offset, len) = (u64_at(b, at + 8), u64_at(b, at + 16));
            let end = offset.checked_add(len)?;
            (end <= b.len() as u64).then(|| (u32_at(b, at), at, offset as usize..end as usize))
        })
        .collect()
}

/// Rewrites every record slot's checksum in the meta record, every section checksum and the
/// header checksum of `bytes` to match its current contents. Leaves alone whatever cannot be
/// located (no magic, a short file, a meta record rkyv does not accept).
pub fn reseal(bytes: &[u8]) -> AlignedVec {
    let mut b = AlignedVec::with_capacity(bytes.len());
    b.extend_from_slice(bytes);
    if b.len() < HEADER_SIZE || b[..8] != MAGIC {
        return b;
    }
    let table = sections(&b);
    let range_of = |kind| {
        table
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map(|(_, _, r)| r.clone())
    };
    let mut writes: Vec<(usize, u64)> = Vec::new();
    if let Some(meta) = range_of(META) {
        if let Ok(record) = rkyv::access::<ArchivedPodcastRecord, rkyv::rancor::Error>(&b[meta]) {
            let base = b.as_ptr() as usize;
            let checksum_field = std::mem::offset_of!(ArchivedSlot, checksum);
            let mut seal = |slot: &ArchivedSlot, section: Option<std::ops::Range<usize>>| {
                let Some(section) = section else { return };
                let (offset, len) = (slot.offset.to_native(), slot.len.to_native());
                let Some(end) = offset.checked_add(len) else {
                    return;
                };
                // An empty slot means "none" (no transcript, no speakers index): no checksum.
                if len == 0 || end > section.len() as u64 {
                    return;
                }
                let start = section.start + offset as usize;
                let sum = xxh3_64(&b[start..start + len as usize]);
                let at = slot as *const ArchivedSlot as usize - base + checksum_field;
                writes.push((at, sum));
            };
            for slot in record.items.iter() {
                seal(slot, range_of(ITEMS));
            }
            for slot in record.episodes.iter() {
                seal(slot, range_of(EPISODES));
            }
            for slot in record.transcripts.iter() {
                seal(slot, range_of(TRANSCRIPTS));
            }
            seal(&record.speakers, range_of(SPEAKERS));
        }
    }
    for (at, sum) in writes {
        b[at..at + 8].copy_from_slice(&sum.to_le_bytes());
    }
    // The meta record's bytes changed above, so section checksums come after the slots.
    for (_, entry, range) in sections(&b) {
        let sum = xxh3_64(&b[range]);
        b[entry + 24..entry + 32].copy_from_slice(&sum.to_le_bytes());
    }
    let sum = xxh3_64(&b[..CHECKSUM_AT]);
    b[CHECKSUM_AT..HEADER_SIZE].copy_from_slice(&sum.to_le_bytes());
    b
}
