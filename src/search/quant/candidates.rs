//! The code scans: every row's int8 or sign-bit estimate, in blocks, keeping the best
//! candidates for rescoring.

use super::planes::QueryPlanes;
use super::query::quantize_query;
use super::select::Best;
use super::{kernel, BinaryCodes, Int8Codes};
use crate::search::cores::on_every_core;
use crate::search::scan::{self, Matrix};
use crate::search::{Filter, Hit};

/// The best `candidates` rows by int8 estimate.
pub(super) fn int8<M: Matrix + ?Sized>(
    matrix: &M,
    codes: Int8Codes<'_>,
    unit: &[f32],
    candidates: usize,
    filter: &Filter,
) -> Vec<Hit> {
    let query = kernel::Int8Query::new(quantize_query(unit));
    let d = codes.dims;
    scan_codes(matrix, filter, candidates, |first, accepted, out| {
        for (r, (&accepted, score)) in accepted.iter().zip(out).enumerate() {
            if accepted {
                let i = first + r;
                let dot = query.dot(&codes.codes[i * d..(i + 1) * d]);
                *score = codes.scales[i] * dot as f32;
            }
        }
    })
}

/// The best `candidates` rows by the asymmetric sign-bit estimate.
pub(super) fn binary<M: Matrix + ?Sized>(
    matrix: &M,
    codes: BinaryCodes<'_>,
    unit: &[f32],
    candidates: usize,
    filter: &Filter,
) -> Vec<Hit> {
    let planes = QueryPlanes::new(unit);
    let s = codes.stride;
    debug_assert_eq!(planes.stride(), s);
    // A block's rows are scored together even when the filter turns some away: bits are
    // cheap, and the kernel is fastest on consecutive rows.
    scan_codes(matrix, filter, candidates, |first, _, out| {
        let mut sums = [0i32; BLOCK_ROWS];
        let sums = &mut sums[..out.len()];
        planes.score_rows(&codes.bits[first * s..(first + out.len()) * s], sums);
        for (score, &sum) in out.iter_mut().zip(sums.iter()) {
            *score = sum as f32;
        }
    })
}

/// Rows a code scan hands to its estimate at once.
const BLOCK_ROWS: usize = 64;

/// Rows of a code scan's task: small enough that the threads share the last of the work
/// evenly, large enough that taking a task is rare.
const CODE_ROWS_PER_TASK: usize = 4 * BLOCK_ROWS;

/// Scores every embedded row that passes `filter` and keeps the best `candidates`.
///
/// `estimate(first, accepted, scores)` scores the block of rows `first..first +
/// scores.len()`; `accepted[r]` says whether row `first + r` is embedded and passes the
/// filter (only those scores are read), so an estimate may skip the others. The columns are
/// not read when every row is embedded and the filter takes all.
///
/// Each thread keeps its own `candidates` best ([`Best`]), which admit a large share of the
/// first rows and then turn most rows away with one comparison; they are merged at the end.
fn scan_codes<M: Matrix + ?Sized>(
    matrix: &M,
    filter: &Filter,
    candidates: usize,
    estimate: impl Fn(usize, &[bool], &mut [f32]) + Sync,
) -> Vec<Hit> {
    let rows = matrix.rows().len() / matrix.row_len().max(1);
    let every_row = scan::takes_every_row(matrix, filter);
    let columns = matrix.columns();
    let task = |task: usize, top: &mut Best| {
        let end = ((task + 1) * CODE_ROWS_PER_TASK).min(rows);
        let mut first = task * CODE_ROWS_PER_TASK;
        while first < end {
            let len = (end - first).min(BLOCK_ROWS);
            let mut accepted = [true; BLOCK_ROWS];
            let accepted = &mut accepted[..len];
            if !every_row {
                for (r, accepted) in accepted.iter_mut().enumerate() {
                    let (embedded, episode) = columns(first + r);
                    *accepted = embedded && filter.accepts(episode);
                }
            }
            if accepted.iter().any(|&a| a) {
                let mut scores = [f32::NAN; BLOCK_ROWS];
                let scores = &mut scores[..len];
                estimate(first, accepted, scores);
                for (r, (&accepted, &score)) in accepted.iter().zip(scores.iter()).enumerate() {
                    if accepted && score.is_finite() {
                        top.push((first + r) as u32, score);
                    }
                }
            }
            first += len;
        }
    };
    let tasks = rows.div_ceil(CODE_ROWS_PER_TASK);
    on_every_core(tasks, || Best::new(candidates), task, Best::merge).into_sorted()
}
