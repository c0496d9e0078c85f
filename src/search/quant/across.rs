//! One quantized search across several matrices, each with its own query: a cross-podcast
//! search of many podcasts as one code scan, one rescoring and one merged top-k.
//!
//! Searched one after another, many small podcasts cost a search each: their fixed costs
//! (the query's codes, waking the cores, selecting and merging candidates, three times over
//! for a binary search) add up, and each is too small for its codes to pay
//! ([`super::QUANTIZED_MIN_FLOATS`]), so each is scanned exactly. Taken together, their rows
//! are one list: the size rules apply to the list, its codes are scanned in one pass, and its
//! best candidates are rescored in one more.
//!
//! Estimates from different matrices must compare for one list of candidates to be fair to
//! all. int8 estimates do: each is a cosine up to its query's quantization step, which is
//! known ([`super::query::int8_step`]). Sign-bit estimates do not: each matrix's bits are
//! taken around its own mean, so a sum of query codes in one matrix says nothing of the same
//! sum in another. A binary search across matrices therefore scans their int8 codes.

use super::candidates::{self, row_count, scan_codes_across};
use super::{best_of, served_mode, Int8Codes, Quantized, SearchMode, INT8_OVERSAMPLE};
use crate::error::Result;
use crate::search::scan::{self, Matrix};
use crate::search::{kernel, Filter, Hit};

/// The mode a search across matrices of `floats` floats in all is scanned in when `mode` is
/// asked for: [`served_mode`] of their sum, with binary scanned on the int8 codes (see the
/// module's doc).
pub fn served_mode_across(mode: SearchMode, floats: usize) -> SearchMode {
    match served_mode(mode, floats) {
        SearchMode::Binary { .. } => SearchMode::Int8 {
            oversample: INT8_OVERSAMPLE,
        },
        served => served,
    }
}

/// Whether a matrix of `floats` floats joins a search across matrices in `mode`: every one
/// but those large enough for a sign-bit scan of their own, whose estimates would not
/// compare (see the module's doc).
pub fn joins_across(mode: SearchMode, floats: usize) -> bool {
    !matches!(served_mode(mode, floats), SearchMode::Binary { .. })
}

/// The top `k` rows by cosine across `sources` (each a matrix and its query), best first, as
/// `(place of the matrix in sources, hit)`, ties to the earlier matrix and then the lower
/// row. Scores are exact, as [`super::top_k`]'s are. The mode is [`served_mode_across`]'s;
/// when a matrix lacks the int8 codes, or the candidates would be (nearly) every row, every
/// row is scored exactly.
pub fn top_k_across<M: Quantized + ?Sized>(
    sources: &[(&M, &[f32])],
    k: usize,
    mode: SearchMode,
) -> Result<Vec<(u32, Hit)>> {
    let units = sources
        .iter()
        .map(|&(matrix, query)| scan::unit_query(matrix, query))
        .collect::<Result<Vec<_>>>()?;
    let matrices: Vec<&M> = sources.iter().map(|&(matrix, _)| matrix).collect();
    let list = List::new(&matrices);
    let floats: usize = matrices.iter().map(|m| m.rows().len()).sum();
    let embedded: usize = matrices.iter().map(|m| m.embedded_rows()).sum();
    let candidates = k.saturating_mul(served_mode_across(mode, floats).oversample() as usize);
    let codes: Option<Vec<Int8Codes>> = match served_mode_across(mode, floats) {
        SearchMode::Int8 { .. } if candidates < embedded => {
            matrices.iter().map(|m| m.int8()).collect()
        }
        _ => None,
    };
    let score = |g: u32| {
        let (m, i) = list.locate(g);
        let d = matrices[m].row_len();
        kernel::dot(&units[m], &matrices[m].rows()[i * d..(i + 1) * d])
    };
    let hits = match codes {
        Some(codes) => {
            let sources: Vec<(&M, Int8Codes, &[f32])> = matrices
                .iter()
                .zip(codes)
                .zip(&units)
                .map(|((&m, codes), unit)| (m, codes, unit.as_slice()))
                .collect();
            let found = candidates::int8_across(&sources, candidates, &Filter::all());
            let row_bytes = matrices.iter().map(|m| m.row_len() * 4).max().unwrap_or(0);
            best_of(
                &found,
                k,
                row_bytes,
                |g| score(g as u32),
                |g| {
                    let (m, i) = list.locate(g as u32);
                    let d = matrices[m].row_len();
                    kernel::prefetch(&matrices[m].rows()[i * d..(i + 1) * d]);
                },
            )
        }
        None => scan_codes_across(&matrices, &Filter::all(), k, |m, first, accepted, out| {
            for (r, (&accepted, out)) in accepted.iter().zip(out).enumerate() {
                if accepted {
                    *out = score(list.global(m, first + r));
                }
            }
        }),
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

/// The rows of several matrices as one list: where each matrix's rows begin in it.
struct List {
    starts: Vec<usize>,
}

impl List {
    fn new<M: Matrix + ?Sized>(matrices: &[&M]) -> Self {
        let starts = matrices
            .iter()
            .scan(0, |next, m| {
                let start = *next;
                *next += row_count(*m);
                Some(start)
            })
            .collect();
        List { starts }
    }

    /// Row `i` of matrix `m` in the list.
    fn global(&self, m: usize, i: usize) -> u32 {
        (self.starts[m] + i) as u32
    }

    /// The matrix and row of row `g` of the list.
    fn locate(&self, g: u32) -> (usize, usize) {
        let g = g as usize;
        let m = self.starts.partition_point(|&start| start <= g) - 1;
        (m, g - self.starts[m])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::quant::{BINARY_MIN_FLOATS, QUANTIZED_MIN_FLOATS};

    #[test]
    fn binary_across_matrices_scans_int8_and_small_lists_exactly() {
        let int8 = SearchMode::Int8 {
            oversample: INT8_OVERSAMPLE,
        };
        let binary = SearchMode::Binary { oversample: 20 };
        assert_eq!(served_mode_across(binary, BINARY_MIN_FLOATS * 8), int8);
        assert_eq!(served_mode_across(binary, QUANTIZED_MIN_FLOATS), int8);
        assert_eq!(
            served_mode_across(SearchMode::Int8 { oversample: 3 }, BINARY_MIN_FLOATS),
            SearchMode::Int8 { oversample: 3 }
        );
        assert_eq!(
            served_mode_across(binary, QUANTIZED_MIN_FLOATS - 1),
            SearchMode::Exact
        );
    }

    /// Rows of 2 floats: matrices of 3, 0 and 2 rows.
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

    #[test]
    fn the_list_finds_each_row_past_empty_matrices() {
        let (a, empty, b) = (Rows(vec![0.0; 6]), Rows(Vec::new()), Rows(vec![0.0; 4]));
        let list = List::new(&[&a, &empty, &b]);
        let rows: Vec<(usize, usize)> = (0..5).map(|g| list.locate(g)).collect();
        assert_eq!(rows, [(0, 0), (0, 1), (0, 2), (2, 0), (2, 1)]);
        assert_eq!(list.global(2, 1), 4);
        assert_eq!(list.global(0, 2), 2);
    }
}
