//! The code scans: every row's int8 or sign-bit estimate, in blocks, keeping the best
//! candidates for rescoring.

use super::planes::QueryPlanes;
use super::query::Int8Cosine;
use super::select::Best;
use super::{BinaryCodes, Int8Codes};
use crate::search::cores::on_every_core;
use crate::search::scan::{self, Matrix, Tasks};
use crate::search::{Filter, Hit};

/// The best `candidates` rows by int8 estimate.
pub(super) fn int8<M: Matrix + ?Sized>(
    matrix: &M,
    codes: Int8Codes<'_>,
    unit: &[f32],
    candidates: usize,
    filter: &Filter,
) -> Vec<Hit> {
    let sources = [(matrix, codes, &Int8Cosine::new(unit))];
    int8_across(&sources, &RowList::new(&[matrix]), candidates, filter)
}

/// The best `candidates` rows of several matrices, each with its int8 codes and its query,
/// taken as one list of rows (`list`, see [`scan_codes_across`]). Estimates are of cosines
/// ([`Int8Cosine`]), so those of matrices with different queries (or codes) compare.
pub(super) fn int8_across<M: Matrix + ?Sized>(
    sources: &[(&M, Int8Codes<'_>, &Int8Cosine)],
    list: &RowList,
    candidates: usize,
    filter: &Filter,
) -> Vec<Hit> {
    let matrices: Vec<&M> = sources.iter().map(|&(matrix, _, _)| matrix).collect();
    scan_codes_across(
        &matrices,
        list,
        filter,
        candidates,
        |m, first, accepted, out| {
            let (_, codes, query) = sources[m];
            let d = codes.dims;
            for (r, (&accepted, score)) in accepted.iter().zip(out).enumerate() {
                if accepted {
                    let i = first + r;
                    *score = query.cosine(codes.scales[i], &codes.codes[i * d..(i + 1) * d]);
                }
            }
        },
    )
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
pub(super) const BLOCK_ROWS: usize = 64;

/// Rows of a code scan's task: small enough that the threads share the last of the work
/// evenly, large enough that taking a task is rare.
const CODE_ROWS_PER_TASK: usize = 4 * BLOCK_ROWS;

/// Scores every embedded row that passes `filter` and returns the best `candidates`, in no
/// particular order.
///
/// `estimate(first, accepted, scores)` scores the block of rows `first..first +
/// scores.len()`; `accepted[r]` says whether row `first + r` is embedded and passes the
/// filter (only those scores are read), so an estimate may skip the others. The columns are
/// not read when every row is embedded and the filter takes all.
fn scan_codes<M: Matrix + ?Sized>(
    matrix: &M,
    filter: &Filter,
    candidates: usize,
    estimate: impl Fn(usize, &[bool], &mut [f32]) + Sync,
) -> Vec<Hit> {
    let list = RowList::new(&[matrix]);
    scan_codes_across(
        &[matrix],
        &list,
        filter,
        candidates,
        |_, first, accepted, out| estimate(first, accepted, out),
    )
}

/// [`scan_codes`] over the matrices of `list` as one list of rows (see [`RowList`]): the best
/// `candidates` of the whole list are returned, in no particular order (they are scored
/// again), numbered as `list` numbers rows. `estimate(m, first, accepted, scores)` scores
/// rows of `matrices[m]`, on one scale for every matrix.
///
/// The rows of every matrix are one pool of tasks, cut from the list as a whole
/// ([`Tasks`]), so the cores stay busy across matrices of any size, and each thread keeps its
/// own `candidates` best ([`Best`]), which admit a large share of the first rows and then
/// turn most rows away with one comparison; they are merged at the end.
pub(super) fn scan_codes_across<M: Matrix + ?Sized>(
    matrices: &[&M],
    list: &RowList,
    filter: &Filter,
    candidates: usize,
    estimate: impl Fn(usize, usize, &[bool], &mut [f32]) + Sync,
) -> Vec<Hit> {
    let tasks = Tasks::new(matrices.iter().map(|m| row_count(*m)), CODE_ROWS_PER_TASK);
    let task = |t: usize, top: &mut Best| {
        for &(m, first, end) in tasks.pieces(t) {
            let estimate = |first: usize, accepted: &[bool], out: &mut [f32]| {
                estimate(m, first, accepted, out)
            };
            scan_piece(
                matrices[m],
                first..end,
                list.start(m),
                filter,
                estimate,
                top,
            );
        }
    };
    on_every_core(tasks.len(), || Best::new(candidates), task, Best::merge).into_kept()
}

/// Rows `rows` of `matrix`, in blocks of [`BLOCK_ROWS`]: those that pass `filter` are scored
/// by `estimate` (as in [`scan_codes`]) and offered to `top`, numbered from `offset`.
fn scan_piece<M: Matrix + ?Sized>(
    matrix: &M,
    rows: std::ops::Range<usize>,
    offset: usize,
    filter: &Filter,
    estimate: impl Fn(usize, &[bool], &mut [f32]),
    top: &mut Best,
) {
    let every_row = scan::takes_every_row(matrix, filter);
    let columns = matrix.columns();
    let mut first = rows.start;
    while first < rows.end {
        let len = (rows.end - first).min(BLOCK_ROWS);
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
                    top.push((offset + first + r) as u32, score);
                }
            }
        }
        first += len;
    }
}

/// Rows of `matrix`.
pub(super) fn row_count<M: Matrix + ?Sized>(matrix: &M) -> usize {
    matrix.rows().len() / matrix.row_len().max(1)
}

/// The rows of several matrices as one list, numbered in a `u32`: each matrix's rows begin
/// at a multiple of a code scan's task ([`CODE_ROWS_PER_TASK`] rows), so the matrix of a
/// numbered row is one look-up by its block of rows, not a search. A search across podcasts
/// locates each of its candidates two or three times (narrowing, rescoring, the result).
pub(super) struct RowList {
    starts: Vec<usize>,
    /// The matrix of each block of [`CODE_ROWS_PER_TASK`] numbers.
    of_block: Vec<u32>,
}

impl RowList {
    pub(super) fn new<M: Matrix + ?Sized>(matrices: &[&M]) -> Self {
        let mut starts = Vec::with_capacity(matrices.len());
        let mut of_block = Vec::new();
        for (m, matrix) in matrices.iter().enumerate() {
            starts.push(of_block.len() * CODE_ROWS_PER_TASK);
            let blocks = row_count(*matrix).div_ceil(CODE_ROWS_PER_TASK);
            of_block.extend(std::iter::repeat_n(m as u32, blocks));
        }
        RowList { starts, of_block }
    }

    /// The number of row 0 of matrix `m`.
    pub(super) fn start(&self, m: usize) -> usize {
        self.starts[m]
    }

    /// The matrix and row numbered `g`.
    #[inline]
    pub(super) fn locate(&self, g: u32) -> (usize, usize) {
        let m = self.of_block[g as usize / CODE_ROWS_PER_TASK] as usize;
        (m, g as usize - self.starts[m])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of 2 floats.
    struct Rows(Vec<f32>);

    impl Matrix for Rows {
        fn row_len(&self) -> usize {
            2
        }
        fn rows(&self) -> &[f32] {
            &self.0
        }
        fn embedded_rows(&self) -> usize {
            self.0.len() / 2
        }
        fn columns(&self) -> impl Fn(usize) -> (bool, u32) + Send + Sync + '_ {
            |_| (true, 1)
        }
    }

    /// Tasks cut the list, not each matrix: every row once, in list order, and every task
    /// but the last as long as asked, across matrices of any size (empty ones too).
    #[test]
    fn tasks_cut_the_rows_of_many_matrices_as_one_list() {
        let sizes = [300, 0, 5, 250, 256, 1, 62, 62, 0];
        let tasks = Tasks::new(sizes, CODE_ROWS_PER_TASK);
        let mut seen = Vec::new();
        for t in 0..tasks.len() {
            let rows: usize = tasks.pieces(t).iter().map(|&(_, a, b)| b - a).sum();
            if t + 1 < tasks.len() {
                assert_eq!(rows, CODE_ROWS_PER_TASK, "task {t}");
            } else {
                assert!((1..=CODE_ROWS_PER_TASK).contains(&rows), "last task {rows}");
            }
            for &(m, first, end) in tasks.pieces(t) {
                assert!(first < end, "an empty piece in task {t}");
                seen.extend((first..end).map(|i| (m, i)));
            }
        }
        let want: Vec<(usize, usize)> = sizes
            .iter()
            .enumerate()
            .flat_map(|(m, &n)| (0..n).map(move |i| (m, i)))
            .collect();
        assert_eq!(seen, want);
        let total: usize = sizes.iter().sum();
        assert_eq!(tasks.len(), total.div_ceil(CODE_ROWS_PER_TASK));
        assert_eq!(Tasks::new([], CODE_ROWS_PER_TASK).len(), 0);
    }

    #[test]
    fn the_list_finds_each_row_past_empty_matrices() {
        let a = Rows(vec![0.0; 2 * 300]);
        let (empty, b) = (Rows(Vec::new()), Rows(vec![0.0; 4]));
        let list = RowList::new(&[&a, &empty, &b]);
        // `a` takes two blocks of numbers; the empty matrix none.
        assert_eq!((list.start(0), list.start(2)), (0, 512));
        for (m, rows) in [(0, 300), (2, 2)] {
            for i in 0..rows {
                assert_eq!(list.locate((list.start(m) + i) as u32), (m, i));
            }
        }
    }
}
