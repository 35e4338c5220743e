//! Interleaving sixteen planes into position-major vectors of sixteen lanes, and back.
//!
//! `interleave16` turns 16 planes (`plane[lane][pos]`) into `out[pos][lane]`; `deinterleave16`
//! undoes it. On a CPU with AVX-512F each block of 16 positions is one 16 × 16 transpose in
//! registers (16 loads, 64 shuffles, 16 stores); with AVX2, four 8 × 8 transposes (24 shuffles
//! each); elsewhere, and for the last `n mod 16` positions, a scalar loop. Every path only moves
//! values, so all give the same result.

/// Lanes per position.
pub(crate) const LANES: usize = 16;

/// `out[pos · 16 + lane] = planes[lane · stride + pos]` for `pos < n`, `lane < 16`.
///
/// # Panics
/// When a slice is too short (a bug of the caller in this crate).
pub(crate) fn interleave16(planes: &[f32], stride: usize, n: usize, out: &mut [f32]) {
    assert!(n <= stride && planes.len() >= 15 * stride + n && out.len() >= LANES * n);
    let done = vector_blocks(n, |p0| transpose_in(planes, stride, p0, out));
    for pos in done..n {
        for lane in 0..LANES {
            out[pos * LANES + lane] = planes[lane * stride + pos];
        }
    }
}

/// `planes[lane · stride + pos] = src[pos · 16 + lane]` for `pos < n`, `lane < 16` (the
/// inverse of [`interleave16`]).
///
/// # Panics
/// When a slice is too short (a bug of the caller in this crate).
pub(crate) fn deinterleave16(src: &[f32], stride: usize, n: usize, planes: &mut [f32]) {
    assert!(n <= stride && planes.len() >= 15 * stride + n && src.len() >= LANES * n);
    let done = vector_blocks(n, |p0| transpose_out(src, stride, p0, planes));
    for pos in done..n {
        for lane in 0..LANES {
            planes[lane * stride + pos] = src[pos * LANES + lane];
        }
    }
}

/// `out[pos · 16 + lane] = src[lane · stride + pos]` for all 16 positions of 16 rows that may
/// overlap (`stride < 16`, e.g. the nine taps of sixteen 3 × 3 filters): one register
/// transpose. Returns `false`, writing nothing, where the transposes are not available.
///
/// # Panics
/// When `src` is shorter than `15 · stride + 16` (a bug of the caller in this crate).
pub(crate) fn interleave16_rows(src: &[f32], stride: usize, out: &mut [f32; LANES * LANES]) -> bool {
    assert!(src.len() >= 15 * stride + LANES);
    if !fast() {
        return false;
    }
    transpose_in(src, stride, 0, out);
    true
}

/// Whether the register transposes are available (AVX-512F or AVX2).
pub(crate) fn fast() -> bool {
    crate::wide::isa() >= crate::wide::Isa::Avx2
}

/// `out[c · out_stride + r] = rows[r][c]` with the widest transpose [`fast`] allows.
///
/// # Safety
/// [`fast`] must be true; every row must hold 16 values.
///
/// # Panics
/// When `out` is shorter than `15 · out_stride + 16` or `out_stride < 16`.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
unsafe fn transpose16(rows: [&[f32]; LANES], out: &mut [f32], out_stride: usize) {
    assert!(out_stride >= LANES && out.len() >= (LANES - 1) * out_stride + LANES);
    // SAFETY: the ISA is checked on each branch; the rows are the caller's, `out` checked above.
    unsafe {
        match crate::wide::isa() {
            crate::wide::Isa::Avx512 => avx512::transpose(rows, out, out_stride),
            _ => avx2::transpose(rows, out, out_stride),
        }
    }
}

/// Calls `block(p0)` for every whole block of 16 positions when the transposes are available;
/// returns how many positions were done.
#[inline(always)]
fn vector_blocks(n: usize, mut block: impl FnMut(usize)) -> usize {
    if !fast() {
        return 0;
    }
    let full = n / LANES * LANES;
    for p0 in (0..full).step_by(LANES) {
        block(p0);
    }
    full
}

/// Positions `p0..p0 + 16` of the 16 planes into `out[p0 · 16..]`.
#[cfg(target_arch = "x86_64")]
fn transpose_in(planes: &[f32], stride: usize, p0: usize, out: &mut [f32]) {
    let rows: [&[f32]; LANES] = std::array::from_fn(|lane| &planes[lane * stride + p0..lane * stride + p0 + LANES]);
    let out = &mut out[p0 * LANES..(p0 + LANES) * LANES];
    // SAFETY: `fast()` was checked before any call; every row holds 16 values and `out` 256.
    #[allow(unsafe_code)]
    unsafe {
        transpose16(rows, out, LANES)
    };
}

/// The 16 × 16 block at `src[p0 · 16..]` into positions `p0..p0 + 16` of the 16 planes.
#[cfg(target_arch = "x86_64")]
fn transpose_out(src: &[f32], stride: usize, p0: usize, planes: &mut [f32]) {
    let rows: [&[f32]; LANES] = std::array::from_fn(|pos| &src[(p0 + pos) * LANES..(p0 + pos + 1) * LANES]);
    // SAFETY: `fast()` was checked before any call; every row holds 16 values.
    #[allow(unsafe_code)]
    unsafe {
        transpose16(rows, &mut planes[p0..], stride)
    };
}

#[cfg(not(target_arch = "x86_64"))]
fn transpose_in(_: &[f32], _: usize, _: usize, _: &mut [f32]) {}

#[cfg(not(target_arch = "x86_64"))]
fn transpose_out(_: &[f32], _: usize, _: usize, _: &mut [f32]) {}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512, _mm512_loadu_ps, _mm512_shuffle_f32x4, _mm512_shuffle_ps, _mm512_storeu_ps, _mm512_unpackhi_ps,
        _mm512_unpacklo_ps,
    };

    use super::LANES;

    /// `out[c · 16 + r] = rows[r][c]`: unpack pairs of rows, then shuffle 32-bit pairs, then two
    /// rounds of 128-bit lane shuffles.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; every row must hold 16 values and `out` `15 · out_stride + 16`.
    #[target_feature(enable = "avx512f")]
    #[allow(unsafe_code)]
    pub(super) unsafe fn transpose(rows: [&[f32]; LANES], out: &mut [f32], out_stride: usize) {
        debug_assert!(rows.iter().all(|r| r.len() >= LANES) && out.len() >= (LANES - 1) * out_stride + LANES);
        // SAFETY: each row holds 16 values (caller).
        let r: [__m512; LANES] = std::array::from_fn(|i| unsafe { _mm512_loadu_ps(rows[i].as_ptr()) });
        // t[2i] = a0 b0 a1 b1 | a4 b4 a5 b5 | …, t[2i+1] = a2 b2 a3 b3 | … for rows a = 2i, b = 2i+1
        let t: [__m512; LANES] = std::array::from_fn(|i| {
            let (a, b) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_ps(a, b)
            } else {
                _mm512_unpackhi_ps(a, b)
            }
        });
        // u[4g + j] = column j (+4, +8, +12 in the other 128-bit lanes) of rows 4g..4g + 4
        let u: [__m512; LANES] = std::array::from_fn(|i| {
            let (g, j) = (i / 4, i % 4);
            let (a, b) = (t[4 * g + j / 2], t[4 * g + 2 + j / 2]);
            if j % 2 == 0 {
                _mm512_shuffle_ps::<0x44>(a, b)
            } else {
                _mm512_shuffle_ps::<0xEE>(a, b)
            }
        });
        for j in 0..4 {
            // 128-bit lanes 0, 2 (even) and 1, 3 (odd) of two row groups each
            let v_even = _mm512_shuffle_f32x4::<0x88>(u[j], u[4 + j]);
            let v_odd = _mm512_shuffle_f32x4::<0xDD>(u[j], u[4 + j]);
            let w_even = _mm512_shuffle_f32x4::<0x88>(u[8 + j], u[12 + j]);
            let w_odd = _mm512_shuffle_f32x4::<0xDD>(u[8 + j], u[12 + j]);
            let columns = [
                (j, _mm512_shuffle_f32x4::<0x88>(v_even, w_even)),
                (j + 8, _mm512_shuffle_f32x4::<0xDD>(v_even, w_even)),
                (j + 4, _mm512_shuffle_f32x4::<0x88>(v_odd, w_odd)),
                (j + 12, _mm512_shuffle_f32x4::<0xDD>(v_odd, w_odd)),
            ];
            for (c, v) in columns {
                // SAFETY: `out` holds `15 · out_stride + 16` values (caller); c < 16.
                unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(c * out_stride), v) };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256, _mm256_loadu_ps, _mm256_permute2f128_ps, _mm256_shuffle_ps, _mm256_storeu_ps, _mm256_unpackhi_ps,
        _mm256_unpacklo_ps,
    };

    use super::LANES;

    /// `out[c · 16 + r] = rows[r][c]` as four 8 × 8 transposes: unpack pairs of rows, shuffle
    /// 32-bit pairs, then swap 128-bit halves.
    ///
    /// # Safety
    /// The CPU must have AVX2; every row must hold 16 values and `out` `15 · out_stride + 16`.
    #[target_feature(enable = "avx2")]
    #[allow(unsafe_code)]
    pub(super) unsafe fn transpose(rows: [&[f32]; LANES], out: &mut [f32], out_stride: usize) {
        debug_assert!(rows.iter().all(|r| r.len() >= LANES) && out.len() >= (LANES - 1) * out_stride + LANES);
        for (bi, bj) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            // SAFETY: each row holds 16 values (caller), so 8bj + 8 ≤ 16.
            let r: [__m256; 8] =
                std::array::from_fn(|i| unsafe { _mm256_loadu_ps(rows[8 * bi + i][8 * bj..].as_ptr()) });
            // t[2i] = a0 b0 a1 b1 | a4 b4 a5 b5, t[2i+1] = a2 b2 a3 b3 | a6 b6 a7 b7 (rows a = 2i, b = 2i+1)
            let t: [__m256; 8] = std::array::from_fn(|i| {
                let (a, b) = (r[i & !1], r[i | 1]);
                if i % 2 == 0 {
                    _mm256_unpacklo_ps(a, b)
                } else {
                    _mm256_unpackhi_ps(a, b)
                }
            });
            // u[4g + j] = column j (and j + 4 in the upper half) of rows 4g..4g + 4
            let u: [__m256; 8] = std::array::from_fn(|i| {
                let (g, j) = (i / 4, i % 4);
                let (a, b) = (t[4 * g + j / 2], t[4 * g + 2 + j / 2]);
                if j % 2 == 0 {
                    _mm256_shuffle_ps::<0x44>(a, b)
                } else {
                    _mm256_shuffle_ps::<0xEE>(a, b)
                }
            });
            for j in 0..4 {
                let columns = [
                    (j, _mm256_permute2f128_ps::<0x20>(u[j], u[4 + j])),
                    (j + 4, _mm256_permute2f128_ps::<0x31>(u[j], u[4 + j])),
                ];
                for (c, v) in columns {
                    // SAFETY: `out` holds `15 · out_stride + 16` values (caller); 8bj + c < 16 and
                    // 8bi + 8 ≤ 16.
                    unsafe { _mm256_storeu_ps(out.as_mut_ptr().add((8 * bj + c) * out_stride + 8 * bi), v) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    #[allow(unsafe_code)]
    fn both_register_transposes_transpose() {
        let data: Vec<f32> = (0..256).map(|v| v as f32 - 100.0).collect();
        let rows: [&[f32]; LANES] = std::array::from_fn(|r| &data[r * LANES..(r + 1) * LANES]);
        let expected: Vec<f32> = (0..256).map(|i| data[(i % LANES) * LANES + i / LANES]).collect();
        if std::arch::is_x86_feature_detected!("avx2") {
            let mut out = vec![f32::NAN; 256];
            // SAFETY: AVX2 checked above; 16 rows of 16 values, 256 outputs.
            unsafe { avx2::transpose(rows, &mut out, LANES) };
            assert_eq!(out, expected);
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            let mut out = vec![f32::NAN; 256];
            // SAFETY: AVX-512F checked above; 16 rows of 16 values, 256 outputs.
            unsafe { avx512::transpose(rows, &mut out, LANES) };
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn interleave_and_back_for_whole_blocks_and_tails() {
        for (n, stride) in [(16usize, 16usize), (64, 64), (49, 50), (7, 9), (33, 33)] {
            let planes: Vec<f32> = (0..15 * stride + n).map(|v| v as f32 * 0.5 - 7.0).collect();
            let mut inter = vec![f32::NAN; LANES * n];
            interleave16(&planes, stride, n, &mut inter);
            for (pos, lane) in (0..n).flat_map(|p| (0..LANES).map(move |l| (p, l))) {
                assert_eq!(
                    inter[pos * LANES + lane],
                    planes[lane * stride + pos],
                    "{n} {stride} {pos} {lane}"
                );
            }
            let mut back = vec![0.0; 15 * stride + n];
            deinterleave16(&inter, stride, n, &mut back);
            for (lane, pos) in (0..LANES).flat_map(|l| (0..n).map(move |p| (l, p))) {
                assert_eq!(back[lane * stride + pos], planes[lane * stride + pos]);
            }
        }
    }

    #[test]
    fn overlapping_rows_interleave_in_one_transpose() {
        // Sixteen filters of nine taps: row `lane` starts nine values after the previous one.
        let src: Vec<f32> = (0..15 * 9 + LANES).map(|v| v as f32 - 60.0).collect();
        let mut out = [f32::NAN; LANES * LANES];
        if !interleave16_rows(&src, 9, &mut out) {
            assert!(!fast(), "the transposes are available but were not run");
            assert!(out.iter().all(|v| v.is_nan()), "nothing may be written without them");
            return;
        }
        for (pos, lane) in (0..LANES).flat_map(|p| (0..LANES).map(move |l| (p, l))) {
            assert_eq!(
                out[pos * LANES + lane],
                src[lane * 9 + pos],
                "position {pos}, lane {lane}"
            );
        }
    }
}
