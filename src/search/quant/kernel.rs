//! Kernels that score quantized codes: an int8 dot product, and a sum of int8 query codes
//! selected by sign bits, each with an AVX2 version chosen at run time and a portable twin.
//!
//! Both compute in integers, so the AVX2 and portable versions return exactly the same value
//! whatever the order of additions (the tests compare them with `assert_eq!`).

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
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked at run time just above).
            return unsafe { x86::dot_i8_avx2(query, codes) };
        }
    }
    dot_i8_portable(query, codes)
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

/// `Σ query[j]` over the components `j` whose bit is set in `bits` (bit `j % 8` of byte
/// `j / 8`), for `j < query.len()`; exactly. `bits` must hold `⌈query.len() / 8⌉` bytes
/// (checked). With the query as int8 codes this is the asymmetric sign-bit estimate: only
/// the row is reduced to bits.
#[inline]
pub fn masked_sum(query: &[i8], bits: &[u8]) -> i32 {
    assert!(bits.len() >= query.len().div_ceil(8), "a bit per component");
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked at run time just above), and `bits`
            // covers every component of `query` (asserted above).
            return unsafe { x86::masked_sum_avx2(query, bits) };
        }
    }
    masked_sum_portable(query, bits)
}

/// Portable [`masked_sum`].
#[inline]
pub fn masked_sum_portable(query: &[i8], bits: &[u8]) -> i32 {
    assert!(bits.len() >= query.len().div_ceil(8), "a bit per component");
    let mut sum = 0i32;
    for (chunk, &byte) in query.chunks(8).zip(bits) {
        for (k, &q) in chunk.iter().enumerate() {
            // 0 or -1: a mask of all ones where the bit is set, without a branch.
            let set = -i32::from((byte >> k) & 1);
            sum += i32::from(q) & set;
        }
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

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

    /// AVX2 [`super::masked_sum`]: 32 components per step. The 4 bytes of bits are spread
    /// to one byte per component (each byte picks its source byte with a shuffle and keeps
    /// its own bit), compared into a mask of 0/-1 bytes, which selects the query codes; the
    /// selected codes are summed to i32 with `maddubs` by ones and `madd` by ones.
    ///
    /// # Safety
    /// The CPU must support `avx2`, and `bits.len() >= ⌈query.len() / 8⌉`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn masked_sum_avx2(query: &[i8], bits: &[u8]) -> i32 {
        let n = query.len();
        let (pq, pb) = (query.as_ptr(), bits.as_ptr());
        // Component k of a 32-component step reads byte k / 8 of the 4 broadcast bytes ...
        let spread = _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, //
            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
        );
        // ... and keeps bit k % 8 of it.
        let bit = _mm256_set1_epi64x(i64::from_le_bytes([1, 2, 4, 8, 16, 32, 64, -128i8 as u8]));
        let ones8 = _mm256_set1_epi8(1);
        let ones16 = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_si256();
        let mut i = 0;
        while i + 32 <= n {
            // SAFETY: `i + 32 <= n`: bytes `i / 8 .. i / 8 + 4` lie within
            // `⌈n / 8⌉ <= bits.len()` (the caller's contract), and 32 query codes within
            // `query`; unaligned reads.
            let (word, q) = unsafe {
                (
                    pb.add(i / 8).cast::<i32>().read_unaligned(),
                    _mm256_loadu_si256(pq.add(i).cast()),
                )
            };
            let spread = _mm256_shuffle_epi8(_mm256_set1_epi32(word), spread);
            let mask = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
            let selected = _mm256_and_si256(mask, q);
            let pairs = _mm256_maddubs_epi16(ones8, selected);
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones16));
            i += 32;
        }
        let mut lanes = [0i32; 8];
        // SAFETY: `lanes` is 32 bytes; unaligned store.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc) };
        lanes.iter().sum::<i32>() + super::masked_sum_portable(&query[i..], &bits[i / 8..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn int8_simd_matches_portable_on_random_and_extreme_codes() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for n in (0..=67).chain([384, 1000, 3072]) {
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
            }
        }
    }

    #[test]
    fn masked_sum_simd_matches_portable_on_random_and_extreme_bits() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for n in (0..=67usize).chain([96, 384, 3072]) {
            let random_q: Vec<i8> = (0..n)
                .map(|_| ((rng.next() % 255) as i32 - 127) as i8)
                .collect();
            let bytes = n.div_ceil(8);
            let random_bits: Vec<u8> = (0..bytes).map(|_| rng.next() as u8).collect();
            for q in [vec![0i8; n], vec![127; n], vec![-127; n], random_q] {
                for bits in [vec![0u8; bytes], vec![0xff; bytes], random_bits.clone()] {
                    let expected: i32 = (0..n)
                        .filter(|j| bits[j / 8] >> (j % 8) & 1 == 1)
                        .map(|j| i32::from(q[j]))
                        .sum();
                    assert_eq!(
                        masked_sum_portable(&q, &bits),
                        expected,
                        "portable, n = {n}"
                    );
                    assert_eq!(masked_sum(&q, &bits), expected, "dispatched, n = {n}");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "a bit per component")]
    fn masked_sum_refuses_too_few_bits() {
        masked_sum(&[1; 17], &[1, 2]);
    }
}
