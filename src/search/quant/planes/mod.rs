//! The sign-bit estimate as popcounts: the query quantized to 4 bits and split into bit planes.
//!
//! A row's binary code is a set of components (those above the corpus mean), and its estimate
//! is the sum of the query's codes over that set. With the query as 4-bit two's-complement
//! codes `q = b0 + 2·b1 + 4·b2 − 8·b3` and plane `Pp` holding bit `bp` of every component,
//!
//! ```text
//! Σ_{j ∈ row} q_j = pop(r & P0) + 2·pop(r & P1) + 4·pop(r & P2) − 8·pop(r & P3)
//!                 = pop(r & P0) + 2·pop(r & P1) + 4·pop(r & P2) + 8·pop(!r & P3) − 8·pop(P3)
//! ```
//!
//! The second form has only non-negative terms and a per-query constant, so a byte of row
//! bits contributes at most `8 + 16 + 32 + 64 = 120`: the SIMD kernels add the four weighted
//! per-byte popcounts in one byte without overflow and widen once per step. Every kernel
//! computes the same integer, so the SIMD and portable versions are compared with
//! `assert_eq!`, and the estimate is exactly `Σ_{j ∈ row} q_j` (see the tests).
//!
//! Four bits of query instead of eight is an approximation of the int8 asymmetric estimate:
//! the row's single bit per component dominates the error, and the recall measured in
//! `tests/quant.rs` after rescoring is what sets the default oversampling.

/// Largest magnitude of a 4-bit query code: the range is symmetric, `[-7, 7]`.
pub const QUERY_CODE_MAX: i8 = 7;

/// Planes are padded with zero bytes to a multiple of this, so a SIMD step never reads past
/// them, and the padding counts nothing. The row's bits are read only within the row: the
/// AVX-512 kernel's last step masks its load, the AVX2 kernel's tail goes through the
/// portable one.
const PLANE_ALIGN: usize = 64;

/// Which kernel scores rows, chosen once per query from the CPU's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// `u64` words and `count_ones`, any CPU.
    Portable,
    /// AVX2: per-nibble popcounts by `vpshufb` from 16-entry tables, 32 bytes per step.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 BITALG: per-byte popcounts (`vpopcntb`), 64 bytes per step.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        for kernel in [Kernel::Avx512, Kernel::Avx2] {
            if kernel.is_supported() {
                return kernel;
            }
        }
        Kernel::Portable
    }

    /// Whether this CPU runs the kernel.
    pub fn is_supported(self) -> bool {
        match self {
            Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512bitalg")
                    && std::arch::is_x86_feature_detected!("avx512bw")
            }
        }
    }

    /// Every kernel this CPU runs (for tests and benchmarks that compare them).
    pub fn available() -> Vec<Self> {
        let all = [
            Kernel::Portable,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512,
        ];
        all.into_iter().filter(|k| k.is_supported()).collect()
    }
}

/// A unit query as four bit planes over the components of a binary code row.
#[derive(Debug, Clone)]
pub struct QueryPlanes {
    /// Bytes of a code row (`⌈dims / 8⌉`).
    stride: usize,
    /// Plane `p` at `p × padded .. p × padded + stride`, zero beyond.
    planes: Vec<u8>,
    padded: usize,
    /// `8 × pop(P3)`: subtracted from the non-negative sum the kernels compute.
    offset: i32,
    kernel: Kernel,
}

impl QueryPlanes {
    /// `unit` quantized to `[-QUERY_CODE_MAX, QUERY_CODE_MAX]` (largest component at the
    /// ends) and split into planes, scored by the fastest kernel of this CPU.
    pub fn new(unit: &[f32]) -> Self {
        Self::with_kernel(unit, Kernel::detect())
    }

    /// Like [`QueryPlanes::new`] with a given kernel, which this CPU must support (checked).
    pub fn with_kernel(unit: &[f32], kernel: Kernel) -> Self {
        Self::from_codes(&quantize(unit), kernel)
    }

    /// Planes of 4-bit codes given directly (each in `[-8, 7]`, checked).
    pub fn from_codes(codes: &[i8], kernel: Kernel) -> Self {
        assert!(
            kernel.is_supported(),
            "kernel {kernel:?} is not supported by this CPU"
        );
        assert!(codes.iter().all(|&q| (-8..=7).contains(&q)), "4-bit codes");
        let stride = codes.len().div_ceil(8);
        let padded = stride.div_ceil(PLANE_ALIGN) * PLANE_ALIGN;
        let mut planes = vec![0u8; 4 * padded];
        for (byte, chunk) in codes.chunks(8).enumerate() {
            // Bit `k` of plane byte `p`: bit `p` of the two's-complement nibble of code `k`.
            // The eight codes as the bytes of a word: bit `p` of each byte is masked out and
            // the multiplication gathers byte `k`'s bit into bit `56 + k`.
            let mut word = [0u8; 8];
            for (w, &q) in word.iter_mut().zip(chunk) {
                *w = q as u8;
            }
            let word = u64::from_le_bytes(word);
            for p in 0..4 {
                let lows = word >> p & 0x0101_0101_0101_0101;
                planes[p * padded + byte] = (lows.wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8;
            }
        }
        let top = &planes[3 * padded..3 * padded + stride];
        let offset = 8 * top.iter().map(|b| b.count_ones() as i32).sum::<i32>();
        QueryPlanes {
            stride,
            planes,
            padded,
            offset,
            kernel,
        }
    }

    /// Bytes of a code row these planes score.
    pub fn stride(&self) -> usize {
        self.stride
    }

    fn plane(&self, p: usize) -> &[u8] {
        &self.planes[p * self.padded..(p + 1) * self.padded]
    }

    /// `Σ q_j` over the components whose bit is set in `bits`, exactly. `bits` must hold
    /// [`QueryPlanes::stride`] bytes (checked); bits beyond the query's length count nothing.
    #[inline]
    pub fn score(&self, bits: &[u8]) -> i32 {
        assert!(bits.len() >= self.stride, "a bit per component");
        let bits = &bits[..self.stride];
        let planes = [self.plane(0), self.plane(1), self.plane(2), self.plane(3)];
        let weighted = match self.kernel {
            Kernel::Portable => weighted_portable(planes, bits),
            // SAFETY: `with_kernel` asserted that this CPU supports the kernel's features;
            // every plane holds at least `bits.len()` bytes.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { x86::weighted_avx2(planes, bits) },
            // SAFETY: as above; and every plane holds `bits.len()` (the stride) rounded up to
            // `PLANE_ALIGN` (64) bytes, zero beyond it.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { x86::weighted_avx512(planes, bits) },
        };
        weighted as i32 - self.offset
    }

    /// [`QueryPlanes::score`] of consecutive rows: `bits` holds `out.len()` rows of
    /// [`QueryPlanes::stride`] bytes each (checked), and `out[i]` gets row `i`'s score.
    ///
    /// A code scan spends most of its time here. Scoring several rows per step lets them
    /// share each loaded 64 bytes of the four planes, and one call per block of rows keeps
    /// the per-row overhead (bounds checks, a kernel dispatch) out of the inner loop.
    pub fn score_rows(&self, bits: &[u8], out: &mut [i32]) {
        let s = self.stride;
        assert_eq!(bits.len(), out.len() * s, "a row of bits per score");
        #[cfg(target_arch = "x86_64")]
        if self.kernel == Kernel::Avx512 {
            let planes = [self.plane(0), self.plane(1), self.plane(2), self.plane(3)];
            // SAFETY: `with_kernel` asserted that this CPU supports the kernel's features;
            // every plane holds `stride` rounded up to `PLANE_ALIGN` (64) bytes, zero beyond
            // `stride`, and `bits` holds `out.len()` rows of `stride` bytes (asserted above).
            unsafe { x86::weighted_rows_avx512(planes, bits, s, out) };
            for score in out.iter_mut() {
                *score -= self.offset;
            }
            return;
        }
        for (score, row) in out.iter_mut().zip(bits.chunks_exact(s.max(1))) {
            *score = self.score(row);
        }
    }
}

/// The unit query as 4-bit codes in `[-QUERY_CODE_MAX, QUERY_CODE_MAX]`.
pub fn quantize(unit: &[f32]) -> Vec<i8> {
    super::query::query_codes(unit, QUERY_CODE_MAX)
}

/// The non-negative sum `pop(r&P0) + 2·pop(r&P1) + 4·pop(r&P2) + 8·pop(!r&P3)` over
/// `bits` (every plane at least as long): `u64` words, then single bytes.
#[inline]
fn weighted_portable(planes: [&[u8]; 4], bits: &[u8]) -> u32 {
    let n = bits.len();
    let words = n / 8 * 8;
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8"));
    let mut sum = 0u32;
    for at in (0..words).step_by(8) {
        let r = word(bits, at);
        sum += (r & word(planes[0], at)).count_ones()
            + 2 * (r & word(planes[1], at)).count_ones()
            + 4 * (r & word(planes[2], at)).count_ones()
            + 8 * (!r & word(planes[3], at)).count_ones();
    }
    for at in words..n {
        let r = bits[at];
        sum += (r & planes[0][at]).count_ones()
            + 2 * (r & planes[1][at]).count_ones()
            + 4 * (r & planes[2][at]).count_ones()
            + 8 * (!r & planes[3][at]).count_ones();
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::quant::test_rng::Rng;

    /// `Σ q_j` over the set bits, the definition the kernels must meet.
    fn reference(codes: &[i8], bits: &[u8]) -> i32 {
        (0..codes.len())
            .filter(|j| bits[j / 8] >> (j % 8) & 1 == 1)
            .map(|j| i32::from(codes[j]))
            .sum()
    }

    /// Every kernel of this CPU, at every length around the step sizes (8, 32, 64 bytes) and
    /// the corpus's, with extreme and random codes and bits, including garbage in the unused
    /// high bits of the last byte (a damaged file): each returns exactly the reference.
    #[test]
    fn every_kernel_is_exact_at_every_tail_length() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let kernels = Kernel::available();
        for n in (0..=600usize).chain([1000, 3071, 3072, 3073]) {
            let random_q: Vec<i8> = (0..n).map(|_| (rng.next() % 16) as i8 - 8).collect();
            let bytes = n.div_ceil(8);
            let random_bits: Vec<u8> = (0..bytes).map(|_| rng.next() as u8).collect();
            for q in [vec![0i8; n], vec![7; n], vec![-8; n], vec![-7; n], random_q] {
                for bits in [vec![0u8; bytes], vec![0xff; bytes], random_bits.clone()] {
                    let want = reference(&q, &bits);
                    for &kernel in &kernels {
                        let planes = QueryPlanes::from_codes(&q, kernel);
                        assert_eq!(planes.score(&bits), want, "{kernel:?}, n = {n}");
                    }
                }
            }
        }
    }

    /// The row's bits may start at any address (rows of 48 bytes are not 64-aligned).
    #[test]
    fn kernels_read_unaligned_rows() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let n = 1024;
        let q: Vec<i8> = (0..n).map(|_| (rng.next() % 15) as i8 - 7).collect();
        let bits: Vec<u8> = (0..n / 8 + 7).map(|_| rng.next() as u8).collect();
        for offset in 0..7 {
            let row = &bits[offset..offset + n / 8];
            for kernel in Kernel::available() {
                let planes = QueryPlanes::from_codes(&q, kernel);
                assert_eq!(
                    planes.score(row),
                    reference(&q, row),
                    "{kernel:?} +{offset}"
                );
            }
        }
    }

    /// Scoring a block of rows gives each row's own score, for every kernel, at strides with
    /// and without a tail past the 64-byte steps, past the AVX-512 kernel's byte counters'
    /// flush (31 steps: 15,872 components) and at every count around the 4-row pass. Extreme
    /// codes and all-set or all-clear rows fill the counters to their limit.
    #[test]
    fn blocks_of_rows_score_as_single_rows() {
        let mut rng = Rng(0x6a09_e667_f3bc_c908);
        for n in [
            1usize, 64, 500, 512, 520, 1024, 3072, 3080, 15_872, 15_880, 40_000,
        ] {
            let stride = n.div_ceil(8);
            for (q, byte) in [
                (vec![-8i8; n], 0x00u8),
                (vec![7; n], 0xff),
                (vec![-1; n], 0x00),
            ] {
                let bits = vec![byte; 5 * stride];
                for kernel in Kernel::available() {
                    let mut out = vec![0; 5];
                    QueryPlanes::from_codes(&q, kernel).score_rows(&bits, &mut out);
                    let want = reference(&q, &bits[..stride]);
                    assert_eq!(out, vec![want; 5], "{kernel:?}, n = {n}, extreme");
                }
            }
        }
        for n in [
            1usize, 64, 384, 500, 512, 520, 768, 1024, 3072, 3080, 15_872, 15_880, 40_000,
        ] {
            let stride = n.div_ceil(8);
            let q: Vec<i8> = (0..n).map(|_| (rng.next() % 16) as i8 - 8).collect();
            for rows in 0..=9 {
                let bits: Vec<u8> = (0..rows * stride).map(|_| rng.next() as u8).collect();
                for kernel in Kernel::available() {
                    let planes = QueryPlanes::from_codes(&q, kernel);
                    let mut out = vec![i32::MIN; rows];
                    planes.score_rows(&bits, &mut out);
                    let want: Vec<i32> = bits
                        .chunks_exact(stride)
                        .map(|row| reference(&q, row))
                        .collect();
                    assert_eq!(out, want, "{kernel:?}, n = {n}, {rows} rows");
                }
            }
        }
    }

    /// Rows that end where readable memory ends: every kernel reads only the row's bytes,
    /// whatever its length's tail past the 64-byte steps (768 components are 96 bytes, 384
    /// are 48), so none touches the unreadable page after it.
    #[test]
    #[cfg(target_os = "linux")]
    fn rows_ending_against_an_unreadable_page_are_read_within() {
        let page = 4096;
        // SAFETY: a fresh private anonymous mapping of two pages, not aliased; the second is
        // made unreadable before any use, and the mapping is unmapped at the end.
        let base = unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(base, libc::MAP_FAILED);
            assert_eq!(
                libc::mprotect(base.cast::<u8>().add(page).cast(), page, libc::PROT_NONE),
                0
            );
            base.cast::<u8>()
        };
        // SAFETY: the first page is readable and writable, and only this test uses it.
        let first = unsafe { std::slice::from_raw_parts_mut(base, page) };
        let mut rng = Rng(0x3c6e_f372_fe94_f82b);
        first.iter_mut().for_each(|b| *b = rng.next() as u8);
        for n in [8usize, 384, 520, 768, 1000, 3072] {
            let stride = n.div_ceil(8);
            let rows = 5;
            let bits = &first[page - rows * stride..];
            let q: Vec<i8> = (0..n).map(|_| (rng.next() % 16) as i8 - 8).collect();
            let want: Vec<i32> = bits
                .chunks_exact(stride)
                .map(|row| reference(&q, row))
                .collect();
            for kernel in Kernel::available() {
                let planes = QueryPlanes::from_codes(&q, kernel);
                let mut out = vec![0; rows];
                planes.score_rows(bits, &mut out);
                assert_eq!(out, want, "{kernel:?}, n = {n}");
                assert_eq!(planes.score(&bits[(rows - 1) * stride..]), want[rows - 1]);
            }
        }
        // SAFETY: the mapping made above, no longer borrowed.
        assert_eq!(unsafe { libc::munmap(base.cast(), 2 * page) }, 0);
    }

    #[test]
    #[should_panic(expected = "a row of bits per score")]
    fn blocks_must_hold_whole_rows() {
        QueryPlanes::from_codes(&[1; 16], Kernel::detect()).score_rows(&[0; 5], &mut [0; 2]);
    }

    #[test]
    fn the_detected_kernel_is_available() {
        assert!(Kernel::available().contains(&Kernel::detect()));
    }

    #[test]
    fn query_codes_reach_the_full_range() {
        assert_eq!(quantize(&[0.5, -0.25, 0.0, -0.5]), [7, -4, 0, -7]);
        assert_eq!(quantize(&[0.0, 0.0]), [0, 0]);
    }

    #[test]
    #[should_panic(expected = "a bit per component")]
    fn short_rows_are_refused() {
        QueryPlanes::from_codes(&[1; 17], Kernel::Portable).score(&[1, 2]);
    }
}
