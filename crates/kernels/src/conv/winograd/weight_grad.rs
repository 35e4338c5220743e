//! The weight gradient through Winograd F(2×2, 3×3) (F(4×4, 3×3)'s lift and filter adjoint are
//! in `f4`): the forward's adjoint.
//!
//! The forward is `y_tile = Aᵀ [U ⊙ V] A` with `U = G g Gᵀ`, summed over input channels, so
//! `∂L/∂U[ξ] = Σ_tiles (A ∂y_tile Aᵀ)[ξ] · V[ξ]`: the same input tiles `V` as the forward, the
//! output gradient's 2×2 tiles lifted to 4×4 (`A ∂y Aᵀ`, here [`GradTiles`]), sixteen GEMMs
//! (`c_out × tiles` times `tiles × c_in`) accumulated over the chunks of images, and at the end
//! `∂L/∂g = Gᵀ (∂L/∂U) G` per filter ([`untransform_filter`]). The tiles are visited sixteen
//! images at a time, one per lane, in the forward's column order.

use super::tiles::{GridLayout, InputScratch, block_lanes};
use super::{Plan, Strides};
use crate::lanes::{Lanes, add, load, store, sub};
use crate::transpose::LANES;
use crate::wide::Kernel;

/// `A ∂y Aᵀ` (rows `ξ` of `dmo`, stride `st.row`) for every output-gradient tile (2×2 lifted to
/// 4×4, or 4×4 to 6×6 for F(4×4, 3×3)) of
/// channel `o` of the images in `dys` (`n × c_out × ho × wo`); the part of a tile past the
/// output's edge reads as zeros.
pub(super) struct GradTiles<'a> {
    pub p: &'a Plan,
    pub dys: &'a [f32],
    pub o: usize,
    pub dmo: &'a mut [f32],
    pub st: Strides,
    pub s: &'a mut InputScratch,
}

impl Kernel for GradTiles<'_> {
    type Out = ();

    #[inline(always)]
    fn run(self) {
        let p = self.p;
        let (ohw, img) = (p.ho * p.wo, p.c_out * p.ho * p.wo);
        let n = self.dys.len() / img;
        let wg = p.m * p.tiles_x;
        let s = self.s;
        // The grid covers every tile; the part past the output stays zero.
        s.reset(GridLayout {
            h: p.ho,
            w: p.wo,
            pad: 0,
            rows: p.m * p.tiles_y,
            cols: wg,
        });
        for k in 0..n.div_ceil(LANES) {
            let lanes = block_lanes(n, k);
            let planes = &self.dys[k * LANES * img + self.o * ohw..];
            s.load_block(planes, img, (p.ho, p.wo), lanes, 0, wg, None);
            let base = k * LANES * p.tiles();
            if p.m == super::f4::M {
                super::f4::lift_block(p, &s.padded, lanes, base, self.dmo, self.st.row);
            } else {
                lift_block(p, &s.padded, lanes, base, self.dmo, self.st.row);
            }
        }
    }
}

/// `A ȳ Aᵀ` for every 2×2 tile of one interleaved block, stored from column `base`.
/// `A = [[1, 0], [1, 1], [1, −1], [0, −1]]`.
#[inline(always)]
fn lift_block(p: &Plan, grid: &[f32], lanes: usize, base: usize, dmo: &mut [f32], row: usize) {
    let wg = 2 * p.tiles_x;
    for ty in 0..p.tiles_y {
        for tx in 0..p.tiles_x {
            let y = |i: usize, j: usize| load(grid, ((2 * ty + i) * wg + 2 * tx + j) * LANES, LANES);
            let (y00, y01, y10, y11) = (y(0, 0), y(0, 1), y(1, 0), y(1, 1));
            // r = A ȳ (4×2), then r Aᵀ (4×4)
            let zero = [0.0f32; LANES];
            let r = [
                [y00, y01],
                [add(y00, y10), add(y01, y11)],
                [sub(y00, y10), sub(y01, y11)],
                [sub(zero, y10), sub(zero, y11)],
            ];
            let at = base + (ty * p.tiles_x + tx) * lanes;
            for (i, [a, b]) in r.iter().enumerate() {
                let vals = [*a, add(*a, *b), sub(*a, *b), sub(zero, *b)];
                for (j, v) in vals.iter().enumerate() {
                    store(dmo, (i * 4 + j) * row + at, v, lanes);
                }
            }
        }
    }
}

/// `dw[o][i] = Gᵀ dU[o][i] G` (3×3) for `du` laid out `[ξ][o·c_in + i]` (16 planes).
pub(super) fn untransform_filter(du: &[f32], filters: usize, dw: &mut [f32]) {
    super::filter_adjoint::untransform_filter(du, filters, dw, gt);
}

/// `Gᵀ u` for four values `u`, lane by lane: `Gᵀ = [[1, ½, ½, 0], [0, ½, −½, 0], [0, ½, ½, 1]]`,
/// so `(a, b, c, d) ↦ (a + ½(b + c), ½(b − c), ½(b + c) + d)`.
#[inline(always)]
fn gt(u: &[Lanes; 4]) -> [Lanes; 3] {
    let mut g = [[0.0f32; LANES]; 3];
    for l in 0..LANES {
        let (s, t) = (0.5 * (u[1][l] + u[2][l]), 0.5 * (u[1][l] - u[2][l]));
        g[0][l] = u[0][l] + s;
        g[1][l] = t;
        g[2][l] = s + u[3][l];
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wide::wide;

    fn value(i: usize) -> f32 {
        ((i * 7919 % 1009) as f32 - 504.0) / 64.0
    }

    #[test]
    fn the_filter_untransform_is_the_adjoint_of_the_transform() {
        // ⟨G g Gᵀ, u⟩ = ⟨g, Gᵀ u G⟩ for 5 × 209 = 1045 filters: a task of 1024 and one of 21
        // (a block of sixteen and five one by one).
        let filters = 5 * 209;
        let g: Vec<f32> = (0..filters * 9).map(value).collect();
        let u: Vec<f32> = (0..16 * filters).map(|i| value(i + 5000)).collect();
        let gu = super::super::filter::transform_filter(&g, 5, 209);
        let mut dw = vec![f32::NAN; filters * 9];
        untransform_filter(&u, filters, &mut dw);
        for oi in 0..filters {
            let lhs: f64 = (0..16)
                .map(|xi| gu[xi * filters + oi] as f64 * u[xi * filters + oi] as f64)
                .sum();
            let rhs: f64 = (0..9).map(|k| g[oi * 9 + k] as f64 * dw[oi * 9 + k] as f64).sum();
            assert!(
                (lhs - rhs).abs() <= 1e-4 * lhs.abs().max(1.0),
                "filter {oi}: {lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn lifted_tiles_are_the_adjoint_of_the_output_transform() {
        // ⟨Aᵀ s A, ȳ⟩ = ⟨s, A ȳ Aᵀ⟩ over a chunk of 19 images (a block of 16 and one of 3),
        // 5 × 7 outputs (cropped tiles), for one channel.
        let p = Plan::new(2, 2, 5, 7, 1);
        let n = 19;
        let (ohw, img) = (p.ho * p.wo, p.c_out * p.ho * p.wo);
        let st = Strides::new(n * p.tiles(), p.c_out);
        let dys: Vec<f32> = (0..n * img).map(value).collect();
        let m: Vec<f32> = (0..16 * st.m_plane).map(|i| value(i + 77)).collect();
        let o = 1;
        let mut dmo = vec![f32::NAN; 16 * st.row];
        let mut s = InputScratch::default();
        wide(GradTiles {
            p: &p,
            dys: &dys,
            o,
            dmo: &mut dmo,
            st,
            s: &mut s,
        });
        let mut staged = vec![0.0f32; n * ohw];
        let mut grid = Vec::new();
        wide(super::super::tiles::OutputChannel {
            p: &p,
            m: &m,
            st,
            o,
            n,
            staged: &mut staged,
            grid: &mut grid,
        });
        let lhs: f64 = (0..n)
            .flat_map(|b| (0..ohw).map(move |q| (b, q)))
            .map(|(b, q)| staged[b * ohw + q] as f64 * dys[b * img + o * ohw + q] as f64)
            .sum();
        let rhs: f64 = (0..16)
            .flat_map(|xi| (0..st.tiles).map(move |c| (xi, c)))
            .map(|(xi, c)| m[xi * st.m_plane + o * st.row + c] as f64 * dmo[xi * st.row + c] as f64)
            .sum();
        assert!((lhs - rhs).abs() <= 1e-4 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
    }
}
