//! The filter side of Winograd F(2×2, 3×3): `U = G g Gᵀ` per (output, input) channel pair.
//!
//! The input gradient's filter is `rot180(w[o][i])` at `(i, o)`. Since `G J = P G` (`J`
//! reverses 3 taps, `P` swaps rows 0 and 3 of 4), its transform is the forward's with
//! `ξ = (r, c)` read at `(p(r), p(c))`: [`transform_filter_rotated`] computes it
//! from `w` directly, transposed, with no rotated copy of the filters.

use rayon::prelude::*;

use crate::lanes::{load, store};
use crate::transpose::LANES;
use crate::wide::{Kernel, wide};

/// `U[ξ][o][i] = (G w[o][i] Gᵀ)[ξ]` for `w` laid out `c_out × c_in × 3 × 3`: the four rows of
/// `ξ` in parallel, sixteen filters at a time across vector lanes, the rest one by one, with the
/// same arithmetic.
pub(super) fn transform_filter(w: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    transform(w, c_out, c_in, false)
}

/// The input gradient's `U'[ξ][i][o] = U[rotated(ξ)][o][i]`: the transform of the rotated,
/// transposed filter, bit for bit.
pub(super) fn transform_filter_rotated(w: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    transform(w, c_out, c_in, true)
}

fn transform(w: &[f32], c_out: usize, c_in: usize, rotate: bool) -> Vec<f32> {
    let plane = c_out * c_in;
    let mut u = vec![0.0f32; 16 * plane];
    u.par_chunks_mut(4 * plane).enumerate().for_each(|(r, u)| {
        wide(FilterTransformRow {
            w,
            u,
            c_out,
            c_in,
            r,
            rotate,
        })
    });
    u
}

/// `ξ` with rows and columns 0 and 3 swapped (an involution; the tests' statement of the map
/// [`FilterTransformRow::mapping`] applies).
#[cfg(test)]
fn rotated(xi: usize) -> usize {
    swap(xi / 4) * 4 + swap(xi % 4)
}

fn swap(k: usize) -> usize {
    match k {
        0 => 3,
        3 => 0,
        k => k,
    }
}

/// Planes `4r..4r + 4` of the output (in `u`) for every filter.
struct FilterTransformRow<'a> {
    w: &'a [f32],
    u: &'a mut [f32],
    c_out: usize,
    c_in: usize,
    r: usize,
    /// Output position `j = i·c_out + o` holds filter `(o, i)`'s transform at the rotated `ξ`.
    rotate: bool,
}

impl FilterTransformRow<'_> {
    /// The first tap of the filter at output position `j`.
    #[inline(always)]
    fn source(&self, j: usize) -> usize {
        9 * if self.rotate {
            (j % self.c_out) * self.c_in + j / self.c_out
        } else {
            j
        }
    }

    /// The source row of `ξ` and where column `col` of it goes.
    #[inline(always)]
    fn mapping(&self) -> (usize, [usize; 4]) {
        if self.rotate {
            (swap(self.r), [swap(0), swap(1), swap(2), swap(3)])
        } else {
            (self.r, [0, 1, 2, 3])
        }
    }
}

impl Kernel for FilterTransformRow<'_> {
    type Out = ();

    #[inline(always)]
    fn run(self) {
        let plane = self.c_out * self.c_in;
        let (row, cols) = self.mapping();
        let full = plane / LANES * LANES;
        let mut inter = [0.0f32; 9 * LANES];
        for j in (0..full).step_by(LANES) {
            // inter[k·16 + lane] = tap k of the filter of position j + lane; the sixteen filters
            // lie `step` apart unless the block crosses a row of the rotated order.
            let (first, step) = (self.source(j), if self.rotate { 9 * self.c_in } else { 9 });
            let even = !self.rotate || j % self.c_out + LANES <= self.c_out;
            for lane in 0..LANES {
                let at = if even {
                    first + lane * step
                } else {
                    self.source(j + lane)
                };
                for (k, v) in self.w[at..at + 9].iter().enumerate() {
                    inter[k * LANES + lane] = *v;
                }
            }
            let mut g = [[0.0f32; LANES]; 9];
            for (k, v) in g.iter_mut().enumerate() {
                *v = load(&inter, k * LANES, LANES);
            }
            for (col, v) in transform_row(&g, row).iter().enumerate() {
                store(self.u, cols[col] * plane + j, v, LANES);
            }
        }
        for j in full..plane {
            let at = self.source(j);
            let g: [[f32; 1]; 9] = core::array::from_fn(|k| [self.w[at + k]]);
            for (col, v) in transform_row(&g, row).iter().enumerate() {
                self.u[cols[col] * plane + j] = v[0];
            }
        }
    }
}

/// Row `r` of `G` applied to `(a, b, c)`, lane by lane: `a`, `½(a + b + c)`, `½(a − b + c)`, `c`.
#[inline(always)]
fn g_row<const L: usize>(r: usize, a: [f32; L], b: [f32; L], c: [f32; L]) -> [f32; L] {
    let mut out = a;
    match r {
        0 => {}
        1 => {
            for l in 0..L {
                out[l] = 0.5 * (a[l] + b[l] + c[l]);
            }
        }
        2 => {
            for l in 0..L {
                out[l] = 0.5 * (a[l] - b[l] + c[l]);
            }
        }
        _ => out = c,
    }
    out
}

/// Row `r` of `G g Gᵀ` (4 values) of the 3 × 3 filter `g` (row-major), lane by lane.
#[inline(always)]
fn transform_row<const L: usize>(g: &[[f32; L]; 9], r: usize) -> [[f32; L]; 4] {
    // t = row r of G g (3 values), then t Gᵀ.
    let mut t = [[0.0f32; L]; 3];
    for (c, v) in t.iter_mut().enumerate() {
        *v = g_row(r, g[c], g[3 + c], g[6 + c]);
    }
    let mut u = [[0.0f32; L]; 4];
    for (col, v) in u.iter_mut().enumerate() {
        *v = g_row(col, t[0], t[1], t[2]);
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transformed_filter_of_a_delta_is_hand_computed() {
        // g = centre tap 1: G g Gᵀ = (G e₁)(G e₁)ᵀ with G e₁ = (0, ½, −½, 0).
        let mut g = [0.0f32; 9];
        g[4] = 1.0;
        let u = transform_filter(&g, 1, 1);
        assert_eq!(u.len(), 16);
        let col = [0.0f32, 0.5, -0.5, 0.0];
        for i in 0..4 {
            for j in 0..4 {
                assert_eq!(u[i * 4 + j], col[i] * col[j], "ξ = ({i}, {j})");
            }
        }
    }

    #[test]
    fn sixteen_filters_at_a_time_match_one_at_a_time() {
        // 3 × 7 = 21 filters: one block of sixteen across lanes, five one by one.
        let w: Vec<f32> = (0..21 * 9).map(|i| ((i * 7919 % 1009) as f32 - 504.0) / 64.0).collect();
        let u = transform_filter(&w, 3, 7);
        for oi in 0..21 {
            let one = transform_filter(&w[oi * 9..oi * 9 + 9], 1, 1);
            for xi in 0..16 {
                assert_eq!(u[xi * 21 + oi].to_bits(), one[xi].to_bits(), "filter {oi}, ξ {xi}");
            }
        }
    }

    #[test]
    fn the_rotated_transform_is_the_forward_one_transposed_at_the_rotated_xi() {
        // 5 × 7: blocks of sixteen that cross rows of the transposed order, and three filters
        // one by one; 32 × 3: blocks within rows (the strided gather).
        for (c_out, c_in) in [(5, 7), (32, 3)] {
            let w: Vec<f32> = (0..c_out * c_in * 9)
                .map(|i| ((i * 7919 % 1009) as f32 - 504.0) / 64.0)
                .collect();
            let (u, ur) = (
                transform_filter(&w, c_out, c_in),
                transform_filter_rotated(&w, c_out, c_in),
            );
            let plane = c_out * c_in;
            for xi in 0..16 {
                for o in 0..c_out {
                    for i in 0..c_in {
                        let (got, want) = (ur[xi * plane + i * c_out + o], u[rotated(xi) * plane + o * c_in + i]);
                        assert_eq!(got.to_bits(), want.to_bits(), "{c_out}×{c_in}: ξ {xi}, o {o}, i {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_rotated_filter_transforms_to_the_rotated_xi() {
        // G rot180(g) Gᵀ at ξ equals G g Gᵀ at rotated(ξ), bit for bit (the same adds).
        let g: Vec<f32> = (0..9).map(|i| ((i * 7919 % 1009) as f32 - 504.0) / 64.0).collect();
        let r: Vec<f32> = (0..9).map(|k| g[8 - k]).collect();
        let (ug, ur) = (transform_filter(&g, 1, 1), transform_filter(&r, 1, 1));
        for xi in 0..16 {
            assert_eq!(ur[xi].to_bits(), ug[rotated(xi)].to_bits(), "ξ {xi}");
        }
        assert_eq!((rotated(0), rotated(5), rotated(7), rotated(12)), (15, 5, 4, 3));
    }
}
