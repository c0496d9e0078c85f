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
//! - **binary**: the rows are reduced to bits, the query to 4-bit codes (asymmetric
//!   scoring): a row's estimate is the sum of the query's codes over the components where
//!   the row lies above the corpus mean, i.e. `query · signs` up to a constant. The query is
//!   split into four bit planes, so the sum is four weighted popcounts of `row & plane`
//!   ([`planes`]), which SIMD computes 32 or 64 bytes of bits at a time.
//!
//! Measured recall@10 on the real corpus (`tests/quant.rs`) sets the default oversampling of
//! each mode.
//!
//! Here: the size rules and the passes of a quantized search (code scan, narrowing,
//! rescoring). Beside it: `mode` (the modes and their oversampling), `query` (the query's
//! codes), `candidates` (the code scans), `across` (one search across several matrices),
//! [`kernel`] and [`planes`] (the int8 and sign-bit kernels) and `select` (candidate
//! selection).

mod across;
mod candidates;
pub mod kernel;
mod mode;
pub mod planes;
mod query;
mod select;

/// A small deterministic generator (xorshift) for the kernels' tests, so failures reproduce.
#[cfg(test)]
mod test_rng {
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }
}

pub use across::{top_k_across, top_k_across_by_codes};
pub use mode::{SearchMode, UnknownMode, BINARY_OVERSAMPLE, INT8_OVERSAMPLE};
pub use query::quantize_query;

use super::cores::on_every_core;
use super::scan::{self, Matrix};
use super::{Filter, Hit};
use crate::error::Result;
use select::Best;

/// [`top_k`]'s binary scan keeps at least one row in this many as candidates, whatever the
/// oversampling. Sign bits rank the members of one cluster of similar rows poorly: on the
/// report's generated podcasts (16 clusters of random rows, queries among them) 200
/// candidates of a top-10 gave recall@10 1.000 at 4,000 rows but 0.838 at 16,000 and 0.631
/// at 64,000, while a 32nd of the rows gave 0.988 (×50) and 0.994 (×200). The candidates
/// are rescored on their int8 codes, an eighth of the bytes the binary scan read per row
/// each, so the floor adds at most a quarter to the bytes a search reads.
pub const BINARY_MIN_SHARE: usize = 32;
/// A binary search's candidates are narrowed to `k ×` this many on their int8 codes before
/// the f32 rows are read. Served recall@10 on the report's generated podcasts (16 queries,
/// default oversampling) was the same at 2 as at 4: 1.000 at 4,000 rows, 0.988 at 16,000,
/// 0.994 at 64,000; at 1 it fell to 0.981, 0.944 and 0.963. At 2 a top-10 reads 20 f32 rows
/// (240 KB for 3,072 dims) instead of 40.
pub const NARROW_OVERSAMPLE: u32 = 2;

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
    /// `|mean|²`, which a search across matrices calibrates each matrix's estimates with:
    /// kept by the matrix, so that sixteen podcasts do not cost sixteen dot products of the
    /// mean with itself on every query.
    pub mean_sq: f32,
}

/// A matrix with code sections beside it. `None`: the codes are not available, and the
/// quantized modes scan exactly.
pub trait Quantized: Matrix {
    fn int8(&self) -> Option<Int8Codes<'_>>;
    fn binary(&self) -> Option<BinaryCodes<'_>>;
}

/// Matrices of fewer floats (rows × dims) than this are scanned exactly whatever the mode.
///
/// A quantized search runs two or three passes (code scan, int8 narrowing, rescoring) where
/// the exact scan runs one, and each has a fixed cost (the query quantized, candidates
/// selected and merged). On a small matrix, in the cache, that is as much as the exact scan
/// itself. Measured with `top_k_by_codes` (the codes scanned at every size), top-10, default
/// oversampling, medians of the three timed in turns, on 2 cores (Intel Xeon, family 6 model
/// 167, a KVM guest):
///
/// | matrix | floats | exact | int8 | binary |
/// |---|---:|---:|---:|---:|
/// | corpus, 238 × 384 | 0.09 M | 0.0058 ms | 0.0054 ms | 0.0077 ms |
/// | corpus, 581 × 384 | 0.2 M | 0.012 ms | 0.0095 ms | 0.013 ms |
/// | generated 250 × 3,072 | 0.8 M | 0.080–0.095 ms | 0.027–0.028 ms | 0.033–0.034 ms |
/// | generated 500 × 3,072 | 1.5 M | 0.093 ms | 0.033 ms | 0.041 ms |
/// | generated 1,000 × 3,072 | 3.1 M | 0.19–0.22 ms | 0.059–0.062 ms | 0.051–0.053 ms |
/// | generated 2,000 × 3,072 | 6.1 M | 0.40–0.42 ms | 0.117 ms | 0.063 ms |
/// | generated 4,000 × 3,072 | 12.3 M | 0.93–0.96 ms | 0.25–0.27 ms | 0.091–0.093 ms |
///
/// On the corpus's podcasts int8 gains a tenth or less; from 0.8 M floats on it takes a third
/// of exact's time. (On an AMD EPYC of family 25, before the helpers spun between passes,
/// int8 was level with exact up to 1.5 M floats and 0.77× of it at 0.8 M.) The rule sits at
/// 0.5 M, where int8 wins on both. Binary overtakes int8 between 1.5 M and 3 M floats
/// ([`BINARY_MIN_FLOATS`]).
pub const QUANTIZED_MIN_FLOATS: usize = 1 << 19;

/// Below this many floats (and from [`QUANTIZED_MIN_FLOATS`] on) [`top_k`] answers a binary
/// search by scanning the int8 codes: the sign-bit scan, its narrowing and rescoring cost
/// more than the int8 scan saves reading there (see the table above: at 1.5 M floats int8
/// took 0.033 ms and binary 0.041 ms; at 3.1 M, 0.059–0.062 and 0.051–0.053 ms).
pub const BINARY_MIN_FLOATS: usize = 1 << 21;

/// Rescoring (and a binary search's int8 narrowing) runs on every core when its candidates'
/// rows hold at least this many bytes; below, it stays on the calling thread. The calling
/// thread starts at once and the helpers, awake between passes, join it ([`on_every_core`]),
/// so sharing pays early: measured on 2 cores at 4,000 × 3,072, a binary search (200 int8 rows
/// to narrow, 600 KB, then the f32 rows) took 0.205 ms with both passes on the calling thread
/// and 0.11–0.12 ms with them shared from about 100 KB.
const PARALLEL_RESCORE_BYTES: usize = 128 * 1024;

/// Bytes of candidate rows in one task of a shared rescoring.
const RESCORE_TASK_BYTES: usize = 32 * 1024;

/// Top-`k` by cosine in `mode`, best first, ties to the lower row; exact scores. Filters
/// apply inside the code scan as in the exact one. The mode is what the matrix's size makes
/// fastest within what was asked: a matrix of fewer than [`QUANTIZED_MIN_FLOATS`] floats is
/// scanned exactly in every mode, one of fewer than [`BINARY_MIN_FLOATS`] is scanned on its
/// int8 codes in binary mode, and a binary scan keeps at least a [`BINARY_MIN_SHARE`]th of
/// the rows as candidates.
pub fn top_k<M: Quantized + ?Sized>(
    matrix: &M,
    query: &[f32],
    k: usize,
    filter: &Filter,
    mode: SearchMode,
) -> Result<Vec<Hit>> {
    let mode = served_mode(mode, matrix.rows().len());
    let candidates = served_candidates(mode, k, matrix.embedded_rows());
    by_codes(matrix, query, k, filter, mode, candidates)
}

/// The mode [`top_k`] scans a matrix of `floats` floats in when `mode` is asked for: callers
/// that can scan several matrices exactly in one pass (a cross-podcast search) ask it which
/// ones a quantized mode would scan exactly anyway.
pub fn served_mode(mode: SearchMode, floats: usize) -> SearchMode {
    match mode {
        _ if floats < QUANTIZED_MIN_FLOATS => SearchMode::Exact,
        SearchMode::Binary { .. } if floats < BINARY_MIN_FLOATS => SearchMode::Int8 {
            oversample: INT8_OVERSAMPLE,
        },
        mode => mode,
    }
}

/// Candidates [`top_k`] keeps from the code scan of `rows` rows: `k × oversample`, for binary
/// at least `rows / BINARY_MIN_SHARE`.
fn served_candidates(mode: SearchMode, k: usize, rows: usize) -> usize {
    let candidates = k.saturating_mul(mode.oversample() as usize);
    match mode {
        SearchMode::Binary { .. } => candidates.max(rows / BINARY_MIN_SHARE),
        _ => candidates,
    }
}

/// [`top_k`] without its size rules: a quantized mode scans the codes whatever the matrix's
/// size and keeps `k × oversample` candidates (tests and the benchmark report measure the
/// codes' recall against the oversampling with it).
pub fn top_k_by_codes<M: Quantized + ?Sized>(
    matrix: &M,
    query: &[f32],
    k: usize,
    filter: &Filter,
    mode: SearchMode,
) -> Result<Vec<Hit>> {
    let candidates = k.saturating_mul(mode.oversample() as usize);
    by_codes(matrix, query, k, filter, mode, candidates)
}

/// Top-`k` in `mode` from `candidates` found on the codes.
fn by_codes<M: Quantized + ?Sized>(
    matrix: &M,
    query: &[f32],
    k: usize,
    filter: &Filter,
    mode: SearchMode,
    candidates: usize,
) -> Result<Vec<Hit>> {
    // Asking for (nearly) every row: the code scan would only add work.
    if mode == SearchMode::Exact || candidates >= matrix.embedded_rows() {
        return scan::top_k(matrix, query, k, filter);
    }
    let unit = scan::unit_query(matrix, query)?;
    let found = match mode {
        SearchMode::Int8 { .. } => match matrix.int8() {
            Some(codes) => candidates::int8(matrix, codes, &unit, candidates, filter),
            None => return scan::top_k(matrix, query, k, filter),
        },
        SearchMode::Binary { .. } => match matrix.binary() {
            Some(codes) => {
                let found = candidates::binary(matrix, codes, &unit, candidates, filter);
                narrow_by_int8(matrix.int8(), &unit, found, k)
            }
            None => return scan::top_k(matrix, query, k, filter),
        },
        SearchMode::Exact => unreachable!("answered above"),
    };
    Ok(rescore(matrix, &unit, &found, k))
}

/// The best `k × NARROW_OVERSAMPLE` of the sign-bit candidates by their int8 estimate, when
/// the int8 codes are there and there are more candidates than that.
///
/// An int8 row is a quarter of an f32 row, and the int8 estimate ranks nearly as the exact
/// score does (recall@10 1.000 at oversampling 2 on the corpus), so the many candidates a
/// sign-bit scan needs are narrowed on their int8 codes and only the few best are read as
/// f32 rows: for 3,072 dims, 200 candidates cost 600 KB of codes and 20 f32 rows (240 KB)
/// instead of 200 f32 rows (2.4 MB).
fn narrow_by_int8(
    codes: Option<Int8Codes<'_>>,
    unit: &[f32],
    found: Vec<Hit>,
    k: usize,
) -> Vec<Hit> {
    let keep = k.saturating_mul(NARROW_OVERSAMPLE as usize);
    let Some(codes) = codes else {
        return found;
    };
    if found.len() <= keep {
        return found;
    }
    let query = kernel::Int8Query::new(quantize_query(unit));
    let d = codes.dims;
    let row = |i: usize| &codes.codes[i * d..(i + 1) * d];
    best_of(
        &found,
        keep,
        d,
        |i| codes.scales[i] * query.dot(row(i)) as f32,
        |i| super::kernel::prefetch(row(i)),
    )
}

/// The exact top-`k` of `candidates`, scored with the same kernel as the exact scan.
fn rescore<M: Matrix + ?Sized>(matrix: &M, unit: &[f32], candidates: &[Hit], k: usize) -> Vec<Hit> {
    let d = matrix.row_len();
    let rows = matrix.rows();
    let row = |i: usize| &rows[i * d..(i + 1) * d];
    best_of(
        candidates,
        k,
        d * 4,
        |i| super::kernel::dot(unit, row(i)),
        |i| super::kernel::prefetch(row(i)),
    )
}

/// The best `keep` of `candidates` by `score` (non-finite scores dropped). The candidates'
/// rows (`row_bytes` each) lie anywhere in the matrix, so scoring them is a few hundred
/// scattered reads, which every core shares when they are many bytes
/// ([`PARALLEL_RESCORE_BYTES`]). `prefetch` starts loading a candidate's row, one candidate
/// ahead of `score`.
fn best_of(
    candidates: &[Hit],
    keep: usize,
    row_bytes: usize,
    score: impl Fn(usize) -> f32 + Sync,
    prefetch: impl Fn(usize) + Sync,
) -> Vec<Hit> {
    let score_into = |chunk: &[Hit], top: &mut Best| {
        if let Some(first) = chunk.first() {
            prefetch(first.index as usize);
        }
        for (j, hit) in chunk.iter().enumerate() {
            if let Some(next) = chunk.get(j + 1) {
                prefetch(next.index as usize);
            }
            let s = score(hit.index as usize);
            if s.is_finite() {
                top.push(hit.index, s);
            }
        }
    };
    if candidates.len().saturating_mul(row_bytes) < PARALLEL_RESCORE_BYTES {
        let mut top = Best::new(keep);
        score_into(candidates, &mut top);
        return top.into_sorted();
    }
    let per_task = (RESCORE_TASK_BYTES / row_bytes.max(1)).max(1);
    let tasks = candidates.len().div_ceil(per_task);
    on_every_core(
        tasks,
        || Best::new(keep),
        |t, top| {
            let end = ((t + 1) * per_task).min(candidates.len());
            score_into(&candidates[t * per_task..end], top);
        },
        Best::merge,
    )
    .into_sorted()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_keeps_a_share_of_large_matrices_and_explicit_oversampling_elsewhere() {
        let binary = SearchMode::Binary { oversample: 20 };
        let int8 = SearchMode::Int8 { oversample: 4 };
        // k × oversample while that is more than a 32nd of the rows…
        assert_eq!(served_candidates(binary, 10, 4_000), 200);
        assert_eq!(served_candidates(binary, 10, 6_400), 200);
        // …and a 32nd of the rows past that.
        assert_eq!(served_candidates(binary, 10, 16_000), 500);
        assert_eq!(served_candidates(binary, 10, 64_000), 2_000);
        assert_eq!(
            served_candidates(binary.with_oversample(1), 10, 64_000),
            2_000
        );
        // int8 ranks well at any size: its oversampling alone.
        assert_eq!(served_candidates(int8, 10, 64_000), 40);
        assert_eq!(served_candidates(SearchMode::Exact, 10, 64_000), 10);
    }

    #[test]
    fn small_matrices_are_served_in_the_mode_that_pays() {
        let binary = SearchMode::Binary { oversample: 7 };
        let int8 = SearchMode::Int8 { oversample: 3 };
        let below = QUANTIZED_MIN_FLOATS - 1;
        assert_eq!(served_mode(binary, below), SearchMode::Exact);
        assert_eq!(served_mode(int8, below), SearchMode::Exact);
        let between = BINARY_MIN_FLOATS - 1;
        assert_eq!(
            served_mode(binary, between),
            SearchMode::Int8 {
                oversample: INT8_OVERSAMPLE
            }
        );
        assert_eq!(served_mode(int8, QUANTIZED_MIN_FLOATS), int8);
        assert_eq!(served_mode(binary, BINARY_MIN_FLOATS), binary);
        assert_eq!(
            served_mode(SearchMode::Exact, BINARY_MIN_FLOATS),
            SearchMode::Exact
        );
    }
}
