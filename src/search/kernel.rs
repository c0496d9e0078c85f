//! Dot-product kernels for scanning the matrix.
//!
//! The scan is memory-bound, so the kernel only has to keep up with memory: an explicit
//! AVX2+FMA kernel (chosen at run time, so one binary runs everywhere) and a portable kernel
//! with 16 independent accumulators that the compiler vectorises to SSE2 or NEON. A naive
//! `iter().sum()` has one serial dependency chain and cannot be vectorised without reordering
//! float additions, which Rust does not allow by itself; `f32::mul_add` without the `fma`
//! target feature becomes a libm call, many times slower.
//!
//! Both kernels score [`ROWS_PER_PASS`] rows per pass over the query ([`dot_rows`]): each
//! chunk of the query is loaded once and multiplied into every row's accumulators, so the
//! query is read once per group of rows instead of once per row, and the rows' independent
//! accumulators keep the FMA units busy. A row's score does not depend on how many rows share
//! its pass (each row keeps its own accumulators, summed in the same order), so [`dot`] is the
//! one-row case of the same kernel and returns bit for bit what the scan computes.

/// Rows scored per pass over the query by the scan.
pub const ROWS_PER_PASS: usize = 4;

/// `a · b` over the common length of both slices.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_rows(a, [b])[0]
}

/// `query · row` for each of `R` rows, over the common length of the query and every row
/// (the scan passes rows of the query's length). Bit for bit equal to [`dot`] of each row.
#[inline]
pub fn dot_rows<const R: usize>(query: &[f32], rows: [&[f32]; R]) -> [f32; R] {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
            return unsafe { x86::dot_rows_avx2_fma(query, rows) };
        }
    }
    dot_rows_portable(query, rows)
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx2_fma() -> bool {
    // std caches the CPUID result: this is one relaxed atomic load after the first call.
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// The common length of `query` and every row.
#[inline]
fn common_len<const R: usize>(query: &[f32], rows: &[&[f32]; R]) -> usize {
    rows.iter().fold(query.len(), |n, row| n.min(row.len()))
}

/// Portable kernel: 16 lanes of partial sums, then the tail.
#[inline]
pub fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    dot_rows_portable(a, [b])[0]
}

/// Portable multi-row kernel: per row, 16 lanes of partial sums (a row's result does not
/// depend on `R`), each query chunk read once for all rows.
#[inline]
pub fn dot_rows_portable<const R: usize>(query: &[f32], rows: [&[f32]; R]) -> [f32; R] {
    const LANES: usize = 16;
    let n = common_len(query, &rows);
    let blocks = n / LANES;
    let mut acc = [[0.0f32; LANES]; R];
    for block in 0..blocks {
        let at = block * LANES;
        let q = &query[at..at + LANES];
        for (acc, row) in acc.iter_mut().zip(&rows) {
            let x = &row[at..at + LANES];
            for i in 0..LANES {
                acc[i] += q[i] * x[i];
            }
        }
    }
    let mut out = [0.0f32; R];
    for ((out, acc), row) in out.iter_mut().zip(&mut acc).zip(&rows) {
        let mut sum = 0.0f32;
        for (x, y) in query[blocks * LANES..n].iter().zip(&row[blocks * LANES..n]) {
            sum += x * y;
        }
        // Pairwise reduction of the lanes.
        let mut width = LANES / 2;
        while width > 0 {
            for i in 0..width {
                acc[i] += acc[i + width];
            }
            width /= 2;
        }
        *out = acc[0] + sum;
    }
    out
}

/// The plain sequential dot product of the original server (`utils.rs::dot`): the JSON path
/// keeps it on purpose, so benchmarks measure what users have today.
#[inline]
pub fn dot_sequential(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// AVX2+FMA multi-row kernel: per 16 floats, the query's two 8-lane halves are loaded once
    /// and fused into two accumulators per row, so `R` rows keep `2R` independent FMA chains
    /// in flight (8 at four rows, enough to hide the FMA latency on two ports).
    ///
    /// # Safety
    /// The CPU must support `avx2` and `fma`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_rows_avx2_fma<const R: usize>(query: &[f32], rows: [&[f32]; R]) -> [f32; R] {
        let n = super::common_len(query, &rows);
        let pq = query.as_ptr();
        let pr = rows.map(<[f32]>::as_ptr);
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: `i + 16 <= n`, and `n` is within the query and every row; `loadu` has no
            // alignment requirement.
            let (q0, q1) = unsafe { (_mm256_loadu_ps(pq.add(i)), _mm256_loadu_ps(pq.add(i + 8))) };
            for (acc, &p) in acc.iter_mut().zip(&pr) {
                // SAFETY: as for the query: `i + 16 <= n <= row.len()`.
                let (x0, x1) =
                    unsafe { (_mm256_loadu_ps(p.add(i)), _mm256_loadu_ps(p.add(i + 8))) };
                acc[0] = _mm256_fmadd_ps(q0, x0, acc[0]);
                acc[1] = _mm256_fmadd_ps(q1, x1, acc[1]);
            }
            i += 16;
        }
        if i + 8 <= n {
            // SAFETY: `i + 8 <= n`, within the query and every row; unaligned loads.
            let q0 = unsafe { _mm256_loadu_ps(pq.add(i)) };
            for (acc, &p) in acc.iter_mut().zip(&pr) {
                // SAFETY: as for the query.
                let x0 = unsafe { _mm256_loadu_ps(p.add(i)) };
                acc[0] = _mm256_fmadd_ps(q0, x0, acc[0]);
            }
            i += 8;
        }
        let mut out = [0.0f32; R];
        for ((out, acc), row) in out.iter_mut().zip(&acc).zip(&rows) {
            let sum = _mm256_add_ps(acc[0], acc[1]);
            let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
            let quad = _mm_add_ps(half, _mm_movehl_ps(half, half));
            let single = _mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1));
            let mut total = _mm_cvtss_f32(single);
            for (x, y) in query[i..n].iter().zip(&row[i..n]) {
                total += x * y;
            }
            *out = total;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors(n: usize, seed: u32) -> (Vec<f32>, Vec<f32>) {
        let mut next = random(seed);
        (
            (0..n).map(|_| next()).collect(),
            (0..n).map(|_| next()).collect(),
        )
    }

    /// Uniform floats in [-0.5, 0.5) from a xorshift seeded with `seed`.
    fn random(seed: u32) -> impl FnMut() -> f32 {
        let mut state = seed.wrapping_mul(2654435761).max(1);
        move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) - 0.5
        }
    }

    fn reference(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum()
    }

    /// How far an f32 dot product of `a` and `b` may be from the exact one: reassociating `n`
    /// f32 products and sums costs at most about `n` ulps of the sum of their magnitudes, and a
    /// product that underflows to a denormal loses up to one denormal step.
    fn tolerance(a: &[f32], b: &[f32]) -> f64 {
        let n = a.len().min(b.len()) as f64;
        let magnitude: f64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| (f64::from(x) * f64::from(y)).abs())
            .sum();
        (n + 1.0) * f64::from(f32::EPSILON) * magnitude + (n + 1.0) * 1.5e-45
    }

    /// Every length around the block sizes (8, 16, 32) exercises each kernel's tail handling,
    /// including lengths below one block, and slices that do not start on an aligned address.
    #[test]
    fn kernels_agree_with_f64_reference_at_every_tail_length() {
        for n in (0..=130).chain([383, 384, 385, 3071, 3072]) {
            let (a, b) = vectors(n + 1, n as u32 + 1);
            for offset in [0, 1] {
                let (x, y) = (&a[offset..offset + n], &b[offset..offset + n]);
                let want = reference(x, y);
                let tolerance = 1e-5 * (n as f64).max(1.0);
                for (name, got) in [
                    ("dot", dot(x, y)),
                    ("portable", dot_portable(x, y)),
                    ("sequential", dot_sequential(x, y)),
                ] {
                    assert!(
                        (f64::from(got) - want).abs() <= tolerance,
                        "{name} n={n} offset={offset}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn shorter_slice_bounds_the_product() {
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[1.0, 1.0]), 3.0);
        assert_eq!(dot_portable(&[], &[1.0]), 0.0);
        // A pass runs over the length every slice has.
        assert_eq!(
            dot_rows(&[1.0, 2.0, 3.0], [&[1.0, 1.0, 1.0][..], &[2.0]]),
            [1.0, 2.0]
        );
    }

    /// The kernel `dot` dispatches to on this CPU (AVX2+FMA where present, the portable one
    /// elsewhere) matches an f64 reference at every remainder length; where AVX2 is present,
    /// its kernel is also called directly, so a dispatch bug cannot hide it.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_dispatched_kernel_matches_the_reference_at_every_tail_length() {
        for n in [0, 1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 384, 1000, 3072] {
            let (a, b) = vectors(n, 99 + n as u32);
            let want = reference(&a, &b);
            let dispatched = dot(&a, &b);
            assert!(
                (f64::from(dispatched) - want).abs() < 1e-4,
                "n={n}: {dispatched} vs {want}"
            );
            if has_avx2_fma() {
                // SAFETY: AVX2 and FMA are present (checked just above).
                let fast = unsafe { x86::dot_rows_avx2_fma(&a, [&b[..]]) }[0];
                assert_eq!(fast, dispatched, "n={n}: dot must use the AVX2 kernel here");
            }
        }
    }

    /// A value for (row, column, random draw); the query is row `usize::MAX`.
    type Fill = fn(usize, usize, f32) -> f32;
    /// A one-row kernel.
    type OneRow = fn(&[f32], &[f32]) -> f32;

    /// A query and `rows` rows of length `n`, filled by `fill(row, column, random)`.
    fn case(n: usize, rows: usize, seed: u32, fill: Fill) -> (Vec<f32>, Vec<Vec<f32>>) {
        let mut next = random(seed);
        let query = (0..n).map(|j| fill(usize::MAX, j, next())).collect();
        let rows = (0..rows)
            .map(|r| (0..n).map(|j| fill(r, j, next())).collect())
            .collect();
        (query, rows)
    }

    /// The multi-row kernels over `rows`, a pass of [`ROWS_PER_PASS`] at a time and then one
    /// row at a time for the remainder, as the scan groups them: (dispatched, portable).
    fn by_passes(query: &[f32], rows: &[Vec<f32>]) -> (Vec<f32>, Vec<f32>) {
        let (mut fast, mut portable) = (Vec::new(), Vec::new());
        let mut groups = rows.chunks_exact(ROWS_PER_PASS);
        for group in &mut groups {
            let group: [&[f32]; ROWS_PER_PASS] = std::array::from_fn(|r| &group[r][..]);
            fast.extend(dot_rows(query, group));
            portable.extend(dot_rows_portable(query, group));
        }
        for row in groups.remainder() {
            fast.push(dot(query, row));
            portable.push(dot_portable(query, row));
        }
        (fast, portable)
    }

    /// The SIMD multi-row kernel agrees with the portable one and the f64 reference within the
    /// reassociation bound, and each row's score is bit for bit the one-row [`dot`] (the scan's
    /// exact top-k is checked against `dot`), at every tail length 0..=67 and row counts that
    /// are not a multiple of the rows per pass, with the query and rows at odd offsets.
    #[test]
    fn multi_row_kernels_agree_at_every_tail_length_and_row_count() {
        let shapes: [(&str, Fill); 4] = [
            ("random", |_, _, x| x),
            ("zeros", |r, _, x| if r % 2 == 0 { 0.0 } else { x }),
            // Products far below f32's normal range: denormal and underflowing terms.
            ("denormal", |r, j, x| {
                if r == usize::MAX {
                    x * 1e-20
                } else if j % 3 == 0 {
                    x * 1e-38
                } else {
                    x * 1e-19
                }
            }),
            // Mixed magnitudes: large terms cancel around small ones.
            ("mixed", |_, j, x| if j % 5 == 0 { x * 1e18 } else { x }),
        ];
        for (name, fill) in shapes {
            for n in 0..=67 {
                for rows in [0, 1, 3, 4, 5, 7, 9] {
                    let (query, rows) = case(n, rows, (n * 31 + rows) as u32 + 7, fill);
                    let (fast, portable) = by_passes(&query, &rows);
                    for (r, row) in rows.iter().enumerate() {
                        let (want, tol) = (reference(&query, row), tolerance(&query, row));
                        for (kernel, got) in [("dispatched", fast[r]), ("portable", portable[r])] {
                            assert!(
                                (f64::from(got) - want).abs() <= tol,
                                "{name} {kernel} n={n} row {r}: {got} vs {want} (±{tol})"
                            );
                        }
                        assert_eq!(
                            fast[r].to_bits(),
                            dot(&query, row).to_bits(),
                            "{name} n={n} row {r}: a pass must score a row as dot does"
                        );
                        assert_eq!(
                            portable[r].to_bits(),
                            dot_portable(&query, row).to_bits(),
                            "{name} n={n} row {r}: portable pass vs portable dot"
                        );
                    }
                }
            }
        }
    }

    /// Huge values overflow to infinity (or to NaN where infinities of both signs meet) in
    /// the multi-row kernels as in the one-row ones, and only in the rows that hold them: the
    /// scan skips non-finite scores, and a neighbour in the same pass must still score.
    #[test]
    fn overflow_stays_in_its_row() {
        for n in [1, 8, 15, 16, 17, 33, 67] {
            let query = vec![1e30f32; n];
            let huge = vec![1e30f32; n];
            let mut mixed = vec![1e30f32; n];
            if n > 1 {
                mixed[n - 1] = -1e30;
            }
            let small = vec![1e-31f32; n];
            let zero = vec![0.0f32; n];
            let rows = [&huge[..], &mixed[..], &small[..], &zero[..]];
            let kernels: [(_, OneRow); 2] = [
                (dot_rows(&query, rows), dot),
                (dot_rows_portable(&query, rows), dot_portable),
            ];
            for (got, one_row) in kernels {
                assert_eq!(got[0], f32::INFINITY, "n={n}");
                assert!(!got[1].is_finite(), "n={n}: {}", got[1]);
                let want = n as f64 * 0.1;
                assert!(
                    (f64::from(got[2]) - want).abs() < 1e-5 * want,
                    "n={n}: {}",
                    got[2]
                );
                assert_eq!(got[3], 0.0, "n={n}");
                for (r, row) in rows.iter().enumerate() {
                    let one = one_row(&query, row);
                    assert!(
                        one.to_bits() == got[r].to_bits() || (one.is_nan() && got[r].is_nan()),
                        "n={n} row {r}: {one} vs {}",
                        got[r]
                    );
                }
            }
        }
    }
}
