//! The filter side of Winograd F(2×2, 3×3): `U = G g Gᵀ` per (output, input) channel pair, and
//! the rotated, transposed filter of the input gradient.

use super::lanes::{load, store};
use crate::transpose::LANES;
use crate::wide::{Kernel, wide};

/// `U[ξ][o][i] = (G w[o][i] Gᵀ)[ξ]` for `w` laid out `c_out × c_in × 3 × 3`: sixteen filters
/// at a time across vector lanes, the rest one by one, with the same arithmetic.
pub(super) fn transform_filter(w: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let plane = c_out * c_in;
    let mut u = vec![0.0f32; 16 * plane];
    wide(FilterTransform { w, u: &mut u, plane });
    u
}

struct FilterTransform<'a> {
    w: &'a [f32],
    u: &'a mut [f32],
    plane: usize,
}

impl Kernel for FilterTransform<'_> {
    type Out = ();

    #[inline(always)]
    fn run(self) {
        let full = if crate::transpose::fast() {
            self.plane / LANES * LANES
        } else {
            0
        };
        let mut inter = [0.0f32; 9 * LANES];
        for oi in (0..full).step_by(LANES) {
            // inter[k·16 + lane] = tap k of filter oi + lane
            for (lane, taps) in self.w[oi * 9..(oi + LANES) * 9].chunks_exact(9).enumerate() {
                for (k, v) in taps.iter().enumerate() {
                    inter[k * LANES + lane] = *v;
                }
            }
            let mut g = [[0.0f32; LANES]; 9];
            for (k, v) in g.iter_mut().enumerate() {
                *v = load(&inter, k * LANES, LANES);
            }
            for (xi, v) in transform_one(&g).iter().enumerate() {
                store(self.u, xi * self.plane + oi, v, LANES);
            }
        }
        for oi in full..self.plane {
            let g: [[f32; 1]; 9] = core::array::from_fn(|k| [self.w[oi * 9 + k]]);
            for (xi, v) in transform_one(&g).iter().enumerate() {
                self.u[xi * self.plane + oi] = v[0];
            }
        }
    }
}

/// `G g Gᵀ` (16 values, row-major) of the 3 × 3 filter `g` (row-major), lane by lane.
#[inline(always)]
fn transform_one<const L: usize>(g: &[[f32; L]; 9]) -> [[f32; L]; 16] {
    let half = |a: [f32; L]| {
        let mut r = a;
        r.iter_mut().for_each(|r| *r *= 0.5);
        r
    };
    let add = |a: [f32; L], b: [f32; L]| {
        let mut r = a;
        r.iter_mut().zip(b).for_each(|(r, b)| *r += b);
        r
    };
    let sub = |a: [f32; L], b: [f32; L]| {
        let mut r = a;
        r.iter_mut().zip(b).for_each(|(r, b)| *r -= b);
        r
    };
    // t = G g (4×3)
    let mut t = [[[0.0f32; L]; 3]; 4];
    for c in 0..3 {
        let (g0, g1, g2) = (g[c], g[3 + c], g[6 + c]);
        t[0][c] = g0;
        t[1][c] = half(add(add(g0, g1), g2));
        t[2][c] = half(add(sub(g0, g1), g2));
        t[3][c] = g2;
    }
    // U = t Gᵀ (4×4)
    let mut u = [[0.0f32; L]; 16];
    for (r, row) in t.iter().enumerate() {
        let (a, b, c) = (row[0], row[1], row[2]);
        u[r * 4] = a;
        u[r * 4 + 1] = half(add(add(a, b), c));
        u[r * 4 + 2] = half(add(sub(a, b), c));
        u[r * 4 + 3] = c;
    }
    u
}

/// The filter of the input gradient: `w'[i][o] = rot180(w[o][i])`, laid out `c_in × c_out × 3 × 3`.
pub(super) fn gradient_filter(w: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let mut r = vec![0.0f32; w.len()];
    for o in 0..c_out {
        for i in 0..c_in {
            for k in 0..9 {
                r[(i * c_out + o) * 9 + (8 - k)] = w[(o * c_in + i) * 9 + k];
            }
        }
    }
    r
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
    fn the_gradient_filter_rotates_and_transposes() {
        // c_out = 2, c_in = 1: w[o][0][k] = 10·o + k.
        let w: Vec<f32> = (0..2).flat_map(|o| (0..9).map(move |k| (10 * o + k) as f32)).collect();
        let r = gradient_filter(&w, 2, 1);
        for o in 0..2 {
            for k in 0..9 {
                assert_eq!(r[o * 9 + 8 - k], (10 * o + k) as f32);
            }
        }
    }
}
