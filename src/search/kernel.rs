//! Dot-product kernels for scanning the matrix.
//!
//! The scan is memory-bound, so the kernel only has to keep up with memory: an explicit
//! AVX2+FMA kernel (chosen at run time, so one binary runs everywhere) and a portable kernel
//! with 16 independent accumulators that the compiler vectorises to SSE2 or NEON. A naive
//! `iter().sum()` has one serial dependency chain and cannot be vectorised without reordering
//! float additions, which Rust does not allow by itself; `f32::mul_add` without the `fma`
//! target feature becomes a libm call, many times slower.

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
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
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
    acc[0] + sum
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

    /// AVX2+FMA dot product: four 8-lane accumulators hide the FMA latency.
    ///
    /// # Safety
    /// The CPU must support `avx2` and `fma`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2_fma(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (lane, acc) in acc.iter_mut().enumerate() {
                let off = i + lane * 8;
                // SAFETY: `off + 8 <= i + 32 <= n`, and `n` is within both slices; `loadu`
                // has no alignment requirement.
                let x = unsafe { _mm256_loadu_ps(pa.add(off)) };
                // SAFETY: as for `x`.
                let y = unsafe { _mm256_loadu_ps(pb.add(off)) };
                *acc = _mm256_fmadd_ps(x, y, *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            // SAFETY: `i + 8 <= n`, and `n` is within both slices; unaligned loads.
            let x = unsafe { _mm256_loadu_ps(pa.add(i)) };
            // SAFETY: as for `x`.
            let y = unsafe { _mm256_loadu_ps(pb.add(i)) };
            acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
            i += 8;
        }
        let sum01 = _mm256_add_ps(acc[0], acc[1]);
        let sum23 = _mm256_add_ps(acc[2], acc[3]);
        let sum = _mm256_add_ps(sum01, sum23);
        let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
        let quad = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let single = _mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1));
        let mut total = _mm_cvtss_f32(single);
        while i < n {
            total += a[i] * b[i];
            i += 1;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors(n: usize, seed: u32) -> (Vec<f32>, Vec<f32>) {
        let mut state = seed.wrapping_mul(2654435761).max(1);
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) - 0.5
        };
        (
            (0..n).map(|_| next()).collect(),
            (0..n).map(|_| next()).collect(),
        )
    }

    fn reference(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum()
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
                let fast = unsafe { x86::dot_avx2_fma(&a, &b) };
                assert_eq!(fast, dispatched, "n={n}: dot must use the AVX2 kernel here");
            }
        }
    }
}
