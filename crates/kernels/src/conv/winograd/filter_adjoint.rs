//! The last step of the Winograd weight gradient, for either tile size: `dw[f] = Gᵀ dU[f] G`
//! (3 × 3) per filter, the adjoint of the filter transform `U = G g Gᵀ`.
//!
//! `dU` is laid out `[ξ][f]` (`α²` planes of `filters` values, `α` = 4 for F(2×2, 3×3) and 6
//! for F(4×4, 3×3)); the tile size only changes the 1-D map `Gᵀ` (`α` values to 3), which the
//! caller passes in. Sixteen filters run at a time, one per vector lane; the last block holds
//! the remainder in its first lanes.

use rayon::prelude::*;

use crate::lanes::{Lanes, load};
use crate::transpose::LANES;
use crate::wide::{Kernel, wide};

/// `dw[f] = Gᵀ dU[f] G` for every filter `f`, with `gt` the 1-D `Gᵀ` of the tile size (`N` = α).
pub(super) fn untransform_filter<const N: usize, G>(du: &[f32], filters: usize, dw: &mut [f32], gt: G)
where
    G: Fn(&[Lanes; N]) -> [Lanes; 3] + Copy + Sync,
{
    // Blocks of 64 · 16 filters per task, the last one with the remainder.
    const PER_TASK: usize = 64 * LANES;
    dw.par_chunks_mut(PER_TASK * 9).enumerate().for_each(|(t, dw)| {
        wide(FilterUntransform::<N, G> {
            du,
            filters,
            first: t * PER_TASK,
            dw,
            gt,
        })
    });
}

/// Filters `first..first + dw.len() / 9` of [`untransform_filter`].
struct FilterUntransform<'a, const N: usize, G> {
    du: &'a [f32],
    filters: usize,
    first: usize,
    dw: &'a mut [f32],
    gt: G,
}

impl<const N: usize, G: Fn(&[Lanes; N]) -> [Lanes; 3]> Kernel for FilterUntransform<'_, N, G> {
    type Out = ();

    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // `j` indexes a column of `N` rows
    fn run(self) {
        let count = self.dw.len() / 9;
        for oi in (0..count).step_by(LANES) {
            let lanes = LANES.min(count - oi);
            // t = Gᵀ u column by column (3 × N), then each row of t times G.
            let mut t = [[[0.0f32; LANES]; N]; 3];
            for j in 0..N {
                let mut col = [[0.0f32; LANES]; N];
                for (i, c) in col.iter_mut().enumerate() {
                    *c = load(self.du, (i * N + j) * self.filters + self.first + oi, lanes);
                }
                for (i, v) in (self.gt)(&col).iter().enumerate() {
                    t[i][j] = *v;
                }
            }
            let mut g = [[0.0f32; LANES]; 9];
            for (i, ti) in t.iter().enumerate() {
                for (j, v) in (self.gt)(ti).iter().enumerate() {
                    g[i * 3 + j] = *v;
                }
            }
            for (lane, taps) in self.dw[oi * 9..(oi + lanes) * 9].chunks_exact_mut(9).enumerate() {
                for (k, tap) in taps.iter_mut().enumerate() {
                    *tap = g[k][lane];
                }
            }
        }
    }
}
