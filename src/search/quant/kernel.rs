//! The int8 dot product that scores int8 codes, with AVX-512 VNNI and AVX2 versions chosen at
//! run time and a portable twin (the sign-bit estimate lives in [`super::planes`]).
//!
//! It computes in integers, so every version returns exactly the same value whatever the order
//! of additions (the tests compare them with `assert_eq!`).

/// Largest query code magnitude [`dot_i8`] accepts: with it, no pair of products can
/// saturate the 16-bit sums of `_mm256_maddubs_epi16` (`2 × 128 × 127 < 2^15`), whatever the
/// row codes (including `-128`).
pub const QUERY_CODE_MAX: i8 = 127;

/// `query · codes` over the common length, exactly. `query` must lie in
/// `[-QUERY_CODE_MAX, QUERY_CODE_MAX]` (checked in debug builds); `codes` may be any i8.
#[inline]
pub fn dot_i8(query: &[i8], codes: &[i8]) -> i32 {
    debug_assert!(query.iter().all(|&q| q != i8::MIN));
    #[cfg(target_arch = "x86_64")]
    {
        if x86::has_vnni() {
            let bias = vnni_bias(&query[..query.len().min(codes.len())]);
            // SAFETY: the CPU supports AVX-512 F, BW and VNNI (checked at run time), and
            // `bias` is computed from the same query over the same common length.
            return unsafe { x86::dot_i8_vnni(query, codes, bias) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked at run time just above).
            return unsafe { x86::dot_i8_avx2(query, codes) };
        }
    }
    dot_i8_portable(query, codes)
}

/// A query's int8 codes with the part of the VNNI kernel's sum that depends on the query
/// alone worked out once, so each row costs one multiply-add instruction per 64 codes instead
/// of two. A code scan scores thousands of rows against one query.
#[derive(Debug, Clone)]
pub struct Int8Query {
    codes: Vec<i8>,
    /// [`vnni_bias`] of `codes`.
    bias: i32,
}

impl Int8Query {
    /// `codes` must lie in `[-QUERY_CODE_MAX, QUERY_CODE_MAX]`, as for [`dot_i8`].
    pub fn new(codes: Vec<i8>) -> Self {
        let bias = vnni_bias(&codes);
        Int8Query { codes, bias }
    }

    pub fn codes(&self) -> &[i8] {
        &self.codes
    }

    /// `dot_i8(self.codes(), row)`, exactly.
    #[inline]
    pub fn dot(&self, row: &[i8]) -> i32 {
        #[cfg(target_arch = "x86_64")]
        {
            if row.len() == self.codes.len() && x86::has_vnni() {
                // SAFETY: the CPU supports AVX-512 F, BW and VNNI (checked at run time), and
                // `bias` was computed from these codes, whose length is the common length.
                return unsafe { x86::dot_i8_vnni(&self.codes, row, self.bias) };
            }
        }
        dot_i8(&self.codes, row)
    }
}

/// What the VNNI kernel subtracts from its sum over `query`'s whole 64-code steps: it sums
/// `(c + 128) · q`, and `128 · Σ q` is the part that is not `c · q`. Integer lanes wrap, and
/// so does this: the difference is exact whenever the true product fits in an i32. Only the
/// VNNI kernel uses it: 0 where that kernel cannot run.
fn vnni_bias(query: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        if x86::has_vnni() {
            // SAFETY: the CPU supports AVX-512 F, BW and VNNI (checked at run time).
            return unsafe { x86::bias_vnni(query) };
        }
    }
    let _ = query;
    0
}

/// Portable [`dot_i8`]: four i32 lanes the compiler vectorises.
#[inline]
pub fn dot_i8_portable(query: &[i8], codes: &[i8]) -> i32 {
    let n = query.len().min(codes.len());
    let (q, c) = (&query[..n], &codes[..n]);
    let mut acc = [0i32; 4];
    let blocks = n / 4 * 4;
    for (q, c) in q[..blocks].chunks_exact(4).zip(c[..blocks].chunks_exact(4)) {
        for i in 0..4 {
            acc[i] += i32::from(q[i]) * i32::from(c[i]);
        }
    }
    let tail: i32 = q[blocks..]
        .iter()
        .zip(&c[blocks..])
        .map(|(&a, &b)| i32::from(a) * i32::from(b))
        .sum();
    acc.iter().sum::<i32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Whether [`dot_i8_vnni`] can run here.
    #[inline]
    pub fn has_vnni() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }

    /// Steps of 64 codes per round of [`dot_i8_vnni`], each into its own accumulators, so
    /// consecutive steps do not wait on each other.
    const VNNI_STEPS: usize = 4;

    /// AVX-512 VNNI [`super::dot_i8`]: 64 codes per step. `vpdpbusd` multiplies unsigned by
    /// signed bytes and adds each four products into an i32 lane, with no 16-bit step that
    /// could saturate. The row's codes are made unsigned by flipping their top bit (`c + 128`,
    /// one XOR), so the lanes sum `(c + 128) · q`, and `bias` (`128 · Σ q` over the same
    /// steps, [`super::vnni_bias`], worked out once per query) is subtracted at the end: `c ·
    /// q`, exactly (the integer lanes wrap, and the true result fits in an i32). That is two
    /// vector instructions per 64 codes, with four steps in flight. The int8 scan is bound by
    /// instructions, not by memory.
    ///
    /// # Safety
    /// The CPU must support `avx512f`, `avx512bw` and `avx512vnni`, and `bias` must be
    /// `vnni_bias` of `query` cut to the common length of `query` and `codes`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2")]
    pub unsafe fn dot_i8_vnni(query: &[i8], codes: &[i8], bias: i32) -> i32 {
        let n = query.len().min(codes.len());
        let (pq, pc) = (query.as_ptr(), codes.as_ptr());
        let flip = _mm512_set1_epi8(i8::MIN);
        let mut biased = [_mm512_setzero_si512(); VNNI_STEPS];
        let mut step = |at: usize, j: usize| {
            // SAFETY: the callers below keep `at + 64 <= n`, within both slices; unaligned
            // loads.
            let (q, c) = unsafe {
                (
                    _mm512_loadu_si512(pq.add(at).cast()),
                    _mm512_loadu_si512(pc.add(at).cast()),
                )
            };
            // `c + 128` as unsigned bytes.
            let unsigned = _mm512_xor_si512(c, flip);
            biased[j] = _mm512_dpbusd_epi32(biased[j], unsigned, q);
        };
        let mut i = 0;
        while i + 64 * VNNI_STEPS <= n {
            for j in 0..VNNI_STEPS {
                step(i + 64 * j, j);
            }
            i += 64 * VNNI_STEPS;
        }
        while i + 64 <= n {
            step(i, 0);
            i += 64;
        }
        let mut sum = _mm512_setzero_si512();
        for lanes in biased {
            sum = _mm512_add_epi32(sum, lanes);
        }
        let sum = _mm512_reduce_add_epi32(sum).wrapping_sub(bias);
        // SAFETY: the caller's CPU has AVX2 too (AVX-512 F implies it).
        sum.wrapping_add(unsafe { dot_i8_avx2(&query[i..n], &codes[i..n]) })
    }

    /// [`super::vnni_bias`]: `128 · Σ q` over the whole 64-code steps, summed by the same
    /// instruction as the kernel's (a loop of scalar additions widened from i8 took longer
    /// than a row's product).
    ///
    /// # Safety
    /// The CPU must support `avx512f`, `avx512bw` and `avx512vnni`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn bias_vnni(query: &[i8]) -> i32 {
        let p = query.as_ptr();
        let bias = _mm512_set1_epi8(i8::MIN);
        let mut sum = _mm512_setzero_si512();
        let mut i = 0;
        while i + 64 <= query.len() {
            // SAFETY: `i + 64 <= query.len()`; an unaligned load.
            let q = unsafe { _mm512_loadu_si512(p.add(i).cast()) };
            sum = _mm512_dpbusd_epi32(sum, bias, q);
            i += 64;
        }
        _mm512_reduce_add_epi32(sum)
    }

    /// AVX2 [`super::dot_i8`]: 32 codes per step. `maddubs` multiplies unsigned by signed
    /// bytes, so the row's sign is moved onto the query (`|c| × (q · sign c)`, the same
    /// product), then pairs of 16-bit sums are widened to i32 by `madd` with ones.
    ///
    /// # Safety
    /// The CPU must support `avx2`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_i8_avx2(query: &[i8], codes: &[i8]) -> i32 {
        let n = query.len().min(codes.len());
        let (pq, pc) = (query.as_ptr(), codes.as_ptr());
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_si256(); 2];
        let mut i = 0;
        while i + 32 <= n {
            // SAFETY: `i + 32 <= n`, within both slices; unaligned loads.
            let (q, c) = unsafe {
                (
                    _mm256_loadu_si256(pq.add(i).cast()),
                    _mm256_loadu_si256(pc.add(i).cast()),
                )
            };
            let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(c), _mm256_sign_epi8(q, c));
            // Two accumulators alternate, so consecutive steps do not wait on each other.
            let lane = (i / 32) % 2;
            acc[lane] = _mm256_add_epi32(acc[lane], _mm256_madd_epi16(pairs, ones));
            i += 32;
        }
        let sum = _mm256_add_epi32(acc[0], acc[1]);
        let mut lanes = [0i32; 8];
        // SAFETY: `lanes` is 32 bytes; unaligned store.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), sum) };
        lanes.iter().sum::<i32>() + super::dot_i8_portable(&query[i..n], &codes[i..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::quant::test_rng::Rng;

    #[test]
    fn int8_simd_matches_portable_on_random_and_extreme_codes() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for n in (0..=200).chain([384, 1000, 3071, 3072, 3073]) {
            let random_q: Vec<i8> = (0..n)
                .map(|_| ((rng.next() % 255) as i32 - 127) as i8)
                .collect();
            let random_c: Vec<i8> = (0..n).map(|_| rng.next() as i8).collect();
            let cases: [(Vec<i8>, Vec<i8>); 5] = [
                (vec![0; n], vec![0; n]),
                (vec![127; n], vec![-128; n]),
                (vec![-127; n], vec![-128; n]),
                (vec![127; n], vec![127; n]),
                (random_q, random_c),
            ];
            for (q, c) in &cases {
                let expected: i32 = q
                    .iter()
                    .zip(c)
                    .map(|(&a, &b)| i32::from(a) * i32::from(b))
                    .sum();
                assert_eq!(dot_i8_portable(q, c), expected, "portable, n = {n}");
                assert_eq!(dot_i8(q, c), expected, "dispatched, n = {n}");
                let prepared = Int8Query::new(q.clone());
                assert_eq!(prepared.dot(c), expected, "prepared query, n = {n}");
                // A row of another length falls back to the common length.
                assert_eq!(prepared.dot(&c[..n / 2]), dot_i8(q, &c[..n / 2]), "n = {n}");
                #[cfg(target_arch = "x86_64")]
                {
                    if std::arch::is_x86_feature_detected!("avx2") {
                        // SAFETY: AVX2 is present (checked just above).
                        let avx2 = unsafe { x86::dot_i8_avx2(q, c) };
                        assert_eq!(avx2, expected, "avx2, n = {n}");
                    }
                    if x86::has_vnni() {
                        let bias = vnni_bias(&q[..n]);
                        // SAFETY: AVX-512 F, BW and VNNI are present (checked just above);
                        // `bias` is of `q` over the common length `n`.
                        let vnni = unsafe { x86::dot_i8_vnni(q, c, bias) };
                        assert_eq!(vnni, expected, "vnni, n = {n}");
                    }
                }
            }
        }
    }
}
