//! Quantized codes of the matrix rows: how they are computed and laid out in their sections.
//!
//! Two compressed copies of the matrix let a search scan fewer bytes and rescore only the best
//! candidates with the f32 rows:
//!
//! - **int8** (`SectionKind::Int8Codes`): each row scaled by its own maximum absolute value to
//!   `[-127, 127]` and rounded, so `row ≈ scale × codes`. A per-row scale keeps the full code
//!   range for every row (one global range would waste bits on rows with small components).
//!   Layout: `item_count × dims` i8 codes, row-major, then (64-aligned) `item_count` f32 scales.
//! - **binary** (`SectionKind::BinaryCodes`): bit `j` of a row is set when component `j` lies
//!   above the corpus mean's. Embeddings of e5-style models share a large common direction, so
//!   plain signs carry little information; signs around the mean do. Layout: `item_count`
//!   rows of `⌈dims/8⌉` bytes (component `j` in bit `j % 8` of byte `j / 8`, unused high bits
//!   zero), then (64-aligned) the mean, `dims` f32.
//!
//! Both are derived from the unit rows exactly as stored in the matrix; rows without an
//! embedding (all zeros) get zero codes and scale 0, and search never reads them.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;

use crate::error::{Error, Result};

/// Largest code magnitude: `-128` is never written, so a code's negation is a code too.
pub const INT8_MAX: f32 = 127.0;

/// Where the parts of a code section lie, from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodesLayout {
    /// Bytes of codes per row.
    pub stride: usize,
    /// Length of the codes, `rows × stride`.
    pub codes_len: usize,
    /// Offset of the trailing f32 array (scales or mean), 64-aligned.
    pub tail_at: usize,
    /// Floats in the trailing array.
    pub tail_len: usize,
}

impl CodesLayout {
    /// The int8 section of `rows` rows of `dims` components.
    pub fn int8(rows: usize, dims: usize) -> Self {
        Self::new(rows, dims, rows)
    }

    /// The binary section of `rows` rows of `dims` components.
    pub fn binary(rows: usize, dims: usize) -> Self {
        Self::new(rows, dims.div_ceil(8), dims)
    }

    fn new(rows: usize, stride: usize, tail_len: usize) -> Self {
        let codes_len = rows * stride;
        CodesLayout {
            stride,
            codes_len,
            tail_at: codes_len.div_ceil(64) * 64,
            tail_len,
        }
    }

    /// The section's length in bytes.
    pub fn len(&self) -> usize {
        self.tail_at + self.tail_len * 4
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Like [`CodesLayout::int8`]/[`CodesLayout::binary`], but `None` when the sizes
    /// overflow (a hostile header).
    pub fn checked(rows: u64, dims: u64, binary: bool) -> Option<Self> {
        let rows = usize::try_from(rows).ok()?;
        let dims = usize::try_from(dims).ok()?;
        let stride = if binary { dims.div_ceil(8) } else { dims };
        let tail_len = if binary { dims } else { rows };
        let codes_len = rows.checked_mul(stride)?;
        let tail_at = codes_len.checked_add(63)? / 64 * 64;
        tail_at.checked_add(tail_len.checked_mul(4)?)?;
        Some(Self::new(rows, stride, tail_len))
    }
}

/// The int8 codes of `row` (written into `codes`, one per component) and their scale.
/// A zero row gets zero codes and scale 0.
pub fn encode_int8(row: &[f32], codes: &mut [i8]) -> f32 {
    let max = row.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        codes.fill(0);
        return 0.0;
    }
    let inv = INT8_MAX / max;
    for (c, &x) in codes.iter_mut().zip(row) {
        *c = (x * inv).round().clamp(-INT8_MAX, INT8_MAX) as i8;
    }
    max / INT8_MAX
}

/// The sign bits of `row − mean` (written into `bits`, `⌈dims/8⌉` bytes).
pub fn encode_binary(row: &[f32], mean: &[f32], bits: &mut [u8]) {
    bits.fill(0);
    for (j, (&x, &m)) in row.iter().zip(mean).enumerate() {
        if x > m {
            bits[j / 8] |= 1 << (j % 8);
        }
    }
}

/// Running mean of the embedded rows, summed in f64.
#[derive(Debug, Clone, Default)]
pub struct MeanAccumulator {
    sum: Vec<f64>,
    count: u64,
}

impl MeanAccumulator {
    pub fn new(dims: usize) -> Self {
        MeanAccumulator {
            sum: vec![0.0; dims],
            count: 0,
        }
    }

    pub fn add(&mut self, row: &[f32]) {
        for (s, &x) in self.sum.iter_mut().zip(row) {
            *s += f64::from(x);
        }
        self.count += 1;
    }

    /// The mean (zeros when no row was added).
    pub fn mean(&self) -> Vec<f32> {
        let n = self.count.max(1) as f64;
        self.sum.iter().map(|&s| (s / n) as f32).collect()
    }
}

/// A failure while reading the matrix back: of the file, or of the visitor.
pub(super) enum ReadBack {
    Io(std::io::Error),
    Visit(Error),
}

impl ReadBack {
    pub(super) fn into_error(self, path: &Path) -> Error {
        match self {
            ReadBack::Io(e) => Error::io(path, e),
            ReadBack::Visit(e) => e,
        }
    }
}

/// Hands every row of the matrix at `offset` in `file` to `visit`, with whether it has an
/// embedding.
pub(super) fn read_rows(
    file: &mut File,
    offset: u64,
    dims: usize,
    embedded: &[bool],
    mut visit: impl FnMut(&[f32], bool) -> Result<()>,
) -> std::result::Result<(), ReadBack> {
    file.seek(SeekFrom::Start(offset)).map_err(ReadBack::Io)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut bytes = vec![0u8; dims * 4];
    let mut row = vec![0f32; dims];
    for &has in embedded {
        std::io::Read::read_exact(&mut reader, &mut bytes).map_err(ReadBack::Io)?;
        for (x, b) in row.iter_mut().zip(bytes.chunks_exact(4)) {
            *x = f32::from_le_bytes(b.try_into().expect("4 bytes"));
        }
        visit(&row, has).map_err(ReadBack::Visit)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_uses_the_full_range_per_row() {
        let mut codes = [0i8; 4];
        let scale = encode_int8(&[0.5, -0.25, 0.0, 0.125], &mut codes);
        assert_eq!(codes, [127, -64, 0, 32]);
        assert!((scale - 0.5 / 127.0).abs() < 1e-9);
        assert_eq!(encode_int8(&[0.0; 4], &mut codes), 0.0);
        assert_eq!(codes, [0; 4]);
    }

    #[test]
    fn binary_bits_are_signs_around_the_mean() {
        let mut bits = [0xffu8; 2];
        let row: Vec<f32> = (0..10).map(|j| j as f32).collect();
        encode_binary(&row, &[4.5; 10], &mut bits);
        assert_eq!(bits, [0b1110_0000, 0b11]);
    }

    #[test]
    fn layouts_align_the_tail() {
        let l = CodesLayout::int8(11, 24);
        assert_eq!((l.codes_len, l.tail_at, l.len()), (264, 320, 364));
        let b = CodesLayout::binary(11, 20);
        assert_eq!(
            (b.stride, b.codes_len, b.tail_at, b.len()),
            (3, 33, 64, 144)
        );
        assert_eq!(CodesLayout::checked(11, 20, true), Some(b));
        assert_eq!(CodesLayout::checked(u64::MAX, 2, false), None);
    }
}
