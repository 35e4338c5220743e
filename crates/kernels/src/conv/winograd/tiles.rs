//! The tile transforms of Winograd F(2×2, 3×3), sixteen images at a time, one per vector lane
//! (F(4×4, 3×3)'s are in `f4`; the per-channel tasks here run either).
//!
//! A chunk's images are taken in blocks of [`LANES`]. Channel `c` of a block is interleaved
//! (`padded[(y·wp + x)·16 + lane]`, zero-padded), so one tile of the sixteen images is sixteen
//! consecutive values and `V = Bᵀ d B` runs as vector adds across images instead of scalar code
//! with sixteen scattered stores per tile. The GEMM columns follow the same order — block by
//! block, tile by tile, lane by lane (`column`) — so each transformed value is stored as one
//! run of lanes. The output side mirrors it: `Aᵀ M A` across lanes into an interleaved grid,
//! de-interleaved into a per-channel staging area (`staged[b][y][x]`, image by image).
//!
//! The arithmetic is the scalar version's, operation for operation, so the values do not
//! change; only the order in which tiles are visited does.

use std::cell::RefCell;

use super::{Plan, Strides};
use crate::conv::input_quant::Packing;
use crate::lanes::{add, load, store, sub};
use crate::transpose::{LANES, deinterleave16, interleave16};
use crate::wide::Kernel;

/// Images in block `k` of a chunk of `n`.
pub(super) fn block_lanes(n: usize, k: usize) -> usize {
    LANES.min(n - k * LANES)
}

/// The GEMM column of tile `t` of image `b` in a chunk of `n` images with `tiles` tiles each
/// (the order the transforms use; named here for the tests).
#[cfg(test)]
fn column(n: usize, tiles: usize, b: usize, t: usize) -> usize {
    let (k, lane) = (b / LANES, b % LANES);
    k * LANES * tiles + t * block_lanes(n, k) + lane
}

/// `inter[pos·16 + lane] = planes[lane·stride + pos]` for the `lanes` planes of a block, the
/// lanes past them zero (the register transposes for a whole block).
#[inline(always)]
fn interleave_block(planes: &[f32], stride: usize, len: usize, lanes: usize, inter: &mut [f32]) {
    if lanes == LANES {
        interleave16(planes, stride, len, inter);
        return;
    }
    inter.fill(0.0);
    for (l, plane) in planes.chunks(stride).take(lanes).enumerate() {
        for (pos, v) in plane[..len].iter().enumerate() {
            inter[pos * LANES + l] = *v;
        }
    }
}

/// Scratch of one tile-transform task: the interleaved planes of a block, and the zero-padded
/// grid the tiles are read from.
#[derive(Default)]
pub(super) struct InputScratch {
    inter: Vec<f32>,
    pub padded: Vec<f32>,
    /// F(4×4, 3×3)'s per-tile intermediate.
    pub tile: super::f4::TileRows,
    /// The layout whose border `padded` holds as zeros, once one was set.
    zeroed_for: Option<GridLayout>,
}

thread_local! {
    /// Each thread's tile-transform scratch, kept from one task, and one call, to the next.
    /// With a fresh one per rayon task (`for_each_init`, 10–30 tasks a loop) every task paid a
    /// zero fill of its grid (about 370 MB of fills in three ResNet-18 steps, session 26, and
    /// 166 MB of output grids).
    static INPUT_SCRATCH: RefCell<InputScratch> = RefCell::new(InputScratch::default());
    /// Each thread's output grid ([`OutputChannel`]), kept for the same reason.
    static OUTPUT_GRID: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `f` with this thread's [`InputScratch`] (a fresh one if it is already in use further up
/// the stack).
pub(super) fn with_input_scratch<R>(f: impl FnOnce(&mut InputScratch) -> R) -> R {
    INPUT_SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut InputScratch::default()),
    })
}

/// `f` with this thread's output grid, as [`with_input_scratch`].
pub(super) fn with_output_grid<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    OUTPUT_GRID.with(|g| match g.try_borrow_mut() {
        Ok(mut g) => f(&mut g),
        Err(_) => f(&mut Vec::new()),
    })
}

/// Where a block's `h × w` planes sit in the padded grid: at row and column `pad` of a grid of
/// `rows × cols` positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct GridLayout {
    pub h: usize,
    pub w: usize,
    pub pad: usize,
    pub rows: usize,
    pub cols: usize,
}

impl InputScratch {
    /// Sizes the buffers for `grid`, its border all zeros. Blocks rewrite only the interior, so
    /// the border stays zero from one block, and one channel, to the next: the grid is zeroed
    /// only when its layout changes (a fill per channel measured about 550 MB of `memset` over three
    /// ResNet-18 steps).
    #[inline(always)]
    pub fn reset(&mut self, grid: GridLayout) {
        self.inter.resize(grid.h * grid.w * LANES, 0.0);
        if self.zeroed_for != Some(grid) {
            self.padded.clear();
            self.padded.resize(grid.rows * grid.cols * LANES, 0.0);
            self.zeroed_for = Some(grid);
        }
    }

    /// Interleaves a block's `lanes` planes (`h × w`, `stride` apart in `planes`), fake-quantized
    /// when `q` is given, into the grid at row and column `pad` (`cols` positions a row).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn load_block(
        &mut self,
        planes: &[f32],
        stride: usize,
        (h, w): (usize, usize),
        lanes: usize,
        pad: usize,
        cols: usize,
        q: Option<&Packing>,
    ) {
        interleave_block(planes, stride, h * w, lanes, &mut self.inter);
        if let Some(q) = q {
            q.quantize_in_place(&mut self.inter);
        }
        let row = w * LANES;
        for (y, src) in self.inter.chunks_exact(row).enumerate() {
            let at = ((y + pad) * cols + pad) * LANES;
            self.padded[at..at + row].copy_from_slice(src);
        }
    }
}

/// The transformed tiles of channel `c` of every image in `xs` (`n × c_in × h × w`) into `vc`:
/// row `ξ` (stride `st.row`) holds `V[ξ]` of every tile, in `column` order.
pub(super) struct InputChannel<'a> {
    pub p: &'a Plan,
    pub xs: &'a [f32],
    pub c: usize,
    pub vc: &'a mut [f32],
    pub st: Strides,
    pub s: &'a mut InputScratch,
    /// The input fake-quant, applied to the interleaved values.
    pub q: Option<&'a Packing>,
}

impl Kernel for InputChannel<'_> {
    type Out = ();

    #[inline(always)]
    fn run(self) {
        let p = self.p;
        let (hw, img) = (p.h * p.w, p.c_in * p.h * p.w);
        let n = self.xs.len() / img;
        let (hp, wp) = p.padded();
        let s = self.s;
        s.reset(GridLayout {
            h: p.h,
            w: p.w,
            pad: p.pad,
            rows: hp,
            cols: wp,
        });
        for k in 0..n.div_ceil(LANES) {
            let lanes = block_lanes(n, k);
            let planes = &self.xs[k * LANES * img + self.c * hw..];
            s.load_block(planes, img, (p.h, p.w), lanes, p.pad, wp, self.q);
            let base = k * LANES * p.tiles();
            if p.m == super::f4::M {
                super::f4::transform_block(p, &s.padded, &mut s.tile, lanes, base, self.vc, self.st.row);
            } else {
                transform_block(p, &s.padded, lanes, base, self.vc, self.st.row);
            }
        }
    }
}

/// `V = Bᵀ d B` for every tile of one interleaved, padded block, stored from column `base`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // `j` indexes four rows of `t` at once
fn transform_block(p: &Plan, q: &[f32], lanes: usize, base: usize, vc: &mut [f32], row: usize) {
    let wp = p.padded().1;
    for ty in 0..p.tiles_y {
        for tx in 0..p.tiles_x {
            let d = |i: usize, j: usize| load(q, ((2 * ty + i) * wp + 2 * tx + j) * LANES, LANES);
            // Rows first, then columns.
            let mut t = [[[0.0f32; LANES]; 4]; 4];
            for j in 0..4 {
                let (d0, d1, d2, d3) = (d(0, j), d(1, j), d(2, j), d(3, j));
                t[0][j] = sub(d0, d2);
                t[1][j] = add(d1, d2);
                t[2][j] = sub(d2, d1);
                t[3][j] = sub(d1, d3);
            }
            let at = base + (ty * p.tiles_x + tx) * lanes;
            for (i, r) in t.iter().enumerate() {
                let vals = [sub(r[0], r[2]), add(r[1], r[2]), sub(r[2], r[1]), sub(r[1], r[3])];
                for (j, v) in vals.iter().enumerate() {
                    store(vc, (i * 4 + j) * row + at, v, lanes);
                }
            }
        }
    }
}

/// `Aᵀ M A` for output channel `o` of every image of a chunk of `n`: `m` holds the 16 product
/// matrices (`ξ` apart by `st.m_plane`, rows by `st.row`, columns in `column` order); the
/// result goes to `staged` (`n × ho × wo`), `grid` being scratch.
pub(super) struct OutputChannel<'a> {
    pub p: &'a Plan,
    pub m: &'a [f32],
    pub st: Strides,
    pub o: usize,
    pub n: usize,
    pub staged: &'a mut [f32],
    pub grid: &'a mut Vec<f32>,
}

impl Kernel for OutputChannel<'_> {
    type Out = ();

    #[inline(always)]
    fn run(self) {
        let p = self.p;
        let ohw = p.ho * p.wo;
        self.grid.resize(ohw * LANES, 0.0);
        for k in 0..self.n.div_ceil(LANES) {
            let lanes = block_lanes(self.n, k);
            let base = self.o * self.st.row + k * LANES * p.tiles();
            if p.m == super::f4::M {
                super::f4::untransform_block(p, self.m, self.st.m_plane, base, lanes, self.grid);
            } else {
                untransform_block(p, self.m, self.st.m_plane, base, lanes, self.grid);
            }
            let dst = &mut self.staged[k * LANES * ohw..];
            if lanes == LANES {
                deinterleave16(self.grid, ohw, ohw, dst);
            } else {
                for (l, plane) in dst.chunks_mut(ohw).take(lanes).enumerate() {
                    for (pos, v) in plane.iter_mut().enumerate() {
                        *v = self.grid[pos * LANES + l];
                    }
                }
            }
        }
    }
}

/// `y = Aᵀ s A` for every tile of one block (products from `m[ξ·m_plane + base + t·lanes]`),
/// into the interleaved output grid, cropped to `ho × wo`.
#[inline(always)]
fn untransform_block(p: &Plan, m: &[f32], m_plane: usize, base: usize, lanes: usize, grid: &mut [f32]) {
    for ty in 0..p.tiles_y {
        for tx in 0..p.tiles_x {
            let at = base + (ty * p.tiles_x + tx) * lanes;
            let mut s = [[0.0f32; LANES]; 16];
            for (xi, v) in s.iter_mut().enumerate() {
                *v = load(m, xi * m_plane + at, lanes);
            }
            // r = Aᵀ s (2×4), y = r A (2×2)
            let (mut r0, mut r1) = ([[0.0f32; LANES]; 4], [[0.0f32; LANES]; 4]);
            for j in 0..4 {
                r0[j] = add(add(s[j], s[4 + j]), s[8 + j]);
                r1[j] = sub(sub(s[4 + j], s[8 + j]), s[12 + j]);
            }
            for (i, r) in [r0, r1].iter().enumerate() {
                let y = 2 * ty + i;
                if y >= p.ho {
                    continue;
                }
                let vals = [add(add(r[0], r[1]), r[2]), sub(sub(r[1], r[2]), r[3])];
                for (j, v) in vals.iter().enumerate() {
                    let x = 2 * tx + j;
                    if x < p.wo {
                        store(grid, (y * p.wo + x) * LANES, v, LANES);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk of 19 images (one full block of 16 and a block of 3), 2 channels, 5 × 6 planes,
    /// padding 1: 3 × 3 tiles, the last row and column of tiles cropped.
    fn plan() -> (Plan, usize) {
        (Plan::new(2, 2, 5, 6, 1), 19)
    }

    fn value(i: usize) -> f32 {
        ((i * 7919 % 1009) as f32 - 504.0) / 64.0
    }

    #[test]
    fn input_tiles_match_the_scalar_transform_at_their_columns() {
        let (p, n) = plan();
        let (hw, img) = (p.h * p.w, p.c_in * p.h * p.w);
        let xs: Vec<f32> = (0..n * img).map(value).collect();
        let st = Strides::new(n * p.tiles(), p.c_out);
        // One scratch for every channel, first used by a layout of the same grid size whose
        // interior covers this one's border: the border must be zeroed again, once.
        let mut s = InputScratch::default();
        let dirty = Plan::new(2, 2, 8, 8, 0);
        assert_eq!(dirty.padded(), p.padded());
        let xs8: Vec<f32> = (0..n * 2 * 64).map(|i| value(i) + 1.0e3).collect();
        let mut vc8 = vec![0.0; 16 * Strides::new(n * dirty.tiles(), 2).row];
        crate::wide::wide(InputChannel {
            p: &dirty,
            xs: &xs8,
            c: 0,
            vc: &mut vc8,
            st: Strides::new(n * dirty.tiles(), 2),
            s: &mut s,
            q: None,
        });
        for c in 0..p.c_in {
            let mut vc = vec![f32::NAN; 16 * st.row];
            crate::wide::wide(InputChannel {
                p: &p,
                xs: &xs,
                c,
                vc: &mut vc,
                st,
                s: &mut s,
                q: None,
            });
            for b in 0..n {
                let at = |y: usize, x: usize| -> f32 {
                    let (y, x) = (y.checked_sub(p.pad), x.checked_sub(p.pad));
                    match (y, x) {
                        (Some(y), Some(x)) if y < p.h && x < p.w => xs[b * img + c * hw + y * p.w + x],
                        _ => 0.0,
                    }
                };
                for ty in 0..p.tiles_y {
                    for tx in 0..p.tiles_x {
                        let d: [[f32; 4]; 4] =
                            std::array::from_fn(|i| std::array::from_fn(|j| at(2 * ty + i, 2 * tx + j)));
                        // Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]]
                        let bt = [
                            [1.0, 0.0, -1.0, 0.0],
                            [0.0, 1.0, 1.0, 0.0],
                            [0.0, -1.0, 1.0, 0.0],
                            [0.0, 1.0, 0.0, -1.0],
                        ];
                        let col = column(n, p.tiles(), b, ty * p.tiles_x + tx);
                        for i in 0..4 {
                            for j in 0..4 {
                                let want: f32 = (0..4)
                                    .flat_map(|a| (0..4).map(move |e| (a, e)))
                                    .map(|(a, e)| bt[i][a] * d[a][e] * bt[j][e])
                                    .sum();
                                let got = vc[(i * 4 + j) * st.row + col];
                                assert!(
                                    (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                                    "b {b} tile ({ty},{tx}) ξ ({i},{j}): {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn output_tiles_match_the_scalar_transform_and_land_in_their_image() {
        let (p, n) = plan();
        let st = Strides::new(n * p.tiles(), p.c_out);
        let m: Vec<f32> = (0..16 * st.m_plane).map(value).collect();
        let ohw = p.ho * p.wo;
        // Aᵀ = [[1,1,1,0],[0,1,−1,−1]]
        let at = [[1.0f32, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]];
        for o in 0..p.c_out {
            let mut staged = vec![f32::NAN; n * ohw];
            let mut grid = Vec::new();
            crate::wide::wide(OutputChannel {
                p: &p,
                m: &m,
                st,
                o,
                n,
                staged: &mut staged,
                grid: &mut grid,
            });
            for b in 0..n {
                for y in 0..p.ho {
                    for x in 0..p.wo {
                        let col = column(n, p.tiles(), b, (y / 2) * p.tiles_x + x / 2);
                        let s = |xi: usize| m[xi * st.m_plane + o * st.row + col];
                        let want: f32 = (0..4)
                            .flat_map(|a| (0..4).map(move |e| (a, e)))
                            .map(|(a, e)| at[y % 2][a] * s(a * 4 + e) * at[x % 2][e])
                            .sum();
                        let got = staged[b * ohw + y * p.wo + x];
                        assert!(
                            (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                            "b {b} ({y},{x}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
