//! Copies of short rows (a few to a few dozen values) without a `memcpy` call per row, and the
//! even/odd split of a row (stride-2 phases) and its inverse, sixteen values at a time.

/// `dst = src` for short rows, in 8-wide pieces and then pieces of 4, 2 and 1 (no call to
/// `memcpy` per row, and no element loop for the last values: a 7-wide row is three moves).
#[inline(always)]
pub(crate) fn copy_short(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        d.copy_from_slice(s); // 8 long, known when compiled: two moves, no call
    }
    let (d, s) = (d.into_remainder(), s.remainder());
    let len = d.len().min(s.len());
    let mut at = 0;
    for piece in [4, 2, 1] {
        if len - at >= piece {
            d[at..at + piece].copy_from_slice(&s[at..at + piece]);
            at += piece;
        }
    }
}

/// `dst`'s rows of `width` values from `src[start + r · step..][..width]`: the taps of one
/// kernel position in im2col. On AVX-512 rows up to 64 values are whole vectors and one masked
/// load and store (a 7-wide row was three moves and the branches between them; a 32-wide row a
/// call to `memcpy`).
///
/// # Panics
/// When `width` is zero or the last source row reaches past `src`.
pub(crate) fn copy_rows(dst: &mut [f32], width: usize, src: &[f32], start: usize, step: usize) {
    let rows = dst.len() / width;
    if rows == 0 {
        return;
    }
    let end = start + (rows - 1) * step + width;
    assert!(end <= src.len(), "copy_rows: source too short");
    #[cfg(target_arch = "x86_64")]
    if width <= 64 && crate::wide::isa() == crate::wide::Isa::Avx512 {
        // SAFETY: AVX-512F checked; every row read lies inside `src` (asserted above), every row
        // written inside `dst` (`rows · width ≤ dst.len()`).
        #[allow(unsafe_code)]
        return unsafe { masked::copy_rows(dst.as_mut_ptr(), rows, width, src.as_ptr().add(start), step) };
    }
    if width < 16 {
        return copy_short_rows(dst, width, src, start, step);
    }
    for (r, d) in dst.chunks_exact_mut(width).enumerate() {
        let s = &src[start + r * step..start + r * step + width];
        if width < 32 {
            copy_short(d, s);
        } else {
            d.copy_from_slice(s);
        }
    }
}

/// [`copy_rows`] for rows of fewer than 16 values, in whole 8-wide moves: a row of 8 to 15 is two
/// moves that overlap inside it; a row of fewer than 8 is one move whose spill into the next
/// row's first values is overwritten when that row is copied (rows go in order), and the last
/// rows, where 8 values would pass the end of `dst` or `src`, are copied exactly. A 7-wide row
/// was three moves and the branches between them.
fn copy_short_rows(dst: &mut [f32], width: usize, src: &[f32], start: usize, step: usize) {
    let rows = dst.len() / width;
    for r in 0..rows {
        let (d0, s0) = (r * width, start + r * step);
        if width >= 8 {
            dst[d0..d0 + 8].copy_from_slice(&src[s0..s0 + 8]);
            let tail = width - 8;
            dst[d0 + tail..d0 + width].copy_from_slice(&src[s0 + tail..s0 + width]);
        } else if d0 + 8 <= dst.len() && s0 + 8 <= src.len() {
            dst[d0..d0 + 8].copy_from_slice(&src[s0..s0 + 8]);
        } else {
            copy_short(&mut dst[d0..d0 + width], &src[s0..s0 + width]);
        }
    }
}

/// `dst[start + r · step..][..width] += src`'s rows of `width` values: the adjoint of
/// [`copy_rows`], the same additions in the same order (masked AVX-512 rows below 16 values).
///
/// # Panics
/// When `width` is zero or the last destination row reaches past `dst`.
pub(crate) fn add_rows(dst: &mut [f32], start: usize, step: usize, src: &[f32], width: usize) {
    let rows = src.len() / width;
    if rows == 0 {
        return;
    }
    let end = start + (rows - 1) * step + width;
    assert!(end <= dst.len(), "add_rows: destination too short");
    #[cfg(target_arch = "x86_64")]
    if width < 16 && crate::wide::isa() == crate::wide::Isa::Avx512 {
        // SAFETY: AVX-512F checked; every row written lies inside `dst` (asserted above), every
        // row read inside `src` (`rows · width ≤ src.len()`).
        #[allow(unsafe_code)]
        return unsafe { masked::add_rows(dst.as_mut_ptr().add(start), step, src.as_ptr(), rows, width) };
    }
    for (r, s) in src.chunks_exact(width).enumerate() {
        let d = &mut dst[start + r * step..start + r * step + width];
        d.iter_mut().zip(s).for_each(|(a, v)| *a += *v);
    }
}

/// `dst[i] = src[2i]` (a stride-2 gather of a short row): two masked loads, one permute and
/// one masked store on AVX-512 for 9 to 16 values, an element loop otherwise (measured masked:
/// 16 values 1.05–1.07×, 8 values 0.98–0.99×, 4 values 0.87–0.90×).
///
/// # Panics
/// When `src` holds fewer than `2 · dst.len() − 1` values.
pub(crate) fn copy_evens(dst: &mut [f32], src: &[f32]) {
    let n = dst.len();
    if n == 0 {
        return;
    }
    assert!(src.len() > 2 * (n - 1), "copy_evens: source too short");
    #[cfg(target_arch = "x86_64")]
    if (9..=16).contains(&n) && crate::wide::isa() == crate::wide::Isa::Avx512 {
        // SAFETY: AVX-512F checked; `2n − 1` source values and `n` destination values exist.
        #[allow(unsafe_code)]
        return unsafe { masked::copy_evens(dst, src) };
    }
    dst.iter_mut().zip(src.iter().step_by(2)).for_each(|(d, v)| *d = *v);
}

/// One column phase of a stride-2 split for [`split_phase_rows`]: its rows start at
/// `start + r · width`, and phase column `j0 + i` holds input column `ix0 + 2i` for `i < n`
/// (every other column is padding, a zero).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PhaseSpan {
    pub start: usize,
    pub j0: usize,
    pub ix0: usize,
    pub n: usize,
}

/// Extra values [`split_phase_rows`] may write past its last row.
pub(crate) const PHASE_SLACK: usize = 16;

/// Whether [`split_phase_rows`] runs for input rows of `w` values and phase rows of `width`
/// (AVX-512F, `w ≤ 32`, `width ≤ 16`).
pub(crate) fn whole_phase_rows(w: usize, width: usize) -> bool {
    cfg!(target_arch = "x86_64") && w <= 32 && width <= 16 && crate::wide::isa() == crate::wide::Isa::Avx512
}

/// Every phase row of `span` from the `rows` input rows of `w` values in `plane`, written whole
/// (data and zero padding) by one unmasked 16-lane store each: no per-row pair loop, and no
/// masked store (on the Zen 5 measured, a masked split of 14-value rows ran at 0.88–0.91× the
/// pair loop). A store reaches up to `16 − width` values into the next row, which that row's
/// store then overwrites, and past the last row by up to [`PHASE_SLACK`] values: write a
/// buffer's phases in order, each ending where the next begins or in the slack.
///
/// # Panics
/// Unless [`whole_phase_rows`] holds, and when the span or the rows do not fit `plane` or `dst`.
pub(crate) fn split_phase_rows(plane: &[f32], w: usize, rows: usize, dst: &mut [f32], width: usize, span: PhaseSpan) {
    assert!(
        whole_phase_rows(w, width),
        "split_phase_rows: {w}-value rows, {width}-value phases"
    );
    assert!(span.j0 + span.n <= width && (span.n == 0 || span.ix0 + 2 * (span.n - 1) < w));
    if rows == 0 {
        return;
    }
    assert!(rows * w <= plane.len() && span.start + (rows - 1) * width + 16 <= dst.len());
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F checked; every row read and every 16-value store is in bounds (asserted).
    #[allow(unsafe_code)]
    unsafe {
        masked::split_phase_rows(plane.as_ptr(), w, rows, dst.as_mut_ptr(), width, span)
    }
}

#[cfg(target_arch = "x86_64")]
mod masked {
    use std::arch::x86_64::{
        _mm256_storeu_ps, _mm512_add_ps, _mm512_castps512_ps256, _mm512_loadu_ps, _mm512_loadu_si512,
        _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_maskz_permutex2var_ps, _mm512_permutex2var_ps,
        _mm512_storeu_ps,
    };

    /// Whole vectors of 16, then the last `width % 16` values masked.
    ///
    /// # Safety
    /// AVX-512F; `src + r · step` holds `width` values and `dst + r · width` room for them, for
    /// every `r < rows`.
    #[target_feature(enable = "avx512f")]
    #[allow(unsafe_code)]
    pub(super) unsafe fn copy_rows(dst: *mut f32, rows: usize, width: usize, src: *const f32, step: usize) {
        let (whole, mask) = (width / 16 * 16, lanes(width % 16));
        for r in 0..rows {
            // SAFETY: forwarded from the caller; `j + 16 ≤ whole ≤ width` for the whole vectors,
            // masked lanes are neither read nor written.
            unsafe {
                let (s, d) = (src.add(r * step), dst.add(r * width));
                for j in (0..whole).step_by(16) {
                    _mm512_storeu_ps(d.add(j), _mm512_loadu_ps(s.add(j)));
                }
                if mask != 0 {
                    _mm512_mask_storeu_ps(d.add(whole), mask, _mm512_maskz_loadu_ps(mask, s.add(whole)));
                }
            }
        }
    }

    /// # Safety
    /// AVX-512F; `width < 16`; `dst + r · step` and `src + r · width` hold `width` values for
    /// every `r < rows`.
    #[target_feature(enable = "avx512f")]
    #[allow(unsafe_code)]
    pub(super) unsafe fn add_rows(dst: *mut f32, step: usize, src: *const f32, rows: usize, width: usize) {
        let mask = lanes(width);
        for r in 0..rows {
            // SAFETY: forwarded from the caller; masked lanes are neither read nor written.
            unsafe {
                let d = dst.add(r * step);
                let sum = _mm512_add_ps(
                    _mm512_maskz_loadu_ps(mask, d),
                    _mm512_maskz_loadu_ps(mask, src.add(r * width)),
                );
                _mm512_mask_storeu_ps(d, mask, sum);
            }
        }
    }

    /// The low `n` lanes set.
    fn lanes(n: usize) -> u16 {
        ((1u32 << n.min(16)) - 1) as u16
    }

    /// [`super::split_pairs`] for rows of 17 to 32 values: two masked loads, two permutes, two
    /// masked stores. (On 14-value rows it measured slower than the pair loop, 0.91×: the phase
    /// rows are read right after they are written, and on the Zen 5 measured a masked store
    /// seems not to forward to those loads.)
    ///
    /// # Safety
    /// AVX-512F; `row.len() ≤ 32`; `even + ⌈len/2⌉` and `odd + ⌊len/2⌋` within `buf`.
    #[target_feature(enable = "avx512f")]
    #[allow(unsafe_code)]
    pub(super) unsafe fn split_pairs(row: &[f32], buf: &mut [f32], even: usize, odd: usize) {
        const EVENS: [i32; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];
        const ODDS: [i32; 16] = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31];
        let n = row.len();
        // SAFETY: masked lanes are neither read nor written; the rest is in bounds (caller).
        unsafe {
            let lo = _mm512_maskz_loadu_ps(lanes(n), row.as_ptr());
            let hi = _mm512_maskz_loadu_ps(lanes(n.saturating_sub(16)), row.as_ptr().add(n.min(16)));
            let e = _mm512_permutex2var_ps(lo, _mm512_loadu_si512(EVENS.as_ptr().cast()), hi);
            let o = _mm512_permutex2var_ps(lo, _mm512_loadu_si512(ODDS.as_ptr().cast()), hi);
            _mm512_mask_storeu_ps(buf.as_mut_ptr().add(even), lanes(n.div_ceil(2)), e);
            _mm512_mask_storeu_ps(buf.as_mut_ptr().add(odd), lanes(n / 2), o);
        }
    }

    /// [`super::copy_evens`] for at most 16 values.
    ///
    /// # Safety
    /// AVX-512F; `1 ≤ dst.len() ≤ 16`; `src` holds `2 · dst.len() − 1` values.
    #[target_feature(enable = "avx512f")]
    #[allow(unsafe_code)]
    pub(super) unsafe fn copy_evens(dst: &mut [f32], src: &[f32]) {
        const EVENS: [i32; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];
        let (n, len) = (dst.len(), 2 * dst.len() - 1);
        // SAFETY: masked lanes are neither read nor written; the rest is in bounds (caller).
        unsafe {
            let lo = _mm512_maskz_loadu_ps(lanes(len), src.as_ptr());
            let hi = _mm512_maskz_loadu_ps(lanes(len.saturating_sub(16)), src.as_ptr().add(len.min(16)));
            let e = _mm512_permutex2var_ps(lo, _mm512_loadu_si512(EVENS.as_ptr().cast()), hi);
            _mm512_mask_storeu_ps(dst.as_mut_ptr(), lanes(n), e);
        }
    }

    /// [`super::split_phase_rows`].
    ///
    /// # Safety
    /// AVX-512F; `w ≤ 32`; `plane` holds `rows · w` values and `dst + span.start + r · width`
    /// room for 16, for every `r < rows`; the span's columns lie inside the row and the phase.
    #[target_feature(enable = "avx512f")]
    #[allow(unsafe_code)]
    pub(super) unsafe fn split_phase_rows(
        plane: *const f32,
        w: usize,
        rows: usize,
        dst: *mut f32,
        width: usize,
        span: super::PhaseSpan,
    ) {
        let (mut idx, mut keep) = ([0i32; 16], 0u16);
        for i in 0..span.n {
            // lanes below 16 read the row's first vector, 16 and up its second
            idx[span.j0 + i] = (span.ix0 + 2 * i) as i32;
            keep |= 1 << (span.j0 + i);
        }
        // SAFETY: masked lanes are neither read nor written; the rest is in bounds (caller).
        unsafe {
            let idx = _mm512_loadu_si512(idx.as_ptr().cast());
            let (lo_lanes, hi_lanes) = (lanes(w), lanes(w.saturating_sub(16)));
            for r in 0..rows {
                let row = plane.add(r * w);
                let lo = _mm512_maskz_loadu_ps(lo_lanes, row);
                let hi = _mm512_maskz_loadu_ps(hi_lanes, row.add(w.min(16)));
                let v = _mm512_maskz_permutex2var_ps(keep, lo, idx, hi);
                if width <= 8 {
                    // half a vector: a row of 8 stays one store that no other overlaps
                    _mm256_storeu_ps(dst.add(span.start + r * width), _mm512_castps512_ps256(v));
                } else {
                    _mm512_storeu_ps(dst.add(span.start + r * width), v);
                }
            }
        }
    }

    /// [`super::merge_pairs`] for rows of at most 32 values.
    ///
    /// # Safety
    /// As [`split_pairs`], reading `buf` and writing `row`.
    #[target_feature(enable = "avx512f")]
    #[allow(unsafe_code)]
    pub(super) unsafe fn merge_pairs(buf: &[f32], even: usize, odd: usize, row: &mut [f32]) {
        const LOW: [i32; 16] = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23];
        const HIGH: [i32; 16] = [8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31];
        let n = row.len();
        // SAFETY: masked lanes are neither read nor written; the rest is in bounds (caller).
        unsafe {
            let e = _mm512_maskz_loadu_ps(lanes(n.div_ceil(2)), buf.as_ptr().add(even));
            let o = _mm512_maskz_loadu_ps(lanes(n / 2), buf.as_ptr().add(odd));
            let lo = _mm512_permutex2var_ps(e, _mm512_loadu_si512(LOW.as_ptr().cast()), o);
            let hi = _mm512_permutex2var_ps(e, _mm512_loadu_si512(HIGH.as_ptr().cast()), o);
            _mm512_mask_storeu_ps(row.as_mut_ptr(), lanes(n), lo);
            _mm512_mask_storeu_ps(row.as_mut_ptr().add(n.min(16)), lanes(n.saturating_sub(16)), hi);
        }
    }
}

/// Whether rows of `len` values take [`split_pairs_masked`] (AVX-512F, 17–32 values). Callers ask
/// once per plane and keep the plain loop for the rest: a per-row test inside [`split_pairs`]
/// measured 0.86–0.92× on the AVX2 path's stride-2 depthwise layer.
pub(crate) fn masked_split(len: usize) -> bool {
    cfg!(target_arch = "x86_64") && (17..=32).contains(&len) && crate::wide::isa() == crate::wide::Isa::Avx512
}

/// Whether rows of `len` values take [`merge_pairs_masked`] (AVX-512F, up to 32 values).
pub(crate) fn masked_merge(len: usize) -> bool {
    cfg!(target_arch = "x86_64") && len <= 32 && crate::wide::isa() == crate::wide::Isa::Avx512
}

/// [`split_pairs`] by two masked loads, two permutes and two masked stores where
/// [`masked_split`] allows, the plain loop otherwise.
#[inline(always)]
pub(crate) fn split_pairs_masked(row: &[f32], buf: &mut [f32], even: usize, odd: usize) {
    #[cfg(target_arch = "x86_64")]
    if masked_split(row.len()) {
        let n = row.len();
        assert!(
            even + n.div_ceil(2) <= buf.len() && odd + n / 2 <= buf.len(),
            "split_pairs: buffer too short"
        );
        // SAFETY: AVX-512F checked, the row is at most 32 values, both halves fit `buf` (above).
        #[allow(unsafe_code)]
        return unsafe { masked::split_pairs(row, buf, even, odd) };
    }
    split_pairs(row, buf, even, odd);
}

/// [`merge_pairs`] by two masked loads, two permutes and two masked stores where
/// [`masked_merge`] allows, the plain loop otherwise.
#[inline(always)]
pub(crate) fn merge_pairs_masked(buf: &[f32], even: usize, odd: usize, row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if masked_merge(row.len()) {
        let n = row.len();
        assert!(
            even + n.div_ceil(2) <= buf.len() && odd + n / 2 <= buf.len(),
            "merge_pairs: buffer too short"
        );
        // SAFETY: AVX-512F checked, the row is at most 32 values, both halves lie in `buf` (above).
        #[allow(unsafe_code)]
        return unsafe { masked::merge_pairs(buf, even, odd, row) };
    }
    merge_pairs(buf, even, odd, row);
}

/// `buf[even + i] = row[2i]`, `buf[odd + i] = row[2i + 1]`, sixteen columns at a time.
#[inline(always)]
pub(crate) fn split_pairs(row: &[f32], buf: &mut [f32], even: usize, odd: usize) {
    let mut pieces = row.chunks_exact(16);
    for (c, piece) in (&mut pieces).enumerate() {
        // one whole 16-wide load, then shuffles (not two overlapping masked loads)
        let mut v = [0.0f32; 16];
        v.copy_from_slice(piece);
        let (mut e, mut o) = ([0.0f32; 8], [0.0f32; 8]);
        for l in 0..8 {
            e[l] = v[2 * l];
            o[l] = v[2 * l + 1];
        }
        buf[even + 8 * c..even + 8 * c + 8].copy_from_slice(&e);
        buf[odd + 8 * c..odd + 8 * c + 8].copy_from_slice(&o);
    }
    // The rest pair by pair (no branch per value), then a last even value.
    let half = row.len() / 16 * 8;
    let rest = pieces.remainder();
    let mut pairs = rest.chunks_exact(2);
    for (i, pair) in (&mut pairs).enumerate() {
        buf[even + half + i] = pair[0];
        buf[odd + half + i] = pair[1];
    }
    if let [last] = pairs.remainder() {
        buf[even + half + rest.len() / 2] = *last;
    }
}

/// The inverse of [`split_pairs`]: `row[2i] = buf[even + i]`, `row[2i + 1] = buf[odd + i]`.
#[inline(always)]
pub(crate) fn merge_pairs(buf: &[f32], even: usize, odd: usize, row: &mut [f32]) {
    let done = row.len() / 16 * 16;
    let mut pieces = row.chunks_exact_mut(16);
    for (c, piece) in (&mut pieces).enumerate() {
        let (e, o) = (&buf[even + 8 * c..even + 8 * c + 8], &buf[odd + 8 * c..odd + 8 * c + 8]);
        for l in 0..8 {
            piece[2 * l] = e[l];
            piece[2 * l + 1] = o[l];
        }
    }
    for (x, v) in pieces
        .into_remainder()
        .iter_mut()
        .enumerate()
        .map(|(i, v)| (done + i, v))
    {
        *v = buf[if x % 2 == 0 { even } else { odd } + x / 2];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_merge_pairs_invert_each_other() {
        for n in 0usize..=40 {
            let row: Vec<f32> = (0..n).map(|v| v as f32 + 0.25).collect();
            let (even, odd) = (3, 3 + n.div_ceil(2) + 2);
            for masked in [false, true] {
                let mut buf = vec![f32::NAN; odd + n / 2 + 1];
                if masked {
                    split_pairs_masked(&row, &mut buf, even, odd);
                } else {
                    split_pairs(&row, &mut buf, even, odd);
                }
                for (x, v) in row.iter().enumerate() {
                    assert_eq!(buf[if x % 2 == 0 { even } else { odd } + x / 2], *v, "n {n} x {x}");
                }
                // nothing outside the two halves is written
                let outside = buf[..even].iter().chain(&buf[even + n.div_ceil(2)..odd]);
                assert!(outside.chain(&buf[odd + n / 2..]).all(|v| v.is_nan()), "n {n}");
                let mut back = vec![0.0; n];
                if masked {
                    merge_pairs_masked(&buf, even, odd, &mut back);
                } else {
                    merge_pairs(&buf, even, odd, &mut back);
                }
                assert_eq!(back, row);
            }
        }
    }

    #[test]
    fn split_phase_rows_writes_whole_phase_rows_with_zero_padding() {
        if !whole_phase_rows(1, 1) {
            return; // no AVX-512F here (or capped): the im2col agreement tests cover the pair loop
        }
        for w in 1..=32usize {
            for pad in 0..=2usize {
                let width = (w + 2 * pad).div_ceil(2);
                if width > 16 {
                    continue;
                }
                let rows = 3;
                let plane: Vec<f32> = (0..rows * w).map(|v| v as f32 + 1.0).collect();
                let len = 2 * rows * width;
                let mut dst = vec![f32::NAN; len + PHASE_SLACK + 1];
                let mut want = vec![0.0f32; len];
                for phase in 0..2 {
                    // phase column j holds input column 2j + phase − pad
                    let j0 = pad.saturating_sub(phase).div_ceil(2);
                    let ix0 = 2 * j0 + phase - pad;
                    let n = if ix0 < w { (w - ix0).div_ceil(2) } else { 0 };
                    let start = phase * rows * width;
                    for r in 0..rows {
                        for i in 0..n {
                            want[start + r * width + j0 + i] = plane[r * w + ix0 + 2 * i];
                        }
                    }
                    let span = PhaseSpan {
                        start,
                        j0,
                        ix0: ix0.min(w),
                        n,
                    };
                    split_phase_rows(&plane, w, rows, &mut dst, width, span);
                }
                assert_eq!(dst[..len], want[..], "w {w}, padding {pad}");
                assert!(dst[len + PHASE_SLACK].is_nan(), "w {w}: wrote past the slack");
            }
        }
    }

    #[test]
    fn copy_evens_takes_every_other_value() {
        for n in 0usize..=20 {
            let src: Vec<f32> = (0..2 * n + 1).map(|v| v as f32 + 0.5).collect();
            let mut dst = vec![-1.0f32; n + 2];
            // the shortest source allowed: 2n − 1 values
            copy_evens(&mut dst[..n], &src[..(2 * n).saturating_sub(1)]);
            for i in 0..n {
                assert_eq!(dst[i], src[2 * i], "n {n} i {i}");
            }
            assert_eq!(dst[n..], [-1.0, -1.0], "n {n}: wrote past the row");
        }
    }

    #[test]
    fn copy_rows_and_add_rows_move_exactly_their_rows() {
        for width in [1usize, 5, 7, 14, 15, 16, 17, 32, 33, 48, 64, 65, 80] {
            let (rows, step, start) = (4, width + 3, 2);
            let src: Vec<f32> = (0..start + rows * step).map(|v| v as f32 * 0.5).collect();
            let mut dst = vec![-1.0f32; rows * width + 2];
            copy_rows(&mut dst[..rows * width], width, &src, start, step);
            for r in 0..rows {
                assert_eq!(
                    dst[r * width..(r + 1) * width],
                    src[start + r * step..start + r * step + width]
                );
            }
            assert_eq!(dst[rows * width..], [-1.0, -1.0], "width {width}: wrote past the rows");
            // add_rows is the adjoint: it adds the rows back where they came from, and nowhere else
            let mut back = vec![1.0f32; src.len()];
            add_rows(&mut back, start, step, &dst[..rows * width], width);
            for (i, v) in back.iter().enumerate() {
                let inside = i >= start && (i - start) % step < width && (i - start) / step < rows;
                let want = if inside { 1.0 + src[i] } else { 1.0 };
                assert_eq!(*v, want, "width {width} at {i}");
            }
        }
    }

    #[test]
    fn short_rows_move_exactly_their_rows_whatever_the_vector_path() {
        // the AVX2 path's whole-vector moves, called directly: a source that ends with the last
        // row (no 8-wide read past it) and rows whose spill must be overwritten by the next row
        for width in 1usize..16 {
            for (rows, step, start) in [(1, width, 0), (5, width + 1, 3), (9, 2 * width, 1)] {
                let src: Vec<f32> = (0..start + (rows - 1) * step + width)
                    .map(|v| v as f32 + 0.25)
                    .collect();
                let mut dst = vec![-1.0f32; rows * width + 3];
                copy_short_rows(&mut dst[..rows * width], width, &src, start, step);
                for r in 0..rows {
                    let want = &src[start + r * step..start + r * step + width];
                    assert_eq!(&dst[r * width..(r + 1) * width], want, "width {width}, row {r}");
                }
                assert_eq!(dst[rows * width..], [-1.0; 3], "width {width}: wrote past the rows");
            }
        }
    }

    #[test]
    fn copy_short_copies_pieces_and_tail() {
        for n in 0usize..=33 {
            let src: Vec<f32> = (0..n).map(|v| v as f32 + 0.5).collect();
            let mut dst = vec![0.0; n];
            copy_short(&mut dst, &src);
            assert_eq!(dst, src);
        }
    }
}
