//! Depthwise convolution (`groups = c_in = c_out`): a direct loop vectorised over channels.
//!
//! Depthwise planes are small (MobileNetV2: 4²–32²) and there are many of them, so a loop per
//! plane spends its time on per-plane overhead and short rows. Instead each image is moved into
//! a zero-padded channels-last buffer (`[h + 2p][w + 2p][c]`) and every output pixel is a sum
//! over the taps of `weight[tap][0..c] ⊙ input[pixel(tap)][0..c]`: fused multiply-adds over two
//! contiguous runs of `c` values, which the compiler vectorises, for any stride and dilation and
//! with no boundary tests (the padding is real zeros). Rayon runs over images; the weight
//! gradient sums fixed slices of the batch in a fixed order, so results do not depend on the
//! thread count.

use rayon::prelude::*;

use super::epilogue::{Epilogue, finish};
use super::geometry::ConvGeometry;

/// Weight-gradient partial sums over the batch (reduced in order).
const WEIGHT_GRAD_SLICES: usize = 8;

/// Padded sizes `(rows, columns)` of the channels-last buffer.
fn padded(g: &ConvGeometry) -> (usize, usize) {
    (g.h + 2 * g.padding, g.w + 2 * g.padding)
}

/// `[tap][channel]` copy of the `[channel][tap]` weights.
fn taps_by_channel(g: &ConvGeometry, w: &[f32]) -> Vec<f32> {
    let (c, kk) = (g.c_in, g.kh * g.kw);
    let mut t = vec![0.0; kk * c];
    for ch in 0..c {
        for tap in 0..kk {
            t[tap * c + ch] = w[ch * kk + tap];
        }
    }
    t
}

/// Side of the square tiles [`transpose`] moves at a time: a few rows of a plane-strided source
/// at once, so reads 4 KiB apart do not evict each other.
const TILE: usize = 16;

/// `dst[j·dst_rs + i] = src[i·src_rs + j]` for `i < rows`, `j < cols`, tile by tile.
fn transpose(src: &[f32], src_rs: usize, rows: usize, cols: usize, dst: &mut [f32], dst_rs: usize) {
    for i0 in (0..rows).step_by(TILE) {
        for j0 in (0..cols).step_by(TILE) {
            for i in i0..(i0 + TILE).min(rows) {
                for j in j0..(j0 + TILE).min(cols) {
                    dst[j * dst_rs + i] = src[i * src_rs + j];
                }
            }
        }
    }
}

/// Writes one `c × h × w` image zero-padded and channels-last into `buf`.
fn to_padded_hwc(g: &ConvGeometry, img: &[f32], buf: &mut Vec<f32>) {
    let (c, (hp, wp)) = (g.c_in, padded(g));
    buf.clear();
    buf.resize(hp * wp * c, 0.0);
    for iy in 0..g.h {
        let at = ((iy + g.padding) * wp + g.padding) * c;
        transpose(&img[iy * g.w..], g.h * g.w, c, g.w, &mut buf[at..], c);
    }
}

/// `[pixel][channel]` → `[channel][pixel]` for `pixels` pixels (writes run along the planes).
fn to_chw(hwc: &[f32], c: usize, pixels: usize, chw: &mut [f32]) {
    for (ch, plane) in chw.chunks_exact_mut(pixels).enumerate() {
        for (px, v) in plane.iter_mut().enumerate() {
            *v = hwc[px * c + ch];
        }
    }
}

/// `[channel][pixel]` → `[pixel][channel]` (reads run along the planes).
fn to_hwc(chw: &[f32], c: usize, pixels: usize, hwc: &mut Vec<f32>) {
    hwc.clear();
    hwc.resize(pixels * c, 0.0);
    for (ch, plane) in chw.chunks_exact(pixels).enumerate() {
        for (px, &v) in plane.iter().enumerate() {
            hwc[px * c + ch] = v;
        }
    }
}

/// Calls `f(output_pixel, padded_input_pixel, tap)` for every output pixel and tap.
fn for_each_tap(g: &ConvGeometry, mut f: impl FnMut(usize, usize, usize)) {
    let (wo, (_, wp)) = (g.w_out(), padded(g));
    for oy in 0..g.h_out() {
        for ox in 0..wo {
            for ky in 0..g.kh {
                let row = (oy * g.stride + ky * g.dilation) * wp + ox * g.stride;
                for kx in 0..g.kw {
                    f(oy * wo + ox, row + kx * g.dilation, ky * g.kw + kx);
                }
            }
        }
    }
}

/// `out[b, c] = x[b, c] ⋆ w[c]`, then `epi` per image.
pub(crate) fn forward(g: &ConvGeometry, x: &[f32], w: &[f32], out: &mut [f32], epi: Option<&Epilogue<'_>>) {
    let (c, po) = (g.c_in, g.p_out());
    let wt = taps_by_channel(g, w);
    out.par_chunks_mut(c * po)
        .zip(x.par_chunks(c * g.p_in()))
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(xb, ob), (o, img)| {
                to_padded_hwc(g, img, xb);
                ob.clear();
                ob.resize(po * c, 0.0);
                for_each_tap(g, |opx, ipx, tap| {
                    let acc = &mut ob[opx * c..(opx + 1) * c];
                    let (wv, xv) = (&wt[tap * c..(tap + 1) * c], &xb[ipx * c..(ipx + 1) * c]);
                    for ((a, w), x) in acc.iter_mut().zip(wv).zip(xv) {
                        *a += w * x;
                    }
                });
                to_chw(ob, c, po, o);
                finish(epi, o, c, po);
            },
        );
}

/// `dx[b, c] = dy[b, c] ⋆ᵀ w[c]`: every output gradient scattered back along its taps into a
/// padded channels-last buffer, then cropped.
pub(crate) fn grad_input(g: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let (c, po, (hp, wp)) = (g.c_in, g.p_out(), padded(g));
    let wt = taps_by_channel(g, w);
    dx.par_chunks_mut(c * g.p_in())
        .zip(dy.par_chunks(c * po))
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(gb, dyb), (d, gimg)| {
                to_hwc(gimg, c, po, dyb);
                gb.clear();
                gb.resize(hp * wp * c, 0.0);
                for_each_tap(g, |opx, ipx, tap| {
                    let (wv, gv) = (&wt[tap * c..(tap + 1) * c], &dyb[opx * c..(opx + 1) * c]);
                    for ((t, w), s) in gb[ipx * c..(ipx + 1) * c].iter_mut().zip(wv).zip(gv) {
                        *t += w * s;
                    }
                });
                for (ch, plane) in d.chunks_exact_mut(g.h * g.w).enumerate() {
                    for (iy, row) in plane.chunks_exact_mut(g.w).enumerate() {
                        let base = ((iy + g.padding) * wp + g.padding) * c + ch;
                        for (ix, v) in row.iter_mut().enumerate() {
                            *v = gb[base + ix * c];
                        }
                    }
                }
            },
        );
}

/// `dw[c] = Σ_b dy[b, c] ⋆ x[b, c]`: per image an f32 sum over output pixels, accumulated in
/// f64 over fixed slices of the batch, the slices added in order.
pub(crate) fn grad_weight(g: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (c, po, kk) = (g.c_in, g.p_out(), g.kh * g.kw);
    let per_slice = g.batch.div_ceil(WEIGHT_GRAD_SLICES).max(1);
    let partials: Vec<Vec<f64>> = x
        .par_chunks(per_slice * c * g.p_in())
        .zip(dy.par_chunks(per_slice * c * po))
        .map(|(xs, dys)| {
            let mut acc = vec![0.0f64; kk * c];
            let (mut xb, mut dyb, mut part) = (Vec::new(), Vec::new(), vec![0.0f32; kk * c]);
            for (img, gimg) in xs.chunks_exact(c * g.p_in()).zip(dys.chunks_exact(c * po)) {
                to_padded_hwc(g, img, &mut xb);
                to_hwc(gimg, c, po, &mut dyb);
                part.fill(0.0);
                for_each_tap(g, |opx, ipx, tap| {
                    let (gv, xv) = (&dyb[opx * c..(opx + 1) * c], &xb[ipx * c..(ipx + 1) * c]);
                    for ((p, gv), xv) in part[tap * c..(tap + 1) * c].iter_mut().zip(gv).zip(xv) {
                        *p += gv * xv;
                    }
                });
                for (a, p) in acc.iter_mut().zip(&part) {
                    *a += *p as f64;
                }
            }
            acc
        })
        .collect();
    for ch in 0..c {
        for tap in 0..kk {
            dw[ch * kk + tap] = partials.iter().map(|p| p[tap * c + ch]).sum::<f64>() as f32;
        }
    }
}
