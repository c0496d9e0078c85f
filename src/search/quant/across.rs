//! One quantized search across several matrices, each with its own query: a cross-podcast
//! search of many podcasts as one code scan, one rescoring and one merged top-k.
//!
//! Searched one after another, podcasts cost a search each: their fixed costs (the query's
//! codes, waking the cores, selecting and merging candidates, three times over for a binary
//! search) add up, small ones are each too small for their codes to pay
//! ([`super::QUANTIZED_MIN_FLOATS`]) and are scanned exactly, and each large one keeps
//! `k × oversample` candidates of its own. Taken together, their rows are one list: the size
//! rules apply to the list, its codes are scanned in one pass, and its best candidates, as
//! many as one matrix of that size keeps, are narrowed and rescored in one more.
//!
//! Estimates from different matrices must compare for one list of candidates to be fair to
//! all. int8 estimates do: each is a cosine up to its query's quantization step, which is
//! known ([`super::query::int8_step`]). A sign-bit estimate is a sum of query codes over the
//! components where the row lies above its own matrix's mean, which says nothing of the same
//! sum in another matrix; [`Calibration`] turns it into an estimate of the cosine.

use std::collections::HashMap;

use super::candidates::{self, scan_codes_across, RowList};
use super::planes::{self, QueryPlanes};
use super::query::Int8Cosine;
use super::select;
use super::{
    best_of, served_candidates, served_mode, BinaryCodes, Int8Codes, Quantized, SearchMode,
    NARROW_OVERSAMPLE,
};
use crate::error::Result;
use crate::search::scan::{self, Matrix};
use crate::search::{kernel, Filter, Hit};

/// The top `k` rows by cosine across `sources` (each a matrix and its query), best first, as
/// `(place of the matrix in sources, hit)`, ties to the earlier matrix and then the lower
/// row. Scores are exact, as [`super::top_k`]'s are. The mode and the number of candidates
/// are those [`super::top_k`] would take for one matrix of all the rows; when a matrix lacks
/// the codes, or the candidates would be (nearly) every row, every row is scored exactly.
pub fn top_k_across<M: Quantized + ?Sized>(
    sources: &[(&M, &[f32])],
    k: usize,
    mode: SearchMode,
) -> Result<Vec<(u32, Hit)>> {
    let floats: usize = sources.iter().map(|(m, _)| m.rows().len()).sum();
    let rows: usize = sources.iter().map(|(m, _)| m.embedded_rows()).sum();
    let mode = served_mode(mode, floats);
    by_codes_across(sources, k, mode, served_candidates(mode, k, rows))
}

/// [`top_k_across`] without its size rules: a quantized mode scans the codes whatever the
/// rows' number and keeps `k × oversample` candidates (tests measure the estimates' recall
/// across matrices with it).
pub fn top_k_across_by_codes<M: Quantized + ?Sized>(
    sources: &[(&M, &[f32])],
    k: usize,
    mode: SearchMode,
) -> Result<Vec<(u32, Hit)>> {
    by_codes_across(
        sources,
        k,
        mode,
        k.saturating_mul(mode.oversample() as usize),
    )
}

fn by_codes_across<M: Quantized + ?Sized>(
    sources: &[(&M, &[f32])],
    k: usize,
    mode: SearchMode,
    candidates: usize,
) -> Result<Vec<(u32, Hit)>> {
    let units = PerQuery::units(sources)?;
    let matrices: Vec<&M> = sources.iter().map(|&(matrix, _)| matrix).collect();
    let list = RowList::new(&matrices);
    let embedded: usize = matrices.iter().map(|m| m.embedded_rows()).sum();
    let int8: Option<Vec<Int8Codes>> = matrices.iter().map(|m| m.int8()).collect();
    let binary: Option<Vec<BinaryCodes>> = matrices.iter().map(|m| m.binary()).collect();
    let row = |g: u32| {
        let (m, i) = list.locate(g);
        let d = matrices[m].row_len();
        (m, &matrices[m].rows()[i * d..(i + 1) * d])
    };
    let rescore = |found: &[Hit]| {
        let row_bytes = matrices.iter().map(|m| m.row_len() * 4).max().unwrap_or(0);
        best_of(
            found,
            k,
            row_bytes,
            |g| {
                let (m, row) = row(g as u32);
                kernel::dot(units.of(m), row)
            },
            |g| kernel::prefetch(row(g as u32).1),
        )
    };
    let int8_queries = || units.map(|unit| Int8Cosine::new(unit));
    let hits = match (mode, int8, binary) {
        _ if candidates >= embedded => exact(&matrices, &list, &units, k),
        (SearchMode::Int8 { .. }, Some(int8), _) => rescore(&int8_candidates(
            &matrices,
            &list,
            &int8,
            &int8_queries(),
            candidates,
        )),
        (SearchMode::Binary { .. }, int8, Some(binary)) => {
            let found = binary_candidates(&matrices, &list, &binary, &units, candidates);
            let keep = k.saturating_mul(NARROW_OVERSAMPLE as usize);
            match int8 {
                Some(int8) if found.len() > keep => {
                    rescore(&narrow(&list, &int8, &int8_queries(), &found, keep))
                }
                _ => rescore(&found),
            }
        }
        _ => exact(&matrices, &list, &units, k),
    };
    Ok(hits
        .into_iter()
        .map(|hit| {
            let (m, index) = list.locate(hit.index);
            let index = index as u32;
            (m as u32, Hit { index, ..hit })
        })
        .collect())
}

/// The exact top `k` of the list, best first.
fn exact<M: Matrix + ?Sized>(
    matrices: &[&M],
    list: &RowList,
    units: &PerQuery<Vec<f32>>,
    k: usize,
) -> Vec<Hit> {
    let mut hits = scan_codes_across(
        matrices,
        list,
        &Filter::all(),
        k,
        |m, first, accepted, out| {
            let d = matrices[m].row_len();
            let rows = matrices[m].rows();
            for (r, (&accepted, out)) in accepted.iter().zip(out).enumerate() {
                if accepted {
                    let i = first + r;
                    *out = kernel::dot(units.of(m), &rows[i * d..(i + 1) * d]);
                }
            }
        },
    );
    hits.sort_unstable_by(select::best_first);
    hits
}

/// The best `candidates` of the list by int8 estimate of the cosine.
fn int8_candidates<M: Matrix + ?Sized>(
    matrices: &[&M],
    list: &RowList,
    int8: &[Int8Codes],
    queries: &PerQuery<Int8Cosine>,
    candidates: usize,
) -> Vec<Hit> {
    let sources: Vec<(&M, Int8Codes, &Int8Cosine)> = matrices
        .iter()
        .zip(int8)
        .enumerate()
        .map(|(m, (&matrix, &codes))| (matrix, codes, queries.of(m)))
        .collect();
    candidates::int8_across(&sources, list, candidates, &Filter::all())
}

/// The best `candidates` of the list by sign-bit estimate, calibrated to a cosine per matrix.
fn binary_candidates<M: Matrix + ?Sized>(
    matrices: &[&M],
    list: &RowList,
    binary: &[BinaryCodes],
    units: &PerQuery<Vec<f32>>,
    candidates: usize,
) -> Vec<Hit> {
    let planes = units.map(|unit| {
        let codes = planes::quantize(unit);
        let sum: i32 = codes.iter().map(|&c| i32::from(c)).sum();
        let step = super::query::code_step(unit, planes::QUERY_CODE_MAX);
        let planes = QueryPlanes::from_codes(&codes, planes::Kernel::detect());
        (planes, sum, step)
    });
    let calibrations: Vec<Calibration> = binary
        .iter()
        .enumerate()
        .map(|(m, codes)| {
            let &(_, sum, step) = planes.of(m);
            Calibration::new(units.of(m), sum, step, codes.mean, codes.mean_sq)
        })
        .collect();
    scan_codes_across(
        matrices,
        list,
        &Filter::all(),
        candidates,
        |m, first, _, out| {
            let s = binary[m].stride;
            let mut sums = [0i32; candidates::BLOCK_ROWS];
            let sums = &mut sums[..out.len()];
            let bits = &binary[m].bits[first * s..(first + out.len()) * s];
            planes.of(m).0.score_rows(bits, sums);
            for (out, &sum) in out.iter_mut().zip(sums.iter()) {
                *out = calibrations[m].cosine(sum);
            }
        },
    )
}

/// The best `keep` of `found` by int8 estimate of the cosine (see [`super::narrow_by_int8`]).
fn narrow(
    list: &RowList,
    int8: &[Int8Codes],
    queries: &PerQuery<Int8Cosine>,
    found: &[Hit],
    keep: usize,
) -> Vec<Hit> {
    let code_row = |g: usize| {
        let (m, i) = list.locate(g as u32);
        let d = int8[m].dims;
        (m, i, &int8[m].codes[i * d..(i + 1) * d])
    };
    let row_bytes = int8.iter().map(|c| c.dims).max().unwrap_or(0);
    best_of(
        found,
        keep,
        row_bytes,
        |g| {
            let (m, i, row) = code_row(g);
            queries.of(m).cosine(int8[m].scales[i], row)
        },
        |g| kernel::prefetch(code_row(g).2),
    )
}

/// Something made of each matrix's query, once per query that several matrices share: a
/// cross-podcast search asks every podcast embedded with one model the same query, and
/// making a 768-dimension query's unit vector and codes takes microseconds, which sixteen
/// podcasts would pay sixteen times.
struct PerQuery<T> {
    made: Vec<T>,
    /// For each matrix, which of `made` is its query's.
    of: Vec<usize>,
}

impl PerQuery<Vec<f32>> {
    /// Each source's query scaled to unit length, once per query slice (the same memory)
    /// that sources of the same width share.
    fn units<M: Matrix + ?Sized>(sources: &[(&M, &[f32])]) -> Result<Self> {
        let mut made = Vec::new();
        let mut of = Vec::with_capacity(sources.len());
        let mut seen: HashMap<(usize, usize, usize), usize> = HashMap::new();
        for &(matrix, query) in sources {
            let key = (query.as_ptr() as usize, query.len(), matrix.row_len());
            match seen.get(&key) {
                // The same query of the same width: only the matrix's own check is left.
                Some(&unit) if matrix.embedded_rows() > 0 => of.push(unit),
                _ => {
                    let unit = scan::unit_query(matrix, query)?;
                    seen.insert(key, made.len());
                    of.push(made.len());
                    made.push(unit);
                }
            }
        }
        Ok(PerQuery { made, of })
    }
}

impl<T> PerQuery<T> {
    /// `make` of each distinct query's `T`.
    fn map<U>(&self, make: impl Fn(&T) -> U) -> PerQuery<U> {
        PerQuery {
            made: self.made.iter().map(make).collect(),
            of: self.of.clone(),
        }
    }

    /// Matrix `m`'s.
    fn of(&self, m: usize) -> &T {
        &self.made[self.of[m]]
    }
}

/// A matrix's sign-bit estimates as estimates of the cosine, so that they compare with those
/// of other matrices.
///
/// A row's bits say on which side of its matrix's mean `m` each component lies. Taking every
/// component at a typical distance `α` from the mean, `x ≈ m + α·s` (`s_j = ±1`), so
/// `q·x ≈ q·m + α·(q·s)`; with the query as 4-bit codes `c ≈ q / step`,
/// `q·s ≈ step·(2·Σ_{j ∈ row} c_j − Σ_j c_j)`, and `Σ_{j ∈ row} c_j` is what the kernels
/// compute. Rows are unit vectors, so their mean squared distance from the mean is
/// `1 − |m|²`, spread over `d` components; `α` is the mean magnitude of a normal component of
/// that variance, `√((1 − |m|²) / d · 2/π)`. Within a matrix the estimate ranks as the sum
/// does; what it adds is the offset `q·m` and the scale that differ between matrices.
#[derive(Debug, Clone, Copy)]
struct Calibration {
    slope: f32,
    intercept: f32,
}

impl Calibration {
    /// For a unit query whose 4-bit codes sum to `code_sum`, a unit of which is worth `step`
    /// (both made once per query, whatever the number of matrices), and a matrix's `mean`
    /// (whose squared length `mean_sq` the matrix keeps).
    fn new(unit: &[f32], code_sum: i32, step: f32, mean: &[f32], mean_sq: f32) -> Self {
        let d = unit.len().max(1) as f32;
        let qm = kernel::dot(unit, mean);
        let alpha = ((1.0 - mean_sq).max(0.0) / d * std::f32::consts::FRAC_2_PI).sqrt();
        let slope = 2.0 * alpha * step;
        Calibration {
            slope,
            intercept: qm - alpha * step * code_sum as f32,
        }
    }

    #[inline]
    fn cosine(&self, sum: i32) -> f32 {
        self.intercept + self.slope * sum as f32
    }
}
