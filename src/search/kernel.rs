//! Dot-product kernels for scanning the matrix.
//!
//! The scan is memory-bound, so the kernel only has to keep up with memory: an explicit
//! AVX2+FMA kernel (chosen at run time, so one binary runs everywhere) and a portable kernel
//! with 16 independent accumulators that the compiler vectorises to SSE2 or NEON. A naive
//! `iter().sum()` has one serial dependency chain and cannot be vectorised without reordering
//! float additions, which Rust does not allow by itself; `f32::mul_add` without the `fma`
//! target feature becomes a libm call, many times slower.
//!
//! The scan scores one row at a time, start to end, so each thread reads the matrix as one
//! sequential stream. Scoring several rows per pass (each query chunk loaded once for all of
//! them) saves loads, but the loads are not what limits: interleaving four or eight rows makes
//! four or eight streams per thread, which memory mostly serves more slowly. Measured on
//! 3,072-dim rows, 2 threads, 2 cores shared with other machines (AMD EPYC, best of five
//! rounds): four rows per pass took 1.03 ms over 4,000 rows and 23.3 ms over 64,000, one row
//! with eight accumulators 0.83 ms and 22.4 ms, and summing every float of the matrix
//! ([`sum`]) 0.73 ms and 22.3 ms. Over 16,000 rows (196 MB) the runs disagree: one row was
//! faster in some (5.07 against 5.53 ms) and four rows in others (4.96 against 5.65 ms).
//! One row with eight 8-lane accumulators keeps eight FMA chains in flight (enough to hide
//! the FMA latency on two ports), and its two loads per FMA stay far above memory's pace.
//!
//! [`dot`] is the kernel the scan runs, so a score computed alone (rescoring, tests) is bit
//! for bit the scan's.

/// `a · b` over the common length of both slices.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
            return unsafe { x86::dot_avx2_fma(a, b) };
        }
    }
    dot_portable(a, b)
}

/// The sum of `values`: a read of every float, as fast as memory gives them, to measure how
/// close the scan comes to reading the matrix alone (the benchmark report's read limit).
#[inline]
pub fn sum(values: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 (checked at run time just above).
            return unsafe { x86::sum_avx2(values) };
        }
    }
    sum_portable(values)
}

/// Asks the CPU to start loading `data` into its caches, without waiting for it: a hint
/// that changes no result. Rescoring reads a few dozen rows scattered over the matrix; each
/// alone is a stream the hardware prefetcher only learns after its first cache misses, so
/// the next row is requested while the current one is scored.
#[inline]
pub fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        const LINE: usize = 64;
        let start = data.as_ptr().cast::<i8>();
        for offset in (0..std::mem::size_of_val(data)).step_by(LINE) {
            // SAFETY: `offset` lies within `data`, so the pointer stays inside its
            // allocation; a prefetch reads nothing the program sees and never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx2_fma() -> bool {
    // std caches the CPUID result: this is one relaxed atomic load after the first call.
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Portable kernel: 16 lanes of partial sums, then the tail.
#[inline]
pub fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let (blocks_a, tail_a) = a.as_chunks::<LANES>();
    let (blocks_b, tail_b) = b.as_chunks::<LANES>();
    for (x, y) in blocks_a.iter().zip(blocks_b) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in tail_a.iter().zip(tail_b) {
        tail += x * y;
    }
    reduce_lanes(acc) + tail
}

/// Portable [`sum`]: 16 lanes of partial sums, then the tail.
#[inline]
pub fn sum_portable(values: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (blocks, tail) = values.as_chunks::<LANES>();
    for block in blocks {
        for i in 0..LANES {
            acc[i] += block[i];
        }
    }
    reduce_lanes(acc) + tail.iter().sum::<f32>()
}

/// Pairwise reduction of the lanes.
#[inline]
fn reduce_lanes<const LANES: usize>(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] += acc[i + width];
        }
        width /= 2;
    }
    acc[0]
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

    /// Independent 8-lane accumulators: eight FMA chains in flight hide the FMA latency
    /// (4 cycles) on two FMA ports.
    const ACCUMULATORS: usize = 8;

    /// AVX2+FMA kernel: 64 floats per step into eight accumulators, then the remaining
    /// 8-float blocks into the first ones, then the scalar tail.
    ///
    /// # Safety
    /// The CPU must support `avx2` and `fma`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2_fma(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); ACCUMULATORS];
        let mut i = 0;
        while i + 8 * ACCUMULATORS <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let at = i + 8 * j;
                // SAFETY: `at + 8 <= i + 64 <= n`, within both slices; `loadu` has no
                // alignment requirement.
                let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(at)), _mm256_loadu_ps(pb.add(at))) };
                *acc = _mm256_fmadd_ps(x, y, *acc);
            }
            i += 8 * ACCUMULATORS;
        }
        let mut j = 0;
        while i + 8 <= n {
            // SAFETY: `i + 8 <= n`, within both slices; unaligned loads.
            let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
            acc[j] = _mm256_fmadd_ps(x, y, acc[j]);
            i += 8;
            j += 1;
        }
        let mut total = horizontal_sum(acc);
        for (x, y) in a[i..n].iter().zip(&b[i..n]) {
            total += x * y;
        }
        total
    }

    /// AVX2 [`super::sum`]: eight accumulators, 64 floats per step, then the tail.
    ///
    /// # Safety
    /// The CPU must support `avx2`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn sum_avx2(values: &[f32]) -> f32 {
        let n = values.len();
        let p = values.as_ptr();
        let mut acc = [_mm256_setzero_ps(); ACCUMULATORS];
        let mut i = 0;
        while i + 8 * ACCUMULATORS <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                // SAFETY: `i + 8 * j + 8 <= i + 64 <= n`, within the slice; unaligned loads.
                *acc = _mm256_add_ps(*acc, unsafe { _mm256_loadu_ps(p.add(i + 8 * j)) });
            }
            i += 8 * ACCUMULATORS;
        }
        horizontal_sum(acc) + values[i..].iter().sum::<f32>()
    }

    /// The sum of every lane: the accumulators pairwise, then the lanes of the last one.
    #[target_feature(enable = "avx2,fma")]
    fn horizontal_sum(mut acc: [__m256; ACCUMULATORS]) -> f32 {
        let mut width = ACCUMULATORS / 2;
        while width > 0 {
            for j in 0..width {
                acc[j] = _mm256_add_ps(acc[j], acc[j + width]);
            }
            width /= 2;
        }
        let sum = acc[0];
        let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
        let quad = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let single = _mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1));
        _mm_cvtss_f32(single)
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
        let long = vec![1.0f32; 200];
        assert_eq!(dot(&long, &long[..130]), 130.0);
        assert_eq!(dot_portable(&long[..67], &long), 67.0);
    }

    /// The kernel `dot` dispatches to on this CPU (AVX2+FMA where present, the portable one
    /// elsewhere) matches an f64 reference at every remainder length; where AVX2 is present,
    /// its kernel is also called directly, so a dispatch bug cannot hide it.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_dispatched_kernel_matches_the_reference_at_every_tail_length() {
        for n in [
            0, 1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 127, 128, 129, 384, 1000, 3072,
        ] {
            let (a, b) = vectors(n, 99 + n as u32);
            let want = reference(&a, &b);
            let dispatched = dot(&a, &b);
            assert!(
                (f64::from(dispatched) - want).abs() < 1e-4,
                "n={n}: {dispatched} vs {want}"
            );
            if has_avx2_fma() {
                // SAFETY: AVX2 and FMA are present (checked just above).
                let fast = unsafe { x86::dot_avx2_fma(&a, &b) };
                assert_eq!(fast, dispatched, "n={n}: dot must use the AVX2 kernel here");
                // SAFETY: as above.
                let fast_sum = unsafe { x86::sum_avx2(&a) };
                assert_eq!(
                    fast_sum,
                    sum(&a),
                    "n={n}: sum must use the AVX2 kernel here"
                );
            }
        }
    }

    /// A value for (vector, column, random draw); the first vector is 0, the second 1.
    type Fill = fn(usize, usize, f32) -> f32;
    /// A dot-product kernel.
    type Kernel = fn(&[f32], &[f32]) -> f32;

    /// Two vectors of length `n`, filled by `fill(vector, column, random)`.
    fn case(n: usize, seed: u32, fill: Fill) -> (Vec<f32>, Vec<f32>) {
        let mut next = random(seed);
        let a = (0..n).map(|j| fill(0, j, next())).collect();
        let b = (0..n).map(|j| fill(1, j, next())).collect();
        (a, b)
    }

    /// The dispatched and portable kernels agree with the f64 reference within the
    /// reassociation bound at every length 0..=200 (every tail of the 64-float steps, the
    /// 8-float blocks and the scalar remainder), for random values, zeros, denormal products
    /// and large terms that cancel around small ones, with the slices at odd offsets.
    #[test]
    fn kernels_agree_at_every_tail_length_for_every_shape() {
        let shapes: [(&str, Fill); 4] = [
            ("random", |_, _, x| x),
            (
                "zeros",
                |v, j, x| if v == 1 && j % 2 == 0 { 0.0 } else { x },
            ),
            // Products far below f32's normal range: denormal and underflowing terms.
            ("denormal", |v, j, x| {
                if v == 0 {
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
            for n in 0..=200 {
                let (a, b) = case(n + 1, n as u32 * 31 + 7, fill);
                for offset in [0, 1] {
                    let (x, y) = (&a[offset..offset + n], &b[offset..offset + n]);
                    let (want, tol) = (reference(x, y), tolerance(x, y));
                    for (kernel, got) in
                        [("dispatched", dot(x, y)), ("portable", dot_portable(x, y))]
                    {
                        assert!(
                            (f64::from(got) - want).abs() <= tol,
                            "{name} {kernel} n={n} offset={offset}: {got} vs {want} (±{tol})"
                        );
                    }
                }
            }
        }
        let zeros = vec![0.0f32; 200];
        assert_eq!(dot(&zeros, &zeros), 0.0);
        assert_eq!(dot_portable(&zeros, &zeros), 0.0);
    }

    /// Huge values overflow to infinity (or to NaN where infinities of both signs meet) in
    /// both kernels, at lengths in every part of the kernel (steps, blocks, tail): the scan
    /// skips non-finite scores.
    #[test]
    fn huge_values_overflow_in_every_kernel() {
        for n in [1, 8, 15, 16, 17, 33, 63, 64, 65, 67, 130] {
            let query = vec![1e30f32; n];
            let mut mixed = vec![1e30f32; n];
            if n > 1 {
                mixed[n - 1] = -1e30;
            }
            let small = vec![1e-31f32; n];
            let kernels: [Kernel; 2] = [dot, dot_portable];
            for kernel in kernels {
                assert_eq!(kernel(&query, &query), f32::INFINITY, "n={n}");
                assert!(!kernel(&query, &mixed).is_finite(), "n={n}");
                let got = kernel(&query, &small);
                let want = n as f64 * 0.1;
                assert!((f64::from(got) - want).abs() < 1e-5 * want, "n={n}: {got}");
            }
        }
    }

    /// The read kernel sums every float at every tail length, like an f64 sum.
    #[test]
    fn sum_matches_the_reference_at_every_tail_length() {
        for n in 0..=200 {
            let (a, _) = vectors(n, 5 + n as u32);
            let want: f64 = a.iter().map(|&x| f64::from(x)).sum();
            let tol = (n as f64 + 1.0) * f64::from(f32::EPSILON) * (n as f64 + 1.0);
            for (kernel, got) in [("dispatched", sum(&a)), ("portable", sum_portable(&a))] {
                assert!(
                    (f64::from(got) - want).abs() <= tol,
                    "{kernel} n={n}: {got} vs {want}"
                );
            }
        }
        assert_eq!(sum(&[f32::MAX; 70]), f32::INFINITY);
    }
}
