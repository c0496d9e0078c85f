//! The sign-bit kernels for x86-64: AVX2 (a nibble table by `vpshufb`) and AVX-512 BITALG
//! (`vpopcntb`), each computing exactly what [`super::weighted_portable`] does. Chosen at run
//! time by [`super::Kernel`]; the tests in the parent module compare them with the portable
//! version.

use std::arch::x86_64::*;

/// AVX2 [`super::weighted_portable`]: 32 bytes per step. Each plane's masked bytes are
/// split into nibbles, whose popcounts, already multiplied by the plane's weight, come
/// from a 16-entry table by `vpshufb`; a byte's four weighted counts add up to at most
/// 120, and `vpsadbw` widens them to four `u64` lanes once per step.
///
/// # Safety
/// The CPU must support `avx2`, and every plane must hold at least `bits.len()` bytes.
#[target_feature(enable = "avx2")]
pub unsafe fn weighted_avx2(planes: [&[u8]; 4], bits: &[u8]) -> u32 {
    let n = bits.len();
    debug_assert!(planes.iter().all(|p| p.len() >= n));
    let table = |w: i8| {
        let t: [i8; 16] = std::array::from_fn(|i| w * (i as u32).count_ones() as i8);
        // SAFETY: `t` is 16 bytes; unaligned load.
        let lane = unsafe { _mm_loadu_si128(t.as_ptr().cast()) };
        _mm256_broadcastsi128_si256(lane)
    };
    let tables = [table(1), table(2), table(4), table(8)];
    let low = _mm256_set1_epi8(0x0f);
    let zero = _mm256_setzero_si256();
    let pr = bits.as_ptr();
    let pp = planes.map(<[u8]>::as_ptr);
    let mut acc = _mm256_setzero_si256();
    let mut at = 0;
    while at + 32 <= n {
        // SAFETY: `at + 32 <= n`, within `bits` and every plane; unaligned loads.
        let r = unsafe { _mm256_loadu_si256(pr.add(at).cast()) };
        let mut bytes = zero;
        for (p, (&plane, &table)) in pp.iter().zip(&tables).enumerate() {
            // SAFETY: as for `r`.
            let q = unsafe { _mm256_loadu_si256(plane.add(at).cast()) };
            // The top plane counts where the row is clear (`!r & P3`).
            let m = if p == 3 {
                _mm256_andnot_si256(r, q)
            } else {
                _mm256_and_si256(r, q)
            };
            let lo = _mm256_and_si256(m, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16(m, 4), low);
            bytes = _mm256_add_epi8(bytes, _mm256_shuffle_epi8(table, lo));
            bytes = _mm256_add_epi8(bytes, _mm256_shuffle_epi8(table, hi));
        }
        acc = _mm256_add_epi64(acc, _mm256_sad_epu8(bytes, zero));
        at += 32;
    }
    let mut lanes = [0u64; 4];
    // SAFETY: `lanes` is 32 bytes; unaligned store.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc) };
    let tail = super::weighted_portable(planes.map(|p| &p[at..]), &bits[at..]);
    lanes.iter().sum::<u64>() as u32 + tail
}

/// AVX-512 [`super::weighted_portable`]: 64 bytes per step, per-byte popcounts by
/// `vpopcntb`, weighted by doubling (`((8·c3 + 4·c2) + 2·c1) + c0` as
/// `2·(2·(2·c3 + c2) + c1) + c0`, at most 120 a byte), widened by `vpsadbw` once per
/// step. A row whose length is not a multiple of 64 ends in one masked step (768
/// dimensions are 96 bytes, 384 are 48), not in the portable kernel.
///
/// # Safety
/// The CPU must support `avx512bw` and `avx512bitalg`, and every plane must hold at least
/// `bits.len()` rounded up to a multiple of 64 bytes, zero beyond `bits.len()`.
#[target_feature(enable = "avx512bw,avx512bitalg")]
pub unsafe fn weighted_avx512(planes: [&[u8]; 4], bits: &[u8]) -> u32 {
    let n = bits.len();
    debug_assert!(planes.iter().all(|p| p.len() >= n.next_multiple_of(64)));
    // SAFETY: one row of `n` bytes at `bits`, planes as the caller promised.
    let [sum] = unsafe { rows_avx512::<1>(planes, bits.as_ptr(), n) };
    sum
}

/// [`weighted_avx512`] of `out.len()` consecutive rows of `stride` bytes in `bits`,
/// four rows per pass over the planes.
///
/// # Safety
/// The CPU must support `avx512bw` and `avx512bitalg`; every plane must hold at least
/// `stride` rounded up to a multiple of 64 bytes, zero beyond `stride`, and `bits` exactly
/// `out.len() × stride`.
#[target_feature(enable = "avx512bw,avx512bitalg")]
pub unsafe fn weighted_rows_avx512(
    planes: [&[u8]; 4],
    bits: &[u8],
    stride: usize,
    out: &mut [i32],
) {
    debug_assert_eq!(bits.len(), out.len() * stride);
    debug_assert!(planes
        .iter()
        .all(|p| p.len() >= stride.next_multiple_of(64)));
    let mut row = 0;
    while row < out.len() {
        let at = bits.as_ptr().wrapping_add(row * stride);
        if out.len() - row >= 4 {
            // SAFETY: rows `row..row + 4` lie within `bits`; planes as promised.
            let sums = unsafe { rows_avx512::<4>(planes, at, stride) };
            for (out, sum) in out[row..row + 4].iter_mut().zip(sums) {
                *out = sum as i32;
            }
            row += 4;
        } else {
            // SAFETY: row `row` lies within `bits`; planes as promised.
            let [sum] = unsafe { rows_avx512::<1>(planes, at, stride) };
            out[row] = sum as i32;
            row += 1;
        }
    }
}

/// The weighted sums of `R` rows of `len` bytes, `stride` bytes apart from `rows`, in
/// 64-byte steps: each step loads the four planes' bytes once for all `R` rows. The last
/// step of a row whose length is not a multiple of 64 loads only the row's bytes (a
/// masked load reads nothing beyond them, so it cannot fault), and the planes' zero
/// padding counts nothing for the bytes it leaves clear. Whole steps load plainly: a
/// masked load costs more even when its mask takes every byte, and on an AMD EPYC of
/// family 26 (Zen 5) every step masked made a binary search of 64,000 × 3,072 take
/// 2.5–2.8 ms against 1.03–1.08 ms with whole steps loaded plainly (in turns, two runs).
///
/// Each plane's per-byte popcounts are summed in bytes over up to [`STEPS_PER_FLUSH`]
/// steps (at most 8 a step, so at most 248), and only then widened by `vpsadbw` and
/// weighted in 64-bit lanes: a step costs three instructions per plane (mask, count,
/// add) and the weighting is paid once per row, not once per step.
///
/// # Safety
/// The CPU must support `avx512bw` and `avx512bitalg`; the `R` rows' first `stride` bytes
/// must be readable, and the planes' first `stride` rounded up to a multiple of 64 bytes,
/// zero beyond `stride`.
#[inline]
#[target_feature(enable = "avx512bw,avx512bitalg")]
unsafe fn rows_avx512<const R: usize>(
    planes: [&[u8]; 4],
    rows: *const u8,
    stride: usize,
) -> [u32; R] {
    let zero = _mm512_setzero_si512();
    let [p0, p1, p2, p3] = planes;
    let mut total = [zero; R];
    let mut at = 0;
    while at < stride {
        let end = (at + 64 * STEPS_PER_FLUSH).min(stride);
        let mut counts = [[zero; 4]; R];
        while at < end {
            // All 64 bytes of a whole step, the row's remaining bytes of the last.
            let mask: __mmask64 = match stride - at {
                64.. => !0,
                left => (1u64 << left) - 1,
            };
            // SAFETY: `at < stride`, so `at + 64` is within every plane's rounded-up
            // length (the caller's contract); unaligned loads.
            let (q0, q1, q2, q3) = unsafe {
                (
                    _mm512_loadu_si512(p0.as_ptr().add(at).cast()),
                    _mm512_loadu_si512(p1.as_ptr().add(at).cast()),
                    _mm512_loadu_si512(p2.as_ptr().add(at).cast()),
                    _mm512_loadu_si512(p3.as_ptr().add(at).cast()),
                )
            };
            for (r, [c0, c1, c2, c3]) in counts.iter_mut().enumerate() {
                let row = rows.wrapping_add(r * stride + at);
                let x = if mask == !0 {
                    // SAFETY: a whole step: `at + 64 <= stride`, within row `r`'s first
                    // `stride` bytes (the caller's contract); an unaligned load.
                    unsafe { _mm512_loadu_si512(row.cast()) }
                } else {
                    // SAFETY: the mask keeps the load within row `r`'s first `stride`
                    // bytes (the caller's contract); masked-off bytes are not read and
                    // are zero.
                    unsafe { _mm512_maskz_loadu_epi8(mask, row.cast()) }
                };
                // The top plane counts where the row is clear (`!r & P3`); beyond the
                // row, the plane is zero.
                *c3 = _mm512_add_epi8(*c3, _mm512_popcnt_epi8(_mm512_andnot_si512(x, q3)));
                *c2 = _mm512_add_epi8(*c2, _mm512_popcnt_epi8(_mm512_and_si512(x, q2)));
                *c1 = _mm512_add_epi8(*c1, _mm512_popcnt_epi8(_mm512_and_si512(x, q1)));
                *c0 = _mm512_add_epi8(*c0, _mm512_popcnt_epi8(_mm512_and_si512(x, q0)));
            }
            at += 64;
        }
        for (total, [c0, c1, c2, c3]) in total.iter_mut().zip(counts) {
            // `8·s3 + 4·s2 + 2·s1 + s0` as `2·(2·(2·s3 + s2) + s1) + s0`.
            let w = _mm512_sad_epu8(c3, zero);
            let w = _mm512_add_epi64(_mm512_slli_epi64::<1>(w), _mm512_sad_epu8(c2, zero));
            let w = _mm512_add_epi64(_mm512_slli_epi64::<1>(w), _mm512_sad_epu8(c1, zero));
            let w = _mm512_add_epi64(_mm512_slli_epi64::<1>(w), _mm512_sad_epu8(c0, zero));
            *total = _mm512_add_epi64(*total, w);
        }
    }
    let mut sums = [0u32; R];
    for (sum, total) in sums.iter_mut().zip(total) {
        *sum = _mm512_reduce_add_epi64(total) as u32;
    }
    sums
}

/// 64-byte steps whose per-byte popcounts [`rows_avx512`] sums in one byte: at most 8 a
/// step, and `31 × 8 = 248` still fits.
const STEPS_PER_FLUSH: usize = 31;
