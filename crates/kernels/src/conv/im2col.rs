//! Unfolding an image into the GEMM operand (im2col) and folding gradients back (col2im).
//!
//! The column matrix has one row per `(c_in, ky, kx)` tap and one column per output pixel;
//! several images may share one matrix side by side (`ld` = row stride, `col0` = the first
//! column of this image), which turns small-spatial layers into one wide GEMM.

use std::cell::RefCell;

use super::geometry::{ConvGeometry, div_rem_stride};
use super::input_quant::{Packing, copy_packed};
use crate::copy::{
    PHASE_SLACK, PhaseSpan, add_rows, copy_evens, copy_rows, merge_pairs_masked, split_pairs_masked, split_phase_rows,
    whole_phase_rows,
};
use crate::gather::OffsetTable;
use crate::wide::{Kernel, prefetch_plane, wide};

thread_local! {
    /// Per-thread scratch for one zero-padded, column-phase-split input plane.
    static PHASES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Per-thread scratch for one fake-quantized input plane.
    static QUANTIZED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Fake-quantizes a whole input plane at once, compiled for the widest vectors ([`wide`]):
/// rows of a small plane (SmallCnn's 14 and 28 values, 7 and 14 per phase) are too short for the
/// row-by-row loops to vectorise, and the division in each value dominated the packing.
struct QuantizePlane<'a> {
    q: &'a Packing,
    v: &'a mut [f32],
}

impl Kernel for QuantizePlane<'_> {
    type Out = ();

    #[inline(always)]
    fn run(self) {
        self.q.quantize_in_place(self.v);
    }
}

/// A zero-padded input plane split by column phase: padded column `c` of row `iy` lives at
/// `[(c % stride) * h + iy] * width + c / stride`. Every tap of every output row then reads (or,
/// for the adjoint, writes) `w_out` *contiguous* values: padded column `ox·s + kx·d` is phase
/// `(kx·d) % s`, column `(kx·d) / s + ox`. Strided gathers and the per-tap bounds splitting
/// disappear; padding is real zeros.
struct PhaseLayout {
    width: usize,
    padded: usize,
}

impl PhaseLayout {
    fn new(g: &ConvGeometry) -> Self {
        let padded = g.w + 2 * g.padding;
        Self {
            width: padded.div_ceil(g.stride),
            padded,
        }
    }

    fn len(&self, g: &ConvGeometry) -> usize {
        g.stride * g.h * self.width
    }

    /// Offset of padded column `c` of row `iy`.
    #[inline(always)]
    fn at(&self, g: &ConvGeometry, iy: usize, c: usize) -> usize {
        let (j, phase) = div_rem_stride(c, g.stride);
        (phase * g.h + iy) * self.width + j
    }

    /// The real (unpadded) columns of phase `phase`: `(first phase column, first input column,
    /// count)`; phase column `j` holds input column `j·s + phase − padding`.
    fn phase_span(&self, g: &ConvGeometry, phase: usize) -> (usize, usize, usize) {
        // smallest j with j·s + phase ≥ padding
        let j0 = g.padding.saturating_sub(phase).div_ceil(g.stride);
        let ix0 = j0 * g.stride + phase - g.padding;
        let n = if ix0 < g.w { (g.w - ix0).div_ceil(g.stride) } else { 0 };
        (j0, ix0.min(g.w), n)
    }

    /// Offset of the first value tap `(ky, kx)` reads for output row `oy`, or `None` when the
    /// input row is padding.
    #[inline(always)]
    fn tap_row(&self, g: &ConvGeometry, oy: usize, ky: usize, kx: usize) -> Option<usize> {
        let iy = (oy * g.stride + ky * g.dilation).checked_sub(g.padding)?;
        (iy < g.h).then(|| self.at(g, iy, kx * g.dilation))
    }
}

/// Writes image `x` (`c_in × h × w`) into rows `0..k_dim` of `col`, columns `col0..col0+p_out`,
/// fake-quantized on the way when `q` is given. Every entry of that block is written (padding
/// taps as zeros).
pub(crate) fn im2col(g: &ConvGeometry, x: &[f32], col: &mut [f32], ld: usize, col0: usize, q: Option<&Packing>) {
    if g.stride > 1 && g.kh * g.kw == 1 {
        return im2col_direct(g, x, col, ld, col0, q);
    }
    let lay = PhaseLayout::new(g);
    let len = lay.len(g);
    let taps = tap_sources(g, &lay);
    let mut quantized = QUANTIZED.take();
    PHASES.with_borrow_mut(|ph| {
        // Two phase planes: channel `ci + 1` is split into one while the taps of channel `ci` are
        // copied from the other, so no tap reads a value stored moments before (a load that
        // spans several pending stores waits for them to retire).
        ph.clear();
        ph.resize(2 * (len + PHASE_SLACK), 0.0);
        let (mut cur, mut next) = ph.split_at_mut(len + PHASE_SLACK);
        fill_phases(g, &lay, x, 0, q, &mut quantized, cur);
        for ci in 0..g.c_in {
            if ci + 1 < g.c_in {
                fill_phases(g, &lay, x, ci + 1, q, &mut quantized, next);
            }
            copy_taps(g, &lay, &taps, ci, cur, col, ld, col0);
            std::mem::swap(&mut cur, &mut next);
        }
        debug_assert!(lay.padded >= g.w);
    });
    QUANTIZED.set(quantized);
}

/// Channel `ci` of image `x` into its phase plane `ph` (fake-quantized first when `q` is given).
fn fill_phases(
    g: &ConvGeometry,
    lay: &PhaseLayout,
    x: &[f32],
    ci: usize,
    q: Option<&Packing>,
    quantized: &mut Vec<f32>,
    ph: &mut [f32],
) {
    prefetch_plane(x, ci + 1, g.p_in());
    let mut plane = &x[ci * g.p_in()..(ci + 1) * g.p_in()];
    if let Some(q) = q {
        quantized.clear();
        quantized.extend_from_slice(plane);
        wide(QuantizePlane { q, v: quantized });
        plane = quantized;
    }
    if g.stride == 2 && whole_phase_rows(g.w, lay.width) {
        // phase 0 first: its last row's store reaches into phase 1's first row
        for phase in 0..2 {
            let (j0, ix0, n) = lay.phase_span(g, phase);
            let start = phase * g.h * lay.width;
            split_phase_rows(plane, g.w, g.h, ph, lay.width, PhaseSpan { start, j0, ix0, n });
        }
        return;
    }
    for iy in 0..g.h {
        split_row(g, lay, iy, &plane[iy * g.w..(iy + 1) * g.w], ph);
    }
}

/// Where one tap's row of `col` comes from, the same for every channel: values `lo..hi` (whole
/// output rows) from the phase plane at `src`, output rows `step` apart there; zeros around them.
#[derive(Clone, Copy)]
struct TapSource {
    lo: usize,
    hi: usize,
    src: Option<usize>,
}

/// Every tap's [`TapSource`], tap-major (`ky · kw + kx`): worked out once per image instead of
/// once per channel and tap.
fn tap_sources(g: &ConvGeometry, lay: &PhaseLayout) -> Vec<TapSource> {
    let (ho, wo) = (g.h_out(), g.w_out());
    let mut taps = Vec::with_capacity(g.kh * g.kw);
    for ky in 0..g.kh {
        // Output rows whose tap row is inside the image; their sources lie `stride` phase rows
        // apart, so the offset steps instead of being recomputed per row.
        let (oy_lo, oy_hi) = g.valid_outputs(ky, g.h, ho);
        for kx in 0..g.kw {
            let src = lay.tap_row(g, oy_lo, ky, kx).filter(|_| oy_lo < oy_hi);
            taps.push(TapSource {
                lo: oy_lo * wo,
                hi: oy_hi * wo,
                src,
            });
        }
    }
    taps
}

/// The `kh · kw` rows of channel `ci` in `col` from its phase plane `ph`.
#[allow(clippy::too_many_arguments)]
fn copy_taps(
    g: &ConvGeometry,
    lay: &PhaseLayout,
    taps: &[TapSource],
    ci: usize,
    ph: &[f32],
    col: &mut [f32],
    ld: usize,
    col0: usize,
) {
    let (wo, p, kk) = (g.w_out(), g.p_out(), g.kh * g.kw);
    for (t, tap) in taps.iter().enumerate() {
        let row = ci * kk + t;
        let dst = &mut col[row * ld + col0..row * ld + col0 + p];
        zero_short(&mut dst[..tap.lo]);
        zero_short(&mut dst[tap.hi..]);
        if let Some(o) = tap.src {
            copy_rows(&mut dst[tap.lo..tap.hi], wo, ph, o, g.stride * lay.width);
        }
    }
}

/// `v = 0` in 8-value pieces, then one by one: no call to `memset` for the one or two rows of
/// padding a tap has.
#[inline(always)]
fn zero_short(v: &mut [f32]) {
    let mut pieces = v.chunks_exact_mut(8);
    for piece in &mut pieces {
        piece.copy_from_slice(&[0.0; 8]);
    }
    for x in pieces.into_remainder() {
        *x = 0.0;
    }
}

/// Input row `iy` into its phase rows of `ph` (already fake-quantized, when the conv quantizes its
/// input). Strides 1 and 2 copy whole rows and split pairs 16 values at a time (a runtime
/// `step_by` stays scalar).
fn split_row(g: &ConvGeometry, lay: &PhaseLayout, iy: usize, src: &[f32], ph: &mut [f32]) {
    match g.stride {
        1 => {
            let at = lay.at(g, iy, g.padding);
            ph[at..at + g.w].copy_from_slice(src);
        }
        2 => {
            let (even, odd) = (lay.at(g, iy, g.padding), lay.at(g, iy, g.padding + 1));
            split_pairs_masked(src, ph, even, odd);
        }
        _ => {
            for phase in 0..g.stride {
                let (j0, ix0, n) = lay.phase_span(g, phase);
                let o = lay.at(g, iy, phase) + j0;
                for (d, v) in ph[o..o + n].iter_mut().zip(src[ix0..].iter().step_by(g.stride)) {
                    *d = *v;
                }
            }
        }
    }
}

/// Adds the column block `col0..col0+p_out` of `col` back onto image gradient `dx`
/// (`c_in × h × w`), the adjoint of [`im2col`]. `dx` is accumulated into, not overwritten.
pub(crate) fn col2im_add(g: &ConvGeometry, col: &[f32], ld: usize, col0: usize, dx: &mut [f32]) {
    if g.stride > 1 && g.kh * g.kw == 1 {
        return col2im_add_direct(g, col, ld, col0, dx);
    }
    let (wo, kk) = (g.w_out(), g.kh * g.kw);
    let lay = PhaseLayout::new(g);
    let taps = tap_sources(g, &lay);
    let mut row = Vec::new();
    PHASES.with_borrow_mut(|ph| {
        ph.resize(lay.len(g), 0.0);
        for ci in 0..g.c_in {
            prefetch_plane(dx, ci + 1, g.p_in());
            ph.fill(0.0);
            for (t, tap) in taps.iter().enumerate() {
                let Some(o) = tap.src else {
                    continue;
                };
                let at = (ci * kk + t) * ld + col0;
                add_rows(ph, o, g.stride * lay.width, &col[at + tap.lo..at + tap.hi], wo);
            }
            let plane = &mut dx[ci * g.p_in()..(ci + 1) * g.p_in()];
            for iy in 0..g.h {
                merge_row_add(g, &lay, iy, ph, &mut plane[iy * g.w..(iy + 1) * g.w], &mut row);
            }
        }
    });
}

/// Adds phase rows `iy` of `ph` onto input row `d`, the adjoint of [`split_row`]; stride 2
/// merges the pairs into `row` first (16 values at a time), then adds contiguously.
fn merge_row_add(g: &ConvGeometry, lay: &PhaseLayout, iy: usize, ph: &[f32], d: &mut [f32], row: &mut Vec<f32>) {
    match g.stride {
        1 => {
            let at = lay.at(g, iy, g.padding);
            d.iter_mut().zip(&ph[at..at + g.w]).for_each(|(a, v)| *a += *v);
        }
        2 => {
            row.resize(g.w, 0.0);
            merge_pairs_masked(ph, lay.at(g, iy, g.padding), lay.at(g, iy, g.padding + 1), row);
            d.iter_mut().zip(row.iter()).for_each(|(a, v)| *a += *v);
        }
        _ => {
            for phase in 0..g.stride {
                let (j0, ix0, n) = lay.phase_span(g, phase);
                let o = lay.at(g, iy, phase) + j0;
                for (a, v) in d[ix0..].iter_mut().step_by(g.stride).zip(&ph[o..o + n]) {
                    *a += *v;
                }
            }
        }
    }
}

/// [`im2col`] for strided 1×1 convs: per-tap gathers with the padding ranges split off (a phase
/// split of the whole plane costs more than it saves when the stride skips most of the input).
fn im2col_direct(g: &ConvGeometry, x: &[f32], col: &mut [f32], ld: usize, col0: usize, q: Option<&Packing>) {
    let (ho, wo, p) = (g.h_out(), g.w_out(), g.p_out());
    if let Some(table) = gather_table(g) {
        for ci in 0..g.c_in {
            prefetch_plane(x, ci + 1, g.p_in());
            let dst = &mut col[ci * ld + col0..ci * ld + col0 + p];
            table.gather(dst, &x[ci * g.p_in()..(ci + 1) * g.p_in()]);
            if let Some(q) = q {
                q.quantize_in_place(dst);
            }
        }
        return;
    }
    for ci in 0..g.c_in {
        prefetch_plane(x, ci + 1, g.p_in());
        let plane = &x[ci * g.p_in()..(ci + 1) * g.p_in()];
        for ky in 0..g.kh {
            let (oy_lo, oy_hi) = g.valid_outputs(ky, g.h, ho);
            for kx in 0..g.kw {
                let (ox_lo, ox_hi) = g.valid_outputs(kx, g.w, wo);
                let row = (ci * g.kh + ky) * g.kw + kx;
                let dst = &mut col[row * ld + col0..row * ld + col0 + p];
                dst[..oy_lo * wo].fill(0.0);
                dst[oy_hi * wo..].fill(0.0);
                for oy in oy_lo..oy_hi {
                    let iy = oy * g.stride + ky * g.dilation - g.padding;
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    let d = &mut dst[oy * wo..(oy + 1) * wo];
                    d[..ox_lo].fill(0.0);
                    d[ox_hi..].fill(0.0);
                    if ox_lo < ox_hi {
                        let ix0 = ox_lo * g.stride + kx * g.dilation - g.padding;
                        if q.is_none() && g.stride == 2 {
                            copy_evens(&mut d[ox_lo..ox_hi], &src[ix0..]);
                        } else {
                            copy_packed(q, &mut d[ox_lo..ox_hi], src[ix0..].iter().step_by(g.stride));
                        }
                    }
                }
            }
        }
    }
}

/// Output rows up to this many values are gathered by [`OffsetTable`] (a vector gather per 16
/// values) instead of row by row.
const GATHER_MAX_ROW: usize = 8;

/// The input offset of every output pixel of an unpadded strided 1×1 conv with short output rows,
/// or `None` where [`im2col_direct`] copies row by row.
fn gather_table(g: &ConvGeometry) -> Option<OffsetTable> {
    if g.padding > 0 || g.kh * g.kw != 1 || g.w_out() > GATHER_MAX_ROW {
        return None;
    }
    let (wo, s) = (g.w_out(), g.stride);
    OffsetTable::new((0..g.p_out()).map(|j| (j / wo) * s * g.w + (j % wo) * s))
}

/// [`col2im_add`] for strided 1×1 convs.
fn col2im_add_direct(g: &ConvGeometry, col: &[f32], ld: usize, col0: usize, dx: &mut [f32]) {
    let (ho, wo, p) = (g.h_out(), g.w_out(), g.p_out());
    for ci in 0..g.c_in {
        prefetch_plane(dx, ci + 1, g.p_in());
        let plane = &mut dx[ci * g.p_in()..(ci + 1) * g.p_in()];
        for ky in 0..g.kh {
            let (oy_lo, oy_hi) = g.valid_outputs(ky, g.h, ho);
            for kx in 0..g.kw {
                let (ox_lo, ox_hi) = g.valid_outputs(kx, g.w, wo);
                if ox_lo >= ox_hi {
                    continue;
                }
                let row = (ci * g.kh + ky) * g.kw + kx;
                let src = &col[row * ld + col0..row * ld + col0 + p];
                for oy in oy_lo..oy_hi {
                    let iy = oy * g.stride + ky * g.dilation - g.padding;
                    let d = &mut plane[iy * g.w..(iy + 1) * g.w];
                    let s = &src[oy * wo + ox_lo..oy * wo + ox_hi];
                    let ix0 = ox_lo * g.stride + kx * g.dilation - g.padding;
                    if g.stride == 1 {
                        for (o, v) in d[ix0..ix0 + s.len()].iter_mut().zip(s) {
                            *o += *v;
                        }
                    } else {
                        for (o, v) in d[ix0..].iter_mut().step_by(g.stride).zip(s) {
                            *o += *v;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo(h: usize, w: usize, k: usize, s: usize, p: usize) -> ConvGeometry {
        ConvGeometry {
            batch: 1,
            c_in: 2,
            h,
            w,
            c_out: 1,
            kh: k,
            kw: k,
            stride: s,
            padding: p,
            dilation: 1,
            groups: 1,
        }
    }

    #[test]
    fn im2col_of_a_3x3_image_with_padding_by_hand() {
        // one channel 2×2 image [1 2; 3 4], 2×2 kernel, padding 1, stride 1 → 3×3 output
        let g = ConvGeometry {
            c_in: 1,
            ..geo(2, 2, 2, 1, 1)
        };
        let x = [1.0, 2.0, 3.0, 4.0];
        let mut col = vec![f32::NAN; 4 * 9];
        im2col(&g, &x, &mut col, 9, 0, None);
        // tap (0,0) reads x[oy-1, ox-1]
        assert_eq!(&col[0..9], &[0., 0., 0., 0., 1., 2., 0., 3., 4.]);
        // tap (1,1) reads x[oy, ox]
        assert_eq!(&col[27..36], &[1., 2., 0., 3., 4., 0., 0., 0., 0.]);
    }

    /// ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩ for every geometry: the two are adjoint.
    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        for (h, w, k, s, p) in [
            (5, 7, 3, 1, 1),
            (6, 5, 3, 2, 1),
            (7, 7, 5, 2, 2),
            (4, 4, 1, 2, 0),
            (3, 8, 2, 3, 0),
        ] {
            let g = geo(h, w, k, s, p);
            let n_in = g.c_in * h * w;
            let x: Vec<f32> = (0..n_in).map(|i| ((i * 7 % 11) as f32) - 5.0).collect();
            let kp = g.k_dim() * g.p_out();
            let c: Vec<f32> = (0..kp).map(|i| ((i * 5 % 13) as f32) - 6.0).collect();
            let mut col = vec![0.0; kp];
            im2col(&g, &x, &mut col, g.p_out(), 0, None);
            let lhs: f64 = col.iter().zip(&c).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
            let mut dx = vec![0.0; n_in];
            col2im_add(&g, &c, g.p_out(), 0, &mut dx);
            let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
            assert_eq!(lhs, rhs, "h{h} w{w} k{k} s{s} p{p}");
        }
    }
}
