//! Winograd F(2×2, 3×3) for dense stride-1 3×3 convolutions (forward and input gradient).
//!
//! Each 2×2 output tile is computed from a 4×4 input tile with 16 multiplications per
//! (input, output) channel pair instead of 36: the input tile is transformed `V = Bᵀ d B`,
//! the filter `U = G g Gᵀ`, the 16 products `M = U ⊙ V` are summed over input channels as 16
//! GEMMs (`M[ξ] = U[ξ] · V[ξ]`, `c_out × c_in` times `c_in × tiles`), and each output tile is
//! `Aᵀ M A` (Lavin & Gray, 2016). The transforms only add and halve, so the f32 error stays
//! within a few ulps of the direct sum (measured in the tests and in docs/performance.md).
//!
//! The input gradient of a stride-1 3×3 convolution with padding `p` is itself a stride-1 3×3
//! convolution of `dy` with padding `2 − p` and the 180°-rotated, transposed filter, so it runs
//! on the same code. Images are processed in chunks sized by memory (the transformed tiles of a
//! chunk stay around 8 MiB); within a chunk, rayon runs over images for the transforms and over
//! the 16 GEMMs. The chunking depends on the shapes only, so results do not depend on the
//! thread count.

use rayon::prelude::*;

use super::WinogradPolicy;
use super::epilogue::{Epilogue, finish};
use super::geometry::ConvGeometry;
use crate::gemm::{MatRef, matmul};

/// Bytes of transformed input plus products a chunk of images aims for.
const CHUNK_BYTES: usize = 8 << 20;

/// Whether Winograd runs this geometry under `policy`: dense, 3×3, stride 1, no dilation,
/// padding ≤ 2, and under [`WinogradPolicy::Auto`] ≥ 256 channels in and out. Measured side by
/// side with im2col (docs/performance.md): 1.11× (forward) and 1.28× (input gradient) at
/// ResNet-18's 256 @ 8² layer, 0.97× and 1.10× at 512 @ 4², but 0.65–0.75× at 64 @ 32² and
/// 128 @ 16², where the memory-bound tile transforms cost more than the 2.25× fewer
/// multiplications save.
pub(crate) fn applies(g: &ConvGeometry, policy: WinogradPolicy) -> bool {
    let eligible = g.groups == 1 && g.kh == 3 && g.kw == 3 && g.stride == 1 && g.dilation == 1 && g.padding <= 2;
    match policy {
        WinogradPolicy::Off => false,
        WinogradPolicy::Always => eligible,
        WinogradPolicy::Auto => eligible && g.c_in >= 256 && g.c_out >= 256,
    }
}

/// `U[ξ][o][i] = (G w[o][i] Gᵀ)[ξ]` for `w` laid out `c_out × c_in × 3 × 3`.
fn transform_filter(w: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let mut u = vec![0.0f32; 16 * c_out * c_in];
    let plane = c_out * c_in;
    for (oi, g) in w.chunks_exact(9).enumerate() {
        // t = G g (4×3)
        let mut t = [[0.0f32; 3]; 4];
        for c in 0..3 {
            let (g0, g1, g2) = (g[c], g[3 + c], g[6 + c]);
            t[0][c] = g0;
            t[1][c] = 0.5 * (g0 + g1 + g2);
            t[2][c] = 0.5 * (g0 - g1 + g2);
            t[3][c] = g2;
        }
        // U = t Gᵀ (4×4)
        for (r, row) in t.iter().enumerate() {
            let (a, b, c) = (row[0], row[1], row[2]);
            let vals = [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
            for (col, v) in vals.into_iter().enumerate() {
                u[(r * 4 + col) * plane + oi] = v;
            }
        }
    }
    u
}

/// The filter of the input gradient: `w'[i][o] = rot180(w[o][i])`, laid out `c_in × c_out × 3 × 3`.
fn gradient_filter(w: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
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

/// Shapes of one Winograd convolution: `c_in × h × w` images to `c_out × ho × wo`.
#[derive(Clone, Copy)]
struct Plan {
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    pad: usize,
    ho: usize,
    wo: usize,
    tiles_y: usize,
    tiles_x: usize,
}

impl Plan {
    fn new(c_in: usize, c_out: usize, h: usize, w: usize, pad: usize) -> Self {
        let (ho, wo) = (h + 2 * pad - 2, w + 2 * pad - 2);
        Self {
            c_in,
            c_out,
            h,
            w,
            pad,
            ho,
            wo,
            tiles_y: ho.div_ceil(2),
            tiles_x: wo.div_ceil(2),
        }
    }

    fn tiles(&self) -> usize {
        self.tiles_y * self.tiles_x
    }

    /// Images per chunk: as many as fit [`CHUNK_BYTES`], at least one.
    fn images_per_chunk(&self) -> usize {
        let per_image = 16 * (self.c_in + self.c_out) * self.tiles() * 4;
        (CHUNK_BYTES / per_image.max(1)).max(1)
    }
}

/// Row strides of the tile matrices of a chunk with `tiles` tiles in all.
#[derive(Clone, Copy)]
struct Strides {
    /// Tiles per chunk.
    tiles: usize,
    /// Stride between the rows of a ξ-matrix (≥ `tiles`): padded so that the 16 values of one
    /// tile, one row apart, never sit a multiple of 4 KiB apart (cache-set aliasing).
    row: usize,
    /// Stride between the 16 output ξ-matrices (padded for the same reason).
    m_plane: usize,
}

impl Strides {
    fn new(tiles: usize, c_out: usize) -> Self {
        let row = tiles.next_multiple_of(16) + 16;
        Self {
            tiles,
            row,
            m_plane: c_out * row + 16,
        }
    }
}

/// The transformed 4×4 input tiles of channel `c` of every image in `xs`:
/// `vc[ξ·row + tile]`, tiles numbered image by image, row by row. `pad` is scratch for one
/// zero-padded plane.
fn transform_input(p: &Plan, xs: &[f32], c: usize, vc: &mut [f32], st: Strides, pad: &mut Vec<f32>) {
    let hw = p.h * p.w;
    let tiles = p.tiles();
    // The padded plane covers every tile: 2·tiles + 2 rows and columns.
    let (hp, wp) = (2 * p.tiles_y + 2, 2 * p.tiles_x + 2);
    pad.clear();
    pad.resize(hp * wp, 0.0);
    for (b, img) in xs.chunks_exact(p.c_in * hw).enumerate() {
        let src = &img[c * hw..(c + 1) * hw];
        for (y, line) in src.chunks_exact(p.w).enumerate() {
            let at = (y + p.pad) * wp + p.pad;
            pad[at..at + p.w].copy_from_slice(line);
        }
        for ty in 0..p.tiles_y {
            for tx in 0..p.tiles_x {
                let mut d = [[0.0f32; 4]; 4];
                for (i, row) in d.iter_mut().enumerate() {
                    let at = (2 * ty + i) * wp + 2 * tx;
                    row.copy_from_slice(&pad[at..at + 4]);
                }
                // V = Bᵀ d B: rows first, then columns.
                let mut t = [[0.0f32; 4]; 4];
                for j in 0..4 {
                    t[0][j] = d[0][j] - d[2][j];
                    t[1][j] = d[1][j] + d[2][j];
                    t[2][j] = d[2][j] - d[1][j];
                    t[3][j] = d[1][j] - d[3][j];
                }
                let at = b * tiles + ty * p.tiles_x + tx;
                for (i, r) in t.iter().enumerate() {
                    let vals = [r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3]];
                    for (j, val) in vals.into_iter().enumerate() {
                        vc[(i * 4 + j) * st.row + at] = val;
                    }
                }
            }
        }
    }
}

/// `out = Aᵀ M A` for the tiles of one image (starting at tile `t0`), cropped to `ho × wo`.
fn transform_output(p: &Plan, m: &[f32], st: Strides, t0: usize, out: &mut [f32]) {
    let ohw = p.ho * p.wo;
    for o in 0..p.c_out {
        let dst = &mut out[o * ohw..(o + 1) * ohw];
        for ty in 0..p.tiles_y {
            for tx in 0..p.tiles_x {
                let at = o * st.row + t0 + ty * p.tiles_x + tx;
                let mut s = [[0.0f32; 4]; 4];
                for (xi, cell) in s.iter_mut().flatten().enumerate() {
                    *cell = m[xi * st.m_plane + at];
                }
                // r = Aᵀ s (2×4), y = r A (2×2)
                let mut r = [[0.0f32; 4]; 2];
                for j in 0..4 {
                    r[0][j] = s[0][j] + s[1][j] + s[2][j];
                    r[1][j] = s[1][j] - s[2][j] - s[3][j];
                }
                for (i, row) in r.iter().enumerate() {
                    let y = 2 * ty + i;
                    if y >= p.ho {
                        continue;
                    }
                    let vals = [row[0] + row[1] + row[2], row[1] - row[2] - row[3]];
                    for (j, val) in vals.into_iter().enumerate() {
                        let x = 2 * tx + j;
                        if x < p.wo {
                            dst[y * p.wo + x] = val;
                        }
                    }
                }
            }
        }
    }
}

/// Runs the plan over every image in `x` (`batch × c_in × h × w`), `u` being the transformed
/// filter; `out` is `batch × c_out × ho × wo`.
fn run(p: &Plan, x: &[f32], u: &[f32], out: &mut [f32], epi: Option<&Epilogue<'_>>) {
    let (img_in, img_out, tiles) = (p.c_in * p.h * p.w, p.c_out * p.ho * p.wo, p.tiles());
    let nb = p.images_per_chunk();
    let (mut v, mut m) = (Vec::new(), Vec::new());
    for (xs, os) in x.chunks(nb * img_in).zip(out.chunks_mut(nb * img_out)) {
        let st = Strides::new(xs.len() / img_in * tiles, p.c_out);
        v.clear();
        v.resize(16 * p.c_in * st.row, 0.0);
        m.clear();
        m.resize(16 * st.m_plane, 0.0);
        // Input transform, laid out `[c][ξ][tile]` so each channel is one task's contiguous block.
        v.par_chunks_mut(16 * st.row)
            .enumerate()
            .for_each_init(Vec::new, |pad, (c, vc)| transform_input(p, xs, c, vc, st, pad));
        // 16 GEMMs, one per ξ: M[ξ] (c_out × tiles, row stride `row`) = U[ξ] · V[ξ].
        m.par_chunks_mut(st.m_plane).enumerate().for_each(|(xi, mx)| {
            let a = MatRef::row_major(&u[xi * p.c_out * p.c_in..(xi + 1) * p.c_out * p.c_in], p.c_out, p.c_in);
            // V[ξ] is `c_in × tiles` with row stride 16·row.
            let vx = MatRef::strided(&v[xi * st.row..], p.c_in, st.tiles, 16 * st.row, 1);
            matmul(mx, st.row, a, vx, false);
        });
        os.par_chunks_mut(img_out).enumerate().for_each(|(b, o)| {
            transform_output(p, &m, st, b * tiles, o);
            finish(epi, o, p.c_out, p.ho * p.wo);
        });
    }
}

/// `out = conv(x, w)`, then `epi` per image, for a geometry where [`applies`] holds.
pub(crate) fn forward(g: &ConvGeometry, x: &[f32], w: &[f32], out: &mut [f32], epi: Option<&Epilogue<'_>>) {
    let plan = Plan::new(g.c_in, g.c_out, g.h, g.w, g.padding);
    let u = transform_filter(w, g.c_out, g.c_in);
    run(&plan, x, &u, out, epi);
}

/// `dx = convᵀ(dy, w)` for a geometry where [`applies`] holds: a stride-1 3×3 convolution of
/// `dy` with padding `2 − p` and the rotated, transposed filter.
pub(crate) fn grad_input(g: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let plan = Plan::new(g.c_out, g.c_in, g.h_out(), g.w_out(), 2 - g.padding);
    let u = transform_filter(&gradient_filter(w, g.c_out, g.c_in), g.c_in, g.c_out);
    run(&plan, dy, &u, dx, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(c: usize, k: usize, stride: usize, padding: usize) -> ConvGeometry {
        ConvGeometry {
            batch: 2,
            c_in: c,
            h: 8,
            w: 8,
            c_out: c,
            kh: k,
            kw: k,
            stride,
            padding,
            dilation: 1,
            groups: 1,
        }
    }

    #[test]
    fn the_policy_picks_the_measured_shapes() {
        let (auto, always, off) = (WinogradPolicy::Auto, WinogradPolicy::Always, WinogradPolicy::Off);
        assert!(applies(&geometry(256, 3, 1, 1), auto));
        assert!(!applies(&geometry(128, 3, 1, 1), auto));
        assert!(applies(&geometry(128, 3, 1, 1), always));
        assert!(!applies(&geometry(256, 3, 1, 1), off));
        assert!(!applies(&geometry(256, 3, 2, 1), always));
        assert!(!applies(&geometry(256, 5, 1, 2), always));
        assert!(!applies(&geometry(256, 3, 1, 3), always));
    }

    #[test]
    fn the_transformed_filter_of_a_delta_is_hand_computed() {
        // g = centre tap 1: G g Gᵀ = (G e₁)(G e₁)ᵀ with G e₁ = (0, ½, −½, 0).
        let mut g = [0.0f32; 9];
        g[4] = 1.0;
        let u = transform_filter(&g, 1, 1);
        let col = [0.0f32, 0.5, -0.5, 0.0];
        for i in 0..4 {
            for j in 0..4 {
                assert_eq!(u[i * 4 + j], col[i] * col[j], "ξ = ({i}, {j})");
            }
        }
    }
}
