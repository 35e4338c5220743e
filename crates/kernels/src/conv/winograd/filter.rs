//! The filter side of Winograd F(2×2, 3×3): `U = G g Gᵀ` per (output, input) channel pair.
//!
//! The input gradient's filter is `rot180(w[o][i])` at `(i, o)`. Since `G J = P G` (`J`
//! reverses 3 taps, `P` swaps rows 0 and 3 of 4), its transform is the forward's with
//! `ξ = (r, c)` read at `(p(r), p(c))` ([`rotated`]), transposed: the input gradient reads the
//! forward's transform that way (`Filter::Rotated`) and needs no transform of its own.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::lanes::{load, store_uninit};
use crate::transpose::{LANES, interleave16_rows};
use crate::wide::{Kernel, wide};

/// Filters per task of the transform: enough work to amortise a task, and several tasks per
/// thread from 64 × 64 channels on.
const PER_TASK: usize = 64 * LANES;

/// `U[ξ][o][i] = (G w[o][i] Gᵀ)[ξ]` for `w` laid out `c_out × c_in × 3 × 3`: sixteen filters at
/// a time across vector lanes, each task a run of filters through all sixteen `ξ`.
///
/// Each filter's nine taps are gathered once and all sixteen `ξ` computed from them (the first
/// form ran one task per row of `ξ`, gathering every filter four times). The planes are written
/// straight into fresh memory, never zeroed.
pub(super) fn transform_filter(w: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let plane = c_out * c_in;
    let mut u = Vec::with_capacity(16 * plane);
    if plane == 0 {
        return u;
    }
    let tasks = plane_columns(&mut u.spare_capacity_mut()[..16 * plane], plane, PER_TASK);
    tasks.into_par_iter().enumerate().for_each(|(t, u)| {
        wide(FilterTransform {
            w,
            u,
            first: t * PER_TASK,
        })
    });
    // SAFETY: the tasks cover the columns of all sixteen planes, and each writes every value of
    // its columns (`FilterTransform::run`).
    #[allow(unsafe_code)]
    unsafe {
        u.set_len(16 * plane)
    };
    u
}

/// The planes of `u` (`plane` values each) cut into runs of `per_task` columns: item `t` holds,
/// plane by plane, columns `t · per_task..` of every plane.
fn plane_columns(u: &mut [MaybeUninit<f32>], plane: usize, per_task: usize) -> Vec<Vec<&mut [MaybeUninit<f32>]>> {
    let mut tasks: Vec<Vec<_>> = (0..plane.div_ceil(per_task))
        .map(|_| Vec::with_capacity(u.len() / plane))
        .collect();
    for p in u.chunks_exact_mut(plane) {
        for (task, cols) in tasks.iter_mut().zip(p.chunks_mut(per_task)) {
            task.push(cols);
        }
    }
    tasks
}

/// `ξ` with rows and columns 0 and 3 swapped (an involution).
pub(super) fn rotated(xi: usize) -> usize {
    swap(xi / 4) * 4 + swap(xi % 4)
}

fn swap(k: usize) -> usize {
    match k {
        0 => 3,
        3 => 0,
        k => k,
    }
}

/// Filters `first..first + u[0].len()` into the sixteen planes `u[ξ]`.
struct FilterTransform<'a> {
    w: &'a [f32],
    u: Vec<&'a mut [MaybeUninit<f32>]>,
    first: usize,
}

impl Kernel for FilterTransform<'_> {
    type Out = ();

    #[inline(always)]
    fn run(mut self) {
        let count = self.u[0].len();
        let mut inter = [0.0f32; LANES * LANES];
        for at in (0..count).step_by(LANES) {
            let lanes = LANES.min(count - at);
            gather(self.w, self.first + at, lanes, &mut inter);
            let mut g = [[0.0f32; LANES]; 9];
            for (k, v) in g.iter_mut().enumerate() {
                *v = load(&inter, k * LANES, LANES);
            }
            for r in 0..4 {
                for (col, v) in transform_row(&g, r).iter().enumerate() {
                    store_uninit(&mut *self.u[r * 4 + col], at, v, lanes);
                }
            }
        }
    }
}

/// `inter[k·16 + lane] = tap k` of filter `first + lane` of `w`, for `lanes` filters (nine taps
/// apart): one register transpose of sixteen overlapping rows where `w` reaches far enough
/// past the block, else value by value (which measured 10 % of ResNet-18's 512 @ 4² input
/// gradient: sixteen scalar stores feed each vector load).
#[inline(always)]
fn gather(w: &[f32], first: usize, lanes: usize, inter: &mut [f32; LANES * LANES]) {
    let src = &w[9 * first..];
    if lanes == LANES && src.len() >= 15 * 9 + LANES && interleave16_rows(src, 9, inter) {
        return;
    }
    for (lane, g) in src[..9 * lanes].chunks_exact(9).enumerate() {
        for (k, v) in g.iter().enumerate() {
            inter[k * LANES + lane] = *v;
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
        // 3 × 7 = 21 filters: one block of sixteen across lanes and five in a partial one;
        // 40 × 29 = 1160: two tasks, the second ending in a partial block.
        for (c_out, c_in) in [(3, 7), (40, 29)] {
            let plane = c_out * c_in;
            let w: Vec<f32> = (0..plane * 9)
                .map(|i| ((i * 7919 % 1009) as f32 - 504.0) / 64.0)
                .collect();
            let u = transform_filter(&w, c_out, c_in);
            for oi in 0..plane {
                let one = transform_filter(&w[oi * 9..oi * 9 + 9], 1, 1);
                for xi in 0..16 {
                    assert_eq!(u[xi * plane + oi].to_bits(), one[xi].to_bits(), "filter {oi}, ξ {xi}");
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
