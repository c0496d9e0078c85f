//! Search over quantized codes, rescored with the f32 rows.
//!
//! A quantized search scans a compressed copy of the matrix (int8 codes: a quarter of its
//! bytes; sign bits: a thirty-second) for the best `k × oversample` candidates, then scores
//! those candidates exactly with the f32 rows and keeps the top `k`. The returned scores are
//! the exact scan's, bit for bit (the same kernel computes them), so a hit has the same score
//! whichever mode found it; what a mode can change is only whether a hit is found (recall).
//! The codes are written by `podmap convert` (see [`crate::archive::codes`]).
//!
//! - **int8**: the unit query is quantized to `[-127, 127]` like the rows, and a row's
//!   estimate is `scale × (query codes · row codes)`, an integer dot product.
//! - **binary**: only the rows are reduced to bits (asymmetric scoring): a row's estimate is
//!   the sum of the query's int8 codes over the components where the row lies above the
//!   corpus mean, i.e. `query · signs` up to a constant. The kernel spreads the bits to byte
//!   masks and sums the selected codes (a table lookup per byte, the alternative, needs
//!   gathers that are slow on many x86 cores).
//!
//! Measured recall@10 on the real corpus (`tests/quant.rs`) sets the default oversampling of
//! each mode.

pub mod kernel;

use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;

use super::scan::{self, Matrix, ROWS_PER_TASK};
use super::topk::TopK;
use super::{Filter, Hit};
use crate::error::Result;

/// Default oversampling of the int8 mode: recall@10 is 1.000 from 2 on the corpus; 4 leaves
/// a margin for other data at a negligible rescoring cost.
pub const INT8_OVERSAMPLE: u32 = 4;
/// Default oversampling of the binary mode (see `tests/quant.rs` for the measured recall).
pub const BINARY_OVERSAMPLE: u32 = 20;

/// How a vector search scans: the f32 matrix, or one of the code sections with rescoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchMode {
    /// Every row scored exactly.
    #[default]
    Exact,
    /// int8 codes scanned for `k × oversample` candidates, rescored exactly.
    Int8 { oversample: u32 },
    /// Sign bits scanned for `k × oversample` candidates, rescored exactly.
    Binary { oversample: u32 },
}

impl SearchMode {
    /// The mode's name: `exact`, `int8` or `binary`.
    pub fn name(self) -> &'static str {
        match self {
            SearchMode::Exact => "exact",
            SearchMode::Int8 { .. } => "int8",
            SearchMode::Binary { .. } => "binary",
        }
    }

    /// The mode named `name` with `oversample` (its default when `None`). Oversampling below
    /// 1 is taken as 1; it means nothing for `exact`.
    pub fn named(name: &str, oversample: Option<u32>) -> std::result::Result<Self, UnknownMode> {
        let mode: SearchMode = name.parse()?;
        Ok(match oversample {
            Some(o) => mode.with_oversample(o),
            None => mode,
        })
    }

    /// This mode with another oversampling (at least 1).
    pub fn with_oversample(self, oversample: u32) -> Self {
        let oversample = oversample.max(1);
        match self {
            SearchMode::Exact => SearchMode::Exact,
            SearchMode::Int8 { .. } => SearchMode::Int8 { oversample },
            SearchMode::Binary { .. } => SearchMode::Binary { oversample },
        }
    }

    /// Candidates per result kept by the code scan (1 for `exact`).
    pub fn oversample(self) -> u32 {
        match self {
            SearchMode::Exact => 1,
            SearchMode::Int8 { oversample } | SearchMode::Binary { oversample } => oversample,
        }
    }
}

impl fmt::Display for SearchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A search mode name that is not `exact`, `int8` or `binary`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown search mode {0:?}: expected exact, int8 or binary")]
pub struct UnknownMode(pub String);

impl FromStr for SearchMode {
    type Err = UnknownMode;

    /// A mode with its default oversampling.
    fn from_str(s: &str) -> std::result::Result<Self, UnknownMode> {
        match s {
            "exact" => Ok(SearchMode::Exact),
            "int8" => Ok(SearchMode::Int8 {
                oversample: INT8_OVERSAMPLE,
            }),
            "binary" => Ok(SearchMode::Binary {
                oversample: BINARY_OVERSAMPLE,
            }),
            other => Err(UnknownMode(other.to_owned())),
        }
    }
}

/// int8 codes of a matrix: `rows × dims` codes and a scale per row (`row ≈ scale × codes`).
#[derive(Debug, Clone, Copy)]
pub struct Int8Codes<'a> {
    pub dims: usize,
    pub codes: &'a [i8],
    pub scales: &'a [f32],
}

/// Sign bits of a matrix's rows around the corpus mean: `rows × stride` bytes, and the mean.
#[derive(Debug, Clone, Copy)]
pub struct BinaryCodes<'a> {
    pub dims: usize,
    pub stride: usize,
    pub bits: &'a [u8],
    pub mean: &'a [f32],
}

/// A matrix with code sections beside it. `None`: the codes are not available, and the
/// quantized modes scan exactly.
pub trait Quantized: Matrix {
    fn int8(&self) -> Option<Int8Codes<'_>>;
    fn binary(&self) -> Option<BinaryCodes<'_>>;
}

/// Top-`k` by cosine in `mode`, best first, ties to the lower row; exact scores. Filters
/// apply inside the code scan as in the exact one.
pub fn top_k<M: Quantized + ?Sized>(
    matrix: &M,
    query: &[f32],
    k: usize,
    filter: &Filter,
    mode: SearchMode,
) -> Result<Vec<Hit>> {
    let candidates = k.saturating_mul(mode.oversample() as usize);
    // Asking for (nearly) every row: the code scan would only add work.
    if mode == SearchMode::Exact || candidates >= matrix.embedded_rows() {
        return scan::top_k(matrix, query, k, filter);
    }
    let unit = scan::unit_query(matrix, query)?;
    let found = match mode {
        SearchMode::Int8 { .. } => match matrix.int8() {
            Some(codes) => int8_candidates(matrix, codes, &unit, candidates, filter),
            None => return scan::top_k(matrix, query, k, filter),
        },
        SearchMode::Binary { .. } => match matrix.binary() {
            Some(codes) => binary_candidates(matrix, codes, &unit, candidates, filter),
            None => return scan::top_k(matrix, query, k, filter),
        },
        SearchMode::Exact => unreachable!("answered above"),
    };
    Ok(rescore(matrix, &unit, &found, k))
}

/// The exact top-`k` of `candidates`, scored with the same kernel as the exact scan. The
/// candidates' rows lie anywhere in the matrix (a few hundred scattered reads from memory), so
/// they are scored on every core.
fn rescore<M: Matrix + ?Sized>(matrix: &M, unit: &[f32], candidates: &[Hit], k: usize) -> Vec<Hit> {
    let d = matrix.row_len();
    let rows = matrix.rows();
    candidates
        .par_chunks(16)
        .map(|chunk| {
            let mut top = TopK::new(k);
            for hit in chunk {
                let i = hit.index as usize;
                let score = super::kernel::dot(unit, &rows[i * d..(i + 1) * d]);
                if score.is_finite() {
                    top.push(hit.index, score);
                }
            }
            top
        })
        .reduce(|| TopK::new(k), TopK::merge)
        .into_sorted()
}

/// The unit query as int8 codes, scaled so its largest component is ±127.
pub fn quantize_query(unit: &[f32]) -> Vec<i8> {
    let max = unit.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        return vec![0; unit.len()];
    }
    let inv = f32::from(kernel::QUERY_CODE_MAX) / max;
    unit.iter()
        .map(|&x| (x * inv).round().clamp(-127.0, 127.0) as i8)
        .collect()
}

/// The best `candidates` rows by int8 estimate.
fn int8_candidates<M: Matrix + ?Sized>(
    matrix: &M,
    codes: Int8Codes<'_>,
    unit: &[f32],
    candidates: usize,
    filter: &Filter,
) -> Vec<Hit> {
    let query = quantize_query(unit);
    let d = codes.dims;
    scan_codes(matrix, filter, candidates, |i| {
        let dot = kernel::dot_i8(&query, &codes.codes[i * d..(i + 1) * d]);
        codes.scales[i] * dot as f32
    })
}

/// The best `candidates` rows by the asymmetric sign-bit estimate.
fn binary_candidates<M: Matrix + ?Sized>(
    matrix: &M,
    codes: BinaryCodes<'_>,
    unit: &[f32],
    candidates: usize,
    filter: &Filter,
) -> Vec<Hit> {
    let query = quantize_query(unit);
    let s = codes.stride;
    scan_codes(matrix, filter, candidates, |i| {
        kernel::masked_sum(&query, &codes.bits[i * s..(i + 1) * s]) as f32
    })
}

/// Scores every embedded row that passes `filter` with `estimate` (in parallel chunks, the
/// columns read beside the codes as in the exact scan) and keeps the best `candidates`.
fn scan_codes<M: Matrix + ?Sized>(
    matrix: &M,
    filter: &Filter,
    candidates: usize,
    estimate: impl Fn(usize) -> f32 + Sync,
) -> Vec<Hit> {
    let rows = matrix.rows().len() / matrix.row_len().max(1);
    let columns = matrix.columns();
    let columns = &columns;
    let tasks = rows.div_ceil(ROWS_PER_TASK);
    (0..tasks)
        .into_par_iter()
        .map(|task| {
            let mut top = TopK::new(candidates);
            let first = task * ROWS_PER_TASK;
            for i in first..(first + ROWS_PER_TASK).min(rows) {
                let (embedded, episode) = columns(i);
                if embedded && filter.accepts(episode) {
                    let score = estimate(i);
                    if score.is_finite() {
                        top.push(i as u32, score);
                    }
                }
            }
            top
        })
        .reduce(|| TopK::new(candidates), TopK::merge)
        .into_sorted()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_with_their_defaults() {
        assert_eq!("exact".parse::<SearchMode>().unwrap(), SearchMode::Exact);
        assert_eq!(
            SearchMode::named("int8", None).unwrap(),
            SearchMode::Int8 {
                oversample: INT8_OVERSAMPLE
            }
        );
        assert_eq!(
            SearchMode::named("binary", Some(0)).unwrap(),
            SearchMode::Binary { oversample: 1 }
        );
        let err = SearchMode::named("fast", None).unwrap_err();
        assert!(err.to_string().contains("exact, int8 or binary"), "{err}");
    }

    #[test]
    fn query_codes_reach_the_full_range() {
        assert_eq!(quantize_query(&[0.5, -0.25, 0.0]), [127, -64, 0]);
        assert_eq!(quantize_query(&[0.0, 0.0]), [0, 0]);
    }
}
