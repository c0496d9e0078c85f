//! Exact scans over a matrix of unit rows: top-k, every score, the best hits of each episode,
//! and many queries (or many matrices) in one pass.
//!
//! A scan reads every row once, in parallel chunks, and scores it with the SIMD kernel; items
//! without an embedding and rows the filter rejects are skipped by looking at two columns
//! kept beside the matrix, without touching the row. Each task folds its rows into its own
//! accumulator (a bounded heap, a list, or per-episode best hits), so scoring a row
//! allocates nothing.

use rayon::prelude::*;

use super::best::{EpisodeBest, PerEpisode};
use super::cores::on_every_core;
use super::topk::TopK;
use super::{kernel, query_norm, EpisodeFilter, Filter, Hit};
use crate::error::{Error, Result};

/// Rows scored by one task of a parallel scan: big enough that scheduling is noise, small
/// enough that both cores stay busy on a few thousand rows.
pub const ROWS_PER_TASK: usize = 256;

/// A row-major matrix of L2-normalised rows (zero rows for items without an embedding) and
/// the per-row columns a scan reads.
pub trait Matrix: Sync {
    /// Floats per row.
    fn row_len(&self) -> usize;
    /// `rows × row_len` floats.
    fn rows(&self) -> &[f32];
    /// Rows that have an embedding.
    fn embedded_rows(&self) -> usize;
    /// For row `i`: whether it has an embedding (a zero row does not), and its episode
    /// number. Read from columns beside the matrix, so a filtered-out row is never touched;
    /// returned as a closure so the columns are located once per scan, not once per row.
    fn columns(&self) -> impl Fn(usize) -> (bool, u32) + Send + Sync + '_;
}

/// `query` scaled to unit length, after checking it against the matrix.
pub(crate) fn unit_query<M: Matrix + ?Sized>(matrix: &M, query: &[f32]) -> Result<Vec<f32>> {
    let norm = query_norm(query, matrix.row_len())?;
    if matrix.embedded_rows() == 0 {
        return Err(Error::NoEmbeddings);
    }
    let inv = 1.0 / norm;
    Ok(query.iter().map(|&x| (f64::from(x) * inv) as f32).collect())
}

/// Exact top-`k` by cosine, best first; ties go to the lower row.
pub fn top_k<M: Matrix + ?Sized>(
    matrix: &M,
    query: &[f32],
    k: usize,
    filter: &Filter,
) -> Result<Vec<Hit>> {
    let unit = unit_query(matrix, query)?;
    let top = fold(
        matrix,
        &unit,
        filter,
        || TopK::new(k),
        TopK::push,
        TopK::merge,
    );
    Ok(top.into_sorted())
}

/// The sum of every float of `matrix`, read in the exact scan's tasks on the exact scan's
/// threads ([`on_every_core`]): what reading the matrix alone costs, the limit the benchmark
/// report measures the exact scan against.
pub fn read_all<M: Matrix + ?Sized>(matrix: &M) -> f32 {
    let rows = matrix.rows();
    let task = matrix.row_len().max(1) * ROWS_PER_TASK;
    on_every_core(
        rows.len().div_ceil(task),
        || 0.0f32,
        |t, sum| *sum += kernel::sum(&rows[t * task..((t + 1) * task).min(rows.len())]),
        |a, b| a + b,
    )
}

/// Every embedded row that passes `filter`, scored, best first (ties to the lower row).
pub fn score_all<M: Matrix + ?Sized>(
    matrix: &M,
    query: &[f32],
    filter: &Filter,
) -> Result<Vec<Hit>> {
    let unit = unit_query(matrix, query)?;
    // Every row is kept, so a heap would only add work: collect, then sort once.
    let push = |hits: &mut Vec<Hit>, index, score| hits.push(Hit { index, score });
    let mut hits = fold(matrix, &unit, filter, Vec::new, push, |mut a, b| {
        a.extend(b);
        a
    });
    sort_best_first(&mut hits);
    Ok(hits)
}

/// [`score_all`] for several queries in one pass over the matrix: each row is read from
/// memory once and scored against every query while it is in cache. The scan is bound by
/// memory bandwidth, so concurrent searches that share a pass cost little more than one.
/// Results are in query order.
pub fn score_all_batch<M: Matrix + ?Sized>(
    matrix: &M,
    queries: &[&[f32]],
    filter: &Filter,
) -> Result<Vec<Vec<Hit>>> {
    let units = queries
        .iter()
        .map(|q| unit_query(matrix, q))
        .collect::<Result<Vec<_>>>()?;
    let init = || vec![Vec::new(); units.len()];
    let push = |acc: &mut Vec<Vec<Hit>>, row: &[f32], index: u32| {
        for (hits, unit) in acc.iter_mut().zip(&units) {
            let score = kernel::dot(unit, row);
            if score.is_finite() {
                hits.push(Hit { index, score });
            }
        }
    };
    let per_task: Vec<Vec<Vec<Hit>>> = rows_in_parallel(matrix, filter, init, push).collect();
    let mut results: Vec<Vec<Hit>> = vec![Vec::new(); units.len()];
    for task in per_task {
        for (all, hits) in results.iter_mut().zip(task) {
            all.extend(hits);
        }
    }
    results.iter_mut().for_each(|hits| sort_best_first(hits));
    Ok(results)
}

/// The best hits of every episode with an embedded item, scored against `query` (episodes
/// in no particular order, their `source` 0): what ranking episodes needs, without a hit per
/// item. See [`super::best`].
pub fn best_per_episode<M: Matrix + ?Sized>(matrix: &M, query: &[f32]) -> Result<Vec<EpisodeBest>> {
    let unit = unit_query(matrix, query)?;
    let mut all = episode_pass(&[(matrix, vec![(0, unit)])], 1);
    Ok(all.pop().map(PerEpisode::into_episodes).unwrap_or_default())
}

/// [`best_per_episode`] for several queries in one pass over the matrix (as
/// [`score_all_batch`]), results in query order.
pub fn best_per_episode_batch<M: Matrix + ?Sized>(
    matrix: &M,
    queries: &[&[f32]],
) -> Result<Vec<Vec<EpisodeBest>>> {
    let units = queries
        .iter()
        .enumerate()
        .map(|(q, query)| Ok((q, unit_query(matrix, query)?)))
        .collect::<Result<Vec<_>>>()?;
    let all = episode_pass(&[(matrix, units)], queries.len());
    Ok(all.into_iter().map(PerEpisode::into_episodes).collect())
}

/// [`best_per_episode`] over several matrices, each with its own query, in one parallel pass:
/// the chunks of every matrix are one pool of work, so the cores stay busy across matrices of
/// any size and the results are merged once. Each episode's `source` is its matrix's place in
/// `sources`.
pub fn best_per_episode_across<M: Matrix + ?Sized>(
    sources: &[(&M, &[f32])],
) -> Result<Vec<EpisodeBest>> {
    let jobs = sources
        .iter()
        .map(|&(matrix, query)| Ok((matrix, vec![(0, unit_query(matrix, query)?)])))
        .collect::<Result<Vec<_>>>()?;
    let mut all = episode_pass(&jobs, 1);
    Ok(all.pop().map(PerEpisode::into_episodes).unwrap_or_default())
}

/// The tasks of a parallel pass over several matrices: `per_task` consecutive rows each (the
/// last fewer) of the matrices taken as one list, a task taking the end of one matrix and the
/// start of the next where they meet, so that many small matrices are cut into the same tasks
/// as one matrix of all their rows.
///
/// Cut per matrix instead, tasks followed the matrices' sizes, and on 2 cores that cost a
/// search of small matrices a fifth to a half of its time: 4 archives of 250 × 3,072 in
/// turns with one of 1,000 × 3,072, warm caches, per-query medians, searched as one list
/// took 1.16–1.18× the one archive's time exact, 1.52× int8 and 1.54× binary (16 archives
/// of 62: 1.25×, 1.68×, 1.60×). Cut from the list: 1.06×, 1.01–1.06× and 1.03× (16 of 62:
/// 1.06×, 0.98×, 1.01×). With one core the two cuts took the same time, and so did 4 slices
/// of one matrix in memory cut per slice when the slices were 256 rows long; 250-row slices
/// took 1.2× as long: the cut made the difference, not the data or the work. Why a cut at 250
/// rows costs more on two cores than one at 256 is not established.
pub(crate) struct Tasks {
    /// `(matrix, first row, end row)`, in list order.
    pieces: Vec<(usize, usize, usize)>,
    /// Where each task's pieces start in `pieces`, and the end of the last.
    starts: Vec<usize>,
}

impl Tasks {
    /// Tasks over matrices of `rows` rows each, in that order.
    pub(crate) fn new(rows: impl IntoIterator<Item = usize>, per_task: usize) -> Self {
        let mut pieces = Vec::new();
        let mut starts = Vec::new();
        let mut room = 0;
        for (m, rows) in rows.into_iter().enumerate() {
            let mut first = 0;
            while first < rows {
                if room == 0 {
                    starts.push(pieces.len());
                    room = per_task.max(1);
                }
                let len = (rows - first).min(room);
                pieces.push((m, first, first + len));
                first += len;
                room -= len;
            }
        }
        starts.push(pieces.len());
        Tasks { pieces, starts }
    }

    pub(crate) fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// Task `t`'s pieces: `(matrix, first row, end row)`.
    pub(crate) fn pieces(&self, t: usize) -> &[(usize, usize, usize)] {
        &self.pieces[self.starts[t]..self.starts[t + 1]]
    }
}

/// The queries of one matrix in an [`episode_pass`]: `(output, unit query)`.
type Queries = Vec<(usize, Vec<f32>)>;

/// Scores the embedded rows of every matrix of `jobs` against its queries (`(output, unit
/// query)`) in one parallel pass, folding the finite scores into one [`PerEpisode`] per
/// output, keyed by the matrix's place in `jobs` and the row's episode.
///
/// Work is split into tasks of [`ROWS_PER_TASK`] rows of all the matrices as one list
/// ([`Tasks`]); each thread folds the tasks it takes into its own accumulators
/// ([`on_every_core`]), merged at the end. Rows are scored one at a time in order, so each
/// task reads its rows as one sequential stream (see [`kernel`]).
fn episode_pass<M: Matrix + ?Sized>(jobs: &[(&M, Queries)], outputs: usize) -> Vec<PerEpisode> {
    let tasks = Tasks::new(
        jobs.iter()
            .map(|(matrix, _)| matrix.rows().len() / matrix.row_len().max(1)),
        ROWS_PER_TASK,
    );
    let init = || {
        (0..outputs)
            .map(|_| PerEpisode::default())
            .collect::<Vec<_>>()
    };
    on_every_core(
        tasks.len(),
        init,
        |t, acc| {
            for &(j, first, end) in tasks.pieces(t) {
                let (matrix, queries) = &jobs[j];
                let source = j as u32;
                let d = matrix.row_len().max(1);
                let rows = &matrix.rows()[first * d..end * d];
                let columns = matrix.columns();
                for (offset, row) in rows.chunks_exact(d).enumerate() {
                    let (embedded, episode) = columns(first + offset);
                    if !embedded {
                        continue;
                    }
                    for (q, unit) in queries {
                        let s = kernel::dot(unit, row);
                        if s.is_finite() {
                            acc[*q].push(source, episode, (first + offset) as u32, s);
                        }
                    }
                }
            }
        },
        |a, b| a.into_iter().zip(b).map(|(a, b)| a.merge(b)).collect(),
    )
}

/// Whether `filter` takes every row of `matrix` (all have an embedding and it takes all
/// episodes): a scan then need not read the columns at all.
pub(crate) fn takes_every_row<M: Matrix + ?Sized>(matrix: &M, filter: &Filter) -> bool {
    let rows = matrix.rows().len() / matrix.row_len().max(1);
    matches!(filter.episodes, EpisodeFilter::All) && matrix.embedded_rows() == rows
}

fn sort_best_first(hits: &mut [Hit]) {
    hits.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
}

/// Scores every row that passes `filter` against `unit` and folds the finite scores into an
/// accumulator per thread, which are then merged.
///
/// Rows are scored one at a time in order, so each task reads its rows as one sequential
/// stream (see [`kernel`]). When every row has an embedding and the filter takes all of
/// them, the columns are not read at all; otherwise a rejected row is never touched.
fn fold<M: Matrix + ?Sized, A: Send>(
    matrix: &M,
    unit: &[f32],
    filter: &Filter,
    init: impl Fn() -> A + Sync + Send,
    push: impl Fn(&mut A, u32, f32) + Sync + Send,
    merge: impl Fn(A, A) -> A + Sync + Send,
) -> A {
    let d = matrix.row_len().max(1);
    let every_row = takes_every_row(matrix, filter);
    let columns = matrix.columns();
    let rows = matrix.rows();
    let tasks = (rows.len() / d).div_ceil(ROWS_PER_TASK);
    on_every_core(
        tasks,
        init,
        |task, acc| {
            let first = task * ROWS_PER_TASK;
            let end = ((first + ROWS_PER_TASK) * d).min(rows.len());
            for (offset, row) in rows[first * d..end].chunks_exact(d).enumerate() {
                let i = first + offset;
                if !every_row {
                    let (embedded, episode) = columns(i);
                    if !(embedded && filter.accepts(episode)) {
                        continue;
                    }
                }
                let score = kernel::dot(unit, row);
                if score.is_finite() {
                    push(acc, i as u32, score);
                }
            }
        },
        merge,
    )
}

/// The rows with an embedding that pass `filter`, handed to `visit` in parallel chunks of
/// [`ROWS_PER_TASK`], one accumulator per chunk.
fn rows_in_parallel<'m, M: Matrix + ?Sized, A: Send>(
    matrix: &'m M,
    filter: &'m Filter,
    init: impl Fn() -> A + Sync + Send + 'm,
    visit: impl Fn(&mut A, &[f32], u32) + Sync + Send + 'm,
) -> impl ParallelIterator<Item = A> + 'm {
    let d = matrix.row_len().max(1);
    let columns = matrix.columns();
    matrix
        .rows()
        .par_chunks(d * ROWS_PER_TASK)
        .enumerate()
        .map(move |(task, rows)| {
            let mut acc = init();
            let first = task * ROWS_PER_TASK;
            for (offset, row) in rows.chunks_exact(d).enumerate() {
                let i = first + offset;
                let (embedded, episode) = columns(i);
                if embedded && filter.accepts(episode) {
                    visit(&mut acc, row, i as u32);
                }
            }
            acc
        })
}
