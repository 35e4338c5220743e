//! Depthwise convolution (`groups = c_in = c_out`): a direct loop per channel plane, with the
//! innermost loop over contiguous output columns so it vectorises for stride 1.

use rayon::prelude::*;

use super::geometry::ConvGeometry;

/// Calls `f(out_row_range, in_row_offset, ox_lo, ox_hi, ix0, weight_index)` for every tap and
/// output row whose input row is inside the image.
fn for_each_tap_row(g: &ConvGeometry, mut f: impl FnMut(usize, usize, usize, usize, usize, usize)) {
    let (ho, wo) = (g.h_out(), g.w_out());
    for ky in 0..g.kh {
        let (oy_lo, oy_hi) = g.valid_outputs(ky, g.h, ho);
        for kx in 0..g.kw {
            let (ox_lo, ox_hi) = g.valid_outputs(kx, g.w, wo);
            if ox_lo >= ox_hi {
                continue;
            }
            let ix0 = ox_lo * g.stride + kx * g.dilation - g.padding;
            for oy in oy_lo..oy_hi {
                let iy = oy * g.stride + ky * g.dilation - g.padding;
                f(oy * wo, iy * g.w, ox_lo, ox_hi, ix0, ky * g.kw + kx);
            }
        }
    }
}

/// `out[b, c] = x[b, c] ⋆ w[c]`.
pub(crate) fn forward(g: &ConvGeometry, x: &[f32], w: &[f32], out: &mut [f32]) {
    let (pi, po, kk) = (g.p_in(), g.p_out(), g.kh * g.kw);
    out.par_chunks_mut(po)
        .zip(x.par_chunks(pi))
        .enumerate()
        .for_each(|(plane, (o, xp))| {
            let wc = &w[(plane % g.c_in) * kk..(plane % g.c_in + 1) * kk];
            o.fill(0.0);
            for_each_tap_row(g, |orow, irow, lo, hi, ix0, t| {
                let wv = wc[t];
                let d = &mut o[orow + lo..orow + hi];
                if g.stride == 1 {
                    for (dv, xv) in d.iter_mut().zip(&xp[irow + ix0..irow + ix0 + (hi - lo)]) {
                        *dv += wv * *xv;
                    }
                } else {
                    for (dv, xv) in d.iter_mut().zip(xp[irow + ix0..].iter().step_by(g.stride)) {
                        *dv += wv * *xv;
                    }
                }
            });
        });
}

/// `dx[b, c] = dy[b, c] ⋆ᵀ w[c]`.
pub(crate) fn grad_input(g: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let (pi, po, kk) = (g.p_in(), g.p_out(), g.kh * g.kw);
    dx.par_chunks_mut(pi)
        .zip(dy.par_chunks(po))
        .enumerate()
        .for_each(|(plane, (d, gp))| {
            let wc = &w[(plane % g.c_in) * kk..(plane % g.c_in + 1) * kk];
            d.fill(0.0);
            for_each_tap_row(g, |orow, irow, lo, hi, ix0, t| {
                let wv = wc[t];
                let s = &gp[orow + lo..orow + hi];
                if g.stride == 1 {
                    for (dv, gv) in d[irow + ix0..irow + ix0 + s.len()].iter_mut().zip(s) {
                        *dv += wv * *gv;
                    }
                } else {
                    for (dv, gv) in d[irow + ix0..].iter_mut().step_by(g.stride).zip(s) {
                        *dv += wv * *gv;
                    }
                }
            });
        });
}

/// `dw[c] = Σ_b dy[b, c] ⋆ x[b, c]`, one task per channel (a fixed summation order).
pub(crate) fn grad_weight(g: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (pi, po, kk) = (g.p_in(), g.p_out(), g.kh * g.kw);
    dw.par_chunks_mut(kk).enumerate().for_each(|(c, wc)| {
        let mut acc = vec![0.0f64; kk];
        for b in 0..g.batch {
            let plane = b * g.c_in + c;
            let xp = &x[plane * pi..(plane + 1) * pi];
            let gp = &dy[plane * po..(plane + 1) * po];
            for_each_tap_row(g, |orow, irow, lo, hi, ix0, t| {
                let s = &gp[orow + lo..orow + hi];
                let mut sum = 0.0f32;
                if g.stride == 1 {
                    for (gv, xv) in s.iter().zip(&xp[irow + ix0..irow + ix0 + s.len()]) {
                        sum += *gv * *xv;
                    }
                } else {
                    for (gv, xv) in s.iter().zip(xp[irow + ix0..].iter().step_by(g.stride)) {
                        sum += *gv * *xv;
                    }
                }
                acc[t] += sum as f64;
            });
        }
        for (w, a) in wc.iter_mut().zip(&acc) {
            *w = *a as f32;
        }
    });
}
