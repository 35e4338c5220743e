//! Winograd F(4×4, 3×3): each 4×4 output tile from a 6×6 input tile with 36 products per
//! (input, output) channel pair instead of F(2×2, 3×3)'s 64 for the same 16 outputs, so the
//! 36 GEMMs do 0.5625× the multiplications of F(2×2, 3×3)'s 16. Used for the forward, the
//! input gradient and, through its adjoint (`A ∂y Aᵀ` and `Gᵀ ∂U G`), the weight gradient.
//!
//! The matrices are Lavin & Gray's (2016), interpolation points 0, 1, −1, 2, −2 and ∞:
//!
//! ```text
//! Bᵀ = [4  0 −5  0 1 0]   G = [ 1/4    0     0 ]   Aᵀ = [1 1  1 1  1 0]
//!      [0 −4 −4  1 1 0]       [−1/6 −1/6  −1/6 ]        [0 1 −1 2 −2 0]
//!      [0  4 −4 −1 1 0]       [−1/6  1/6  −1/6 ]        [0 1  1 4  4 0]
//!      [0 −2 −1  2 1 0]       [1/24 1/12   1/6 ]        [0 1 −1 8 −8 1]
//!      [0  2 −1 −2 1 0]       [1/24 −1/12  1/6 ]
//!      [0  4  0 −5 0 1]       [   0    0     1 ]
//! ```
//!
//! The constants are not powers of two, so the f32 error is ten to twenty times im2col's: 1–2e-5
//! of the largest output on ResNet-18's layers, against under 1e-6 for F(2×2, 3×3) (measured in
//! the tests). The transforms run sixteen images (or
//! sixteen filters) at a time, one per vector lane, as in [`super::tiles`].

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::Plan;
use crate::fresh::written_by;
use crate::lanes::{Lanes, load, store, store_uninit};
use crate::transpose::LANES;
use crate::wide::{Kernel, wide};

/// Input-tile side.
pub(super) const ALPHA: usize = 6;
/// Output-tile side.
pub(super) const M: usize = 4;

/// `Bᵀ d` for six values `d` (one column or row of a tile), lane by lane.
#[inline(always)]
fn bt(d: &[Lanes; ALPHA]) -> [Lanes; ALPHA] {
    let mut v = [[0.0f32; LANES]; ALPHA];
    for l in 0..LANES {
        let (d0, d1, d2, d3, d4, d5) = (d[0][l], d[1][l], d[2][l], d[3][l], d[4][l], d[5][l]);
        v[0][l] = 4.0 * d0 - 5.0 * d2 + d4;
        v[1][l] = (d3 + d4) - 4.0 * (d1 + d2);
        v[2][l] = 4.0 * (d1 - d2) + (d4 - d3);
        v[3][l] = 2.0 * (d3 - d1) + (d4 - d2);
        v[4][l] = 2.0 * (d1 - d3) + (d4 - d2);
        v[5][l] = 4.0 * d1 - 5.0 * d3 + d5;
    }
    v
}

/// `Aᵀ s` for six values `s`, lane by lane.
#[inline(always)]
fn at(s: &[Lanes; ALPHA]) -> [Lanes; M] {
    let mut y = [[0.0f32; LANES]; M];
    for l in 0..LANES {
        let (s0, s1, s2, s3, s4, s5) = (s[0][l], s[1][l], s[2][l], s[3][l], s[4][l], s[5][l]);
        let (p12, m12, p34, m34) = (s1 + s2, s1 - s2, s3 + s4, s3 - s4);
        y[0][l] = s0 + p12 + p34;
        y[1][l] = m12 + 2.0 * m34;
        y[2][l] = p12 + 4.0 * p34;
        y[3][l] = m12 + 8.0 * m34 + s5;
    }
    y
}

/// `G g` for three values `g`, lane by lane.
#[inline(always)]
fn g6(a: &Lanes, b: &Lanes, c: &Lanes) -> [Lanes; ALPHA] {
    let mut u = [[0.0f32; LANES]; ALPHA];
    for l in 0..LANES {
        let (a, b, c) = (a[l], b[l], c[l]);
        u[0][l] = 0.25 * a;
        u[1][l] = -(a + b + c) / 6.0;
        u[2][l] = -(a - b + c) / 6.0;
        u[3][l] = (a + 2.0 * b + 4.0 * c) / 24.0;
        u[4][l] = (a - 2.0 * b + 4.0 * c) / 24.0;
        u[5][l] = c;
    }
    u
}

/// The intermediate `Bᵀ d` of one tile (six rows of six vectors). Kept by the caller: as a
/// local array it was zero-filled by a `memset` call for every tile (2 304 bytes, 345 000 calls
/// in three ResNet-18 steps), although every value is written before it is read.
pub(super) type TileRows = [[Lanes; ALPHA]; ALPHA];

/// `V = Bᵀ d B` for every tile of one interleaved, padded block (`q`, `p.padded()` positions of
/// sixteen lanes), stored from column `base` of the 36 rows of `vc` (stride `row`); `t` is
/// scratch.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // `j` indexes a column of six rows
#[allow(clippy::too_many_arguments)]
pub(super) fn transform_block(
    p: &Plan,
    q: &[f32],
    t: &mut TileRows,
    lanes: usize,
    base: usize,
    vc: &mut [f32],
    row: usize,
) {
    let wp = p.padded().1;
    for ty in 0..p.tiles_y {
        for tx in 0..p.tiles_x {
            // t = Bᵀ d column by column, then each row of t times B.
            for j in 0..ALPHA {
                let mut col = [[0.0f32; LANES]; ALPHA];
                for (i, c) in col.iter_mut().enumerate() {
                    *c = load(q, ((M * ty + i) * wp + M * tx + j) * LANES, LANES);
                }
                for (i, v) in bt(&col).iter().enumerate() {
                    t[i][j] = *v;
                }
            }
            let at_col = base + (ty * p.tiles_x + tx) * lanes;
            for (i, r) in t.iter().enumerate() {
                for (j, v) in bt(r).iter().enumerate() {
                    store(vc, (i * ALPHA + j) * row + at_col, v, lanes);
                }
            }
        }
    }
}

/// `y = Aᵀ s A` for every tile of one block (products from `m[ξ·m_plane + base + t·lanes]`),
/// into the interleaved output grid (`p.ho × p.wo` positions), cropped at its edges.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // `j` indexes a column of six rows
pub(super) fn untransform_block(p: &Plan, m: &[f32], m_plane: usize, base: usize, lanes: usize, grid: &mut [f32]) {
    for ty in 0..p.tiles_y {
        for tx in 0..p.tiles_x {
            let at_col = base + (ty * p.tiles_x + tx) * lanes;
            // r = Aᵀ s column by column (4 × 6), then each row of r times A.
            let mut r = [[[0.0f32; LANES]; ALPHA]; M];
            for j in 0..ALPHA {
                let mut col = [[0.0f32; LANES]; ALPHA];
                for (i, c) in col.iter_mut().enumerate() {
                    *c = load(m, (i * ALPHA + j) * m_plane + at_col, lanes);
                }
                for (i, v) in at(&col).iter().enumerate() {
                    r[i][j] = *v;
                }
            }
            for (i, ri) in r.iter().enumerate() {
                let y = M * ty + i;
                if y >= p.ho {
                    break;
                }
                for (j, v) in at(ri).iter().enumerate() {
                    let x = M * tx + j;
                    if x < p.wo {
                        store(grid, (y * p.wo + x) * LANES, v, LANES);
                    }
                }
            }
        }
    }
}

/// `U[ξ][j] = (G g_j Gᵀ)[ξ]` for the `c_out × c_in` filters of `w` (`c_out × c_in × 3 × 3`),
/// 36 planes of `c_out·c_in`. With `rotate`, position `j = i·c_out + o` holds the transform of
/// the rotated, transposed filter `rot180(w[o][i])` (the input gradient's).
pub(super) fn transform_filter(w: &[f32], c_out: usize, c_in: usize, rotate: bool) -> Vec<f32> {
    let plane = c_out * c_in;
    let taps = interleave_filters(w, c_out, c_in, rotate);
    let rows = |u: &mut [MaybeUninit<f32>]| {
        u.par_chunks_mut(ALPHA * plane.max(1)).enumerate().for_each(|(r, u)| {
            wide(FilterRow {
                taps: &taps,
                u,
                plane,
                r,
            })
        })
    };
    // SAFETY: the six chunks of `ALPHA · plane` are rows `r` of `ξ`, and `FilterRow` writes each
    // of its six planes whole (a block of sixteen filters at a time, the last block's lanes
    // cut to the filters left).
    #[allow(unsafe_code)]
    unsafe {
        written_by(ALPHA * ALPHA * plane, rows)
    }
}

/// The nine taps of every filter, sixteen filters a block: `taps[(blk·9 + k)·16 + lane]` is tap
/// `k` of the filter at position `blk·16 + lane` (rotated and transposed with `rotate`), the
/// lanes past the last filter zero.
fn interleave_filters(w: &[f32], c_out: usize, c_in: usize, rotate: bool) -> Vec<f32> {
    let plane = c_out * c_in;
    let mut taps = vec![0.0f32; plane.div_ceil(LANES) * 9 * LANES];
    taps.par_chunks_mut(9 * LANES).enumerate().for_each(|(blk, t)| {
        for lane in 0..LANES.min(plane - blk * LANES) {
            let j = blk * LANES + lane;
            let src = if rotate { (j % c_out) * c_in + j / c_out } else { j };
            let g = &w[9 * src..9 * src + 9];
            for k in 0..9 {
                t[k * LANES + lane] = if rotate { g[8 - k] } else { g[k] };
            }
        }
    });
    taps
}

/// Row `r` of `G g Gᵀ` (planes `6r..6r + 6`, in `u`) for every filter.
struct FilterRow<'a> {
    taps: &'a [f32],
    /// Written whole: `ALPHA` planes of `plane` values.
    u: &'a mut [MaybeUninit<f32>],
    plane: usize,
    r: usize,
}

impl Kernel for FilterRow<'_> {
    type Out = ();

    #[inline(always)]
    fn run(self) {
        assert!(
            self.u.len() == ALPHA * self.plane && self.taps.len() == self.plane.div_ceil(LANES) * 9 * LANES,
            "a filter row is written whole"
        );
        for (blk, t) in self.taps.chunks_exact(9 * LANES).enumerate() {
            let mut g = [[0.0f32; LANES]; 9];
            for (k, v) in g.iter_mut().enumerate() {
                *v = load(t, k * LANES, LANES);
            }
            // Row r of G g (3 values, one per filter column), then that row times Gᵀ.
            let mut row = [[0.0f32; LANES]; 3];
            for (c, v) in row.iter_mut().enumerate() {
                *v = g6(&g[c], &g[3 + c], &g[6 + c])[self.r];
            }
            let lanes = LANES.min(self.plane - blk * LANES);
            for (c, v) in g6(&row[0], &row[1], &row[2]).iter().enumerate() {
                store_uninit(self.u, c * self.plane + blk * LANES, v, lanes);
            }
        }
    }
}

/// `A y` for four values `y` (`A = (Aᵀ)ᵀ`, 6 × 4), lane by lane.
#[inline(always)]
fn a(y: &[Lanes; M]) -> [Lanes; ALPHA] {
    let mut v = [[0.0f32; LANES]; ALPHA];
    for l in 0..LANES {
        let (y0, y1, y2, y3) = (y[0][l], y[1][l], y[2][l], y[3][l]);
        let (e1, o1, e2, o2) = (y0 + y2, y1 + y3, y0 + 4.0 * y2, 2.0 * y1 + 8.0 * y3);
        v[0][l] = y0;
        v[1][l] = e1 + o1;
        v[2][l] = e1 - o1;
        v[3][l] = e2 + o2;
        v[4][l] = e2 - o2;
        v[5][l] = y3;
    }
    v
}

/// `Gᵀ u` for six values `u`, lane by lane.
#[inline(always)]
fn gt(u: &[Lanes; ALPHA]) -> [Lanes; 3] {
    let mut g = [[0.0f32; LANES]; 3];
    for l in 0..LANES {
        let (u0, u1, u2, u3, u4, u5) = (u[0][l], u[1][l], u[2][l], u[3][l], u[4][l], u[5][l]);
        g[0][l] = 0.25 * u0 - (u1 + u2) / 6.0 + (u3 + u4) / 24.0;
        g[1][l] = (u2 - u1) / 6.0 + (u3 - u4) / 12.0;
        g[2][l] = (u3 + u4 - u1 - u2) / 6.0 + u5;
    }
    g
}

/// `A ȳ Aᵀ` (6 × 6) for every 4 × 4 tile of one interleaved block of output gradients (`grid`,
/// `4·tiles_y × 4·tiles_x` positions, zero past the output), stored from column `base` of the
/// 36 rows of `dmo` (stride `row`): the weight gradient's lift, the adjoint of [`untransform_block`].
#[inline(always)]
#[allow(clippy::needless_range_loop)] // `j` indexes a column of four rows
pub(super) fn lift_block(p: &Plan, grid: &[f32], lanes: usize, base: usize, dmo: &mut [f32], row: usize) {
    let wg = M * p.tiles_x;
    for ty in 0..p.tiles_y {
        for tx in 0..p.tiles_x {
            // r = A ȳ column by column (6 × 4), then each row of r times Aᵀ.
            let mut r = [[[0.0f32; LANES]; M]; ALPHA];
            for j in 0..M {
                let mut col = [[0.0f32; LANES]; M];
                for (i, c) in col.iter_mut().enumerate() {
                    *c = load(grid, ((M * ty + i) * wg + M * tx + j) * LANES, LANES);
                }
                for (i, v) in a(&col).iter().enumerate() {
                    r[i][j] = *v;
                }
            }
            let at_col = base + (ty * p.tiles_x + tx) * lanes;
            for (i, ri) in r.iter().enumerate() {
                for (j, v) in a(ri).iter().enumerate() {
                    store(dmo, (i * ALPHA + j) * row + at_col, v, lanes);
                }
            }
        }
    }
}

/// `dw[f] = Gᵀ dU[f] G` (3 × 3) for `du` laid out `[ξ][f]` (36 planes of `filters`): the
/// adjoint of [`transform_filter`].
pub(super) fn untransform_filter(du: &[f32], filters: usize, dw: &mut [f32]) {
    super::filter_adjoint::untransform_filter(du, filters, dw, gt);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(i: usize) -> f32 {
        ((i * 7919 % 1009) as f32 - 504.0) / 64.0
    }

    /// One lane of a six-value transform as a scalar function of its inputs.
    fn lane0<const N: usize>(f: impl Fn(&[Lanes; ALPHA]) -> [Lanes; N], x: [f32; ALPHA]) -> [f32; N] {
        let v: [Lanes; ALPHA] = std::array::from_fn(|i| [x[i]; LANES]);
        f(&v).map(|l| l[0])
    }

    #[test]
    fn one_dimensional_f43_is_a_correlation() {
        // y[i] = Σ_k g[k]·d[i + k] for four outputs from six inputs, through Aᵀ[(G g) ⊙ (Bᵀ d)].
        let d: [f32; 6] = std::array::from_fn(value);
        let g = [value(11), value(12), value(13)];
        let bd = lane0(bt, d);
        let gg = g6(&[g[0]; LANES], &[g[1]; LANES], &[g[2]; LANES]).map(|l| l[0]);
        let prod: [f32; 6] = std::array::from_fn(|k| gg[k] * bd[k]);
        let y = lane0(at, prod);
        for (i, got) in y.iter().enumerate() {
            let want: f32 = (0..3).map(|k| g[k] * d[i + k]).sum();
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                "y[{i}] {got} vs {want}"
            );
        }
    }

    #[test]
    fn the_transforms_match_the_matrices() {
        let b_t = [
            [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
            [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
            [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
            [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
            [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
            [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
        ];
        let a_t = [
            [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
            [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
            [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
            [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
        ];
        let x: [f32; 6] = std::array::from_fn(|i| value(i + 3));
        let (v, y) = (lane0(bt, x), lane0(at, x));
        for (i, row) in b_t.iter().enumerate() {
            let want: f32 = row.iter().zip(&x).map(|(a, b)| a * b).sum();
            assert!((v[i] - want).abs() <= 1e-5 * want.abs().max(1.0), "Bᵀ row {i}");
        }
        for (i, row) in a_t.iter().enumerate() {
            let want: f32 = row.iter().zip(&x).map(|(a, b)| a * b).sum();
            assert!((y[i] - want).abs() <= 1e-5 * want.abs().max(1.0), "Aᵀ row {i}");
        }
    }

    #[test]
    fn the_transformed_filter_of_a_delta_is_hand_computed() {
        // g = centre tap 1: G g Gᵀ = (G e₁)(G e₁)ᵀ with G e₁ = (0, −1/6, 1/6, 1/12, −1/12, 0).
        let mut g = [0.0f32; 9];
        g[4] = 1.0;
        let u = transform_filter(&g, 1, 1, false);
        assert_eq!(u.len(), 36);
        let col = [0.0f32, -1.0 / 6.0, 1.0 / 6.0, 2.0 / 24.0, -2.0 / 24.0, 0.0];
        for i in 0..6 {
            for j in 0..6 {
                assert!((u[i * 6 + j] - col[i] * col[j]).abs() < 1e-7, "ξ = ({i}, {j})");
            }
        }
    }

    #[test]
    fn rotated_filters_are_the_forward_transform_of_the_rotated_transposed_filter() {
        // 3 × 7 = 21 filters: a block of sixteen and a partial one.
        let (c_out, c_in) = (3, 7);
        let w: Vec<f32> = (0..c_out * c_in * 9).map(value).collect();
        let ur = transform_filter(&w, c_out, c_in, true);
        let plane = c_out * c_in;
        for o in 0..c_out {
            for i in 0..c_in {
                let rot: Vec<f32> = (0..9).map(|k| w[(o * c_in + i) * 9 + 8 - k]).collect();
                let one = transform_filter(&rot, 1, 1, false);
                for xi in 0..36 {
                    let got = ur[xi * plane + i * c_out + o];
                    assert_eq!(got.to_bits(), one[xi].to_bits(), "o {o} i {i} ξ {xi}");
                }
            }
        }
    }

    #[test]
    fn tiles_round_trip_to_a_direct_correlation() {
        // One 8 × 9 plane (padding 1: 2 × 3 tiles of 4, the last column cropped), 3 images in
        // the lanes, one filter: untransform(U ⊙ transform(d)) is the direct 3×3 correlation.
        let p = Plan::with_tile(1, 1, 8, 9, 1, M);
        let (hp, wp) = p.padded();
        let lanes = 3;
        let mut q = vec![0.0f32; hp * wp * LANES];
        for y in 0..p.h {
            for x in 0..p.w {
                for l in 0..lanes {
                    q[((y + 1) * wp + x + 1) * LANES + l] = value(l * 100 + y * p.w + x);
                }
            }
        }
        let g: Vec<f32> = (0..9).map(|k| value(k + 500)).collect();
        let u = transform_filter(&g, 1, 1, false);
        let row = p.tiles() * lanes;
        let mut v = vec![0.0f32; 36 * row];
        transform_block(&p, &q, &mut Default::default(), lanes, 0, &mut v, row);
        for (xi, vr) in v.chunks_mut(row).enumerate() {
            vr.iter_mut().for_each(|x| *x *= u[xi]);
        }
        let mut grid = vec![0.0f32; p.ho * p.wo * LANES];
        untransform_block(&p, &v, row, 0, lanes, &mut grid);
        for l in 0..lanes {
            for y in 0..p.ho {
                for x in 0..p.wo {
                    let want: f32 = (0..9)
                        .map(|k| g[k] * q[((y + k / 3) * wp + x + k % 3) * LANES + l])
                        .sum();
                    let got = grid[(y * p.wo + x) * LANES + l];
                    assert!(
                        (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "lane {l} ({y},{x}): {got} vs {want}"
                    );
                }
            }
        }
    }
    #[test]
    fn the_lift_and_the_filter_untransform_are_the_adjoints() {
        // ⟨untransform(s), ȳ⟩ = ⟨s, lift(ȳ)⟩ on one 4 × 4 tile, and ⟨transform(g), u⟩ = ⟨g, untransform(u)⟩
        // for 19 filters (a block of sixteen and a partial one).
        let p = Plan::with_tile(1, 1, 4, 4, 1, M);
        let s: Vec<f32> = (0..36).map(|i| value(i + 40)).collect();
        let ybar: Vec<f32> = (0..16).map(|i| value(i + 90)).collect();
        let mut grid = vec![0.0f32; 16 * LANES];
        let mut m = vec![0.0f32; 36];
        m.copy_from_slice(&s);
        untransform_block(&p, &m, 1, 0, 1, &mut grid);
        let lhs: f64 = (0..16).map(|k| grid[k * LANES] as f64 * ybar[k] as f64).sum();
        let mut yg = vec![0.0f32; 16 * LANES];
        for (k, v) in ybar.iter().enumerate() {
            yg[k * LANES] = *v;
        }
        let mut lifted = vec![0.0f32; 36];
        lift_block(&p, &yg, 1, 0, &mut lifted, 1);
        let rhs: f64 = s.iter().zip(&lifted).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!((lhs - rhs).abs() <= 1e-4 * lhs.abs().max(1.0), "lift: {lhs} vs {rhs}");

        let filters = 19;
        let g: Vec<f32> = (0..filters * 9).map(|i| value(i + 7)).collect();
        let u: Vec<f32> = (0..36 * filters).map(|i| value(i + 300)).collect();
        let tg = transform_filter(&g, 1, filters, false);
        let mut ug = vec![f32::NAN; filters * 9];
        untransform_filter(&u, filters, &mut ug);
        let lhs: f64 = tg.iter().zip(&u).map(|(a, b)| *a as f64 * *b as f64).sum();
        let rhs: f64 = g.iter().zip(&ug).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!((lhs - rhs).abs() <= 1e-4 * lhs.abs().max(1.0), "filter: {lhs} vs {rhs}");
    }
}
