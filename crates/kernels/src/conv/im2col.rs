//! Unfolding an image into the GEMM operand (im2col) and folding gradients back (col2im).
//!
//! The column matrix has one row per `(c_in, ky, kx)` tap and one column per output pixel;
//! several images may share one matrix side by side (`ld` = row stride, `col0` = the first
//! column of this image), which turns small-spatial layers into one wide GEMM.

use super::geometry::ConvGeometry;

/// Writes image `x` (`c_in × h × w`) into rows `0..k_dim` of `col`, columns `col0..col0+p_out`.
/// Every entry of that block is written (padding taps as zeros).
pub(crate) fn im2col(g: &ConvGeometry, x: &[f32], col: &mut [f32], ld: usize, col0: usize) {
    let (ho, wo, p) = (g.h_out(), g.w_out(), g.p_out());
    for ci in 0..g.c_in {
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
                        if g.stride == 1 {
                            d[ox_lo..ox_hi].copy_from_slice(&src[ix0..ix0 + (ox_hi - ox_lo)]);
                        } else {
                            for (o, v) in d[ox_lo..ox_hi].iter_mut().zip(src[ix0..].iter().step_by(g.stride)) {
                                *o = *v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds the column block `col0..col0+p_out` of `col` back onto image gradient `dx`
/// (`c_in × h × w`), the adjoint of [`im2col`]. `dx` is accumulated into, not overwritten.
pub(crate) fn col2im_add(g: &ConvGeometry, col: &[f32], ld: usize, col0: usize, dx: &mut [f32]) {
    let (ho, wo, p) = (g.h_out(), g.w_out(), g.p_out());
    for ci in 0..g.c_in {
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
        im2col(&g, &x, &mut col, 9, 0);
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
            im2col(&g, &x, &mut col, g.p_out(), 0);
            let lhs: f64 = col.iter().zip(&c).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
            let mut dx = vec![0.0; n_in];
            col2im_add(&g, &c, g.p_out(), 0, &mut dx);
            let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
            assert_eq!(lhs, rhs, "h{h} w{w} k{k} s{s} p{p}");
        }
    }
}
