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
//! chunk stay around 8 MiB, in whole blocks of 16 images); the tile transforms run on sixteen
//! images at once, one per vector lane (`tiles`), the filter transform on sixteen filters at
//! once (`filter`). Within a chunk, rayon runs over channels for the transforms and over the
//! 16 GEMMs. The chunking depends on the shapes only, so results do not depend on the thread
//! count.

use std::cell::Cell;

mod filter;
mod tiles;
mod weight_grad;

use rayon::prelude::*;

use self::filter::{transform_filter, transform_filter_rotated};
use self::tiles::{InputChannel, InputScratch, OutputChannel};
use self::weight_grad::{GradTiles, untransform_filter};
use super::WinogradPolicy;
use super::epilogue::{Epilogue, finish};
use super::geometry::ConvGeometry;
use super::input_quant::Packing;
use crate::copy::copy_short;
use crate::gemm::{MatRef, matmul};
use crate::transpose::LANES;
use crate::wide::{Isa, isa, wide};

/// Bytes of transformed input plus products a chunk of images aims for.
const CHUNK_BYTES: usize = 8 << 20;

/// Whether Winograd runs this geometry under `policy`: dense, 3×3, stride 1, no dilation,
/// padding ≤ 2, and under [`WinogradPolicy::Auto`] at least [`auto_min_channels`] channels in
/// and out.
pub(crate) fn applies(g: &ConvGeometry, policy: WinogradPolicy) -> bool {
    applies_from(g, policy, auto_min_channels())
}

/// [`applies`] with `Auto`'s channel threshold given.
fn applies_from(g: &ConvGeometry, policy: WinogradPolicy, min_channels: usize) -> bool {
    let eligible = g.groups == 1 && g.kh == 3 && g.kw == 3 && g.stride == 1 && g.dilation == 1 && g.padding <= 2;
    match policy {
        WinogradPolicy::Off => false,
        WinogradPolicy::Always => eligible,
        WinogradPolicy::Auto => eligible && g.c_in >= min_channels && g.c_out >= min_channels,
    }
}

/// The fewest channels (in and out) for which `Auto` picks Winograd over im2col: 128 on the
/// AVX-512 path, 64 on narrower vectors. The transforms' work grows with the channels, the
/// multiplications saved with their square; where the GEMM runs at twice the width, the
/// transforms' share is larger. Measured against im2col at ResNet-18's 64 @ 32² layer
/// (docs/performance.md): 0.9× on Zen 5 and 0.96–1.17× on Zen 4 (AVX-512 path), but
/// 1.29× forward, 1.33× input gradient and 1.49× weight gradient on Zen 1 (AVX2 path). At
/// 128 @ 16² and above it measured 1.0–1.5× on every path.
pub(crate) fn auto_min_channels() -> usize {
    match isa() {
        Isa::Avx512 => 128,
        Isa::Avx2 | Isa::Sse2 => 64,
    }
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

    /// Rows and columns of the zero-padded plane that covers every tile.
    fn padded(&self) -> (usize, usize) {
        (2 * self.tiles_y + 2, 2 * self.tiles_x + 2)
    }

    /// Images per chunk: as many as fit [`CHUNK_BYTES`], rounded down to whole blocks of
    /// [`LANES`], and at least one block.
    fn images_per_chunk(&self) -> usize {
        let per_image = 16 * (self.c_in + self.c_out) * self.tiles() * 4;
        let fit = CHUNK_BYTES / per_image.max(1);
        (fit / LANES).max(1) * LANES
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

thread_local! {
    /// The chunk buffers of the last Winograd call on this thread, kept for the next one: the
    /// transformed tiles, the products and the staged output are 8–20 MiB per layer, and fresh
    /// ones cost a zero fill and page faults on every call.
    static BUFFERS: Cell<Buffers> = const { Cell::new(Buffers(Vec::new(), Vec::new(), Vec::new())) };
}

/// Three scratch vectors, taken out of [`BUFFERS`] for a call and put back after it: a nested
/// call (rayon may run another convolution's task on this thread while it waits) finds empty
/// ones and allocates its own instead of sharing.
#[derive(Default)]
struct Buffers(Vec<f32>, Vec<f32>, Vec<f32>);

impl Buffers {
    fn take() -> Self {
        BUFFERS.with(Cell::take)
    }

    fn put_back(self) {
        BUFFERS.with(|b| b.set(self));
    }
}

/// Runs the plan over every image in `x` (`batch × c_in × h × w`), `u` being the transformed
/// filter; `out` is `batch × c_out × ho × wo`.
fn run(p: &Plan, x: &[f32], u: &[f32], out: &mut [f32], epi: Option<&Epilogue<'_>>, q: Option<&Packing>) {
    let (img_in, ohw, tiles) = (p.c_in * p.h * p.w, p.ho * p.wo, p.tiles());
    let img_out = p.c_out * ohw;
    let nb = p.images_per_chunk();
    let mut bufs = Buffers::take();
    let Buffers(v, m, staged) = &mut bufs;
    for (xs, os) in x.chunks(nb * img_in).zip(out.chunks_mut(nb * img_out)) {
        let n = xs.len() / img_in;
        let st = Strides::new(n * tiles, p.c_out);
        // Every value the GEMMs read is written first: no zeroing needed.
        v.resize(16 * p.c_in * st.row, 0.0);
        m.resize(16 * st.m_plane, 0.0);
        staged.resize(p.c_out * n * ohw, 0.0);
        // Input transform, laid out `[c][ξ][tile]` so each channel is one task's contiguous block.
        v.par_chunks_mut(16 * st.row)
            .enumerate()
            .for_each_init(InputScratch::default, |s, (c, vc)| {
                wide(InputChannel { p, xs, c, vc, st, s, q });
            });
        // 16 GEMMs, one per ξ: M[ξ] (c_out × tiles, row stride `row`) = U[ξ] · V[ξ].
        m[..16 * st.m_plane]
            .par_chunks_mut(st.m_plane)
            .enumerate()
            .for_each(|(xi, mx)| {
                let a = MatRef::row_major(&u[xi * p.c_out * p.c_in..(xi + 1) * p.c_out * p.c_in], p.c_out, p.c_in);
                // V[ξ] is `c_in × tiles` with row stride 16·row.
                let vx = MatRef::strided(&v[xi * st.row..], p.c_in, st.tiles, 16 * st.row, 1);
                matmul(mx, st.row, a, vx, false);
            });
        // Output transform by channel into `staged[o][b]`, then into the images.
        let m = &*m;
        staged[..p.c_out * n * ohw]
            .par_chunks_mut(n * ohw)
            .enumerate()
            .for_each_init(Vec::new, |grid, (o, staged)| {
                wide(OutputChannel {
                    p,
                    m,
                    st,
                    o,
                    n,
                    staged,
                    grid,
                });
            });
        let staged = &*staged;
        os.par_chunks_mut(img_out).enumerate().for_each(|(b, o)| {
            for (c, plane) in o.chunks_exact_mut(ohw).enumerate() {
                copy_short(plane, &staged[(c * n + b) * ohw..(c * n + b + 1) * ohw]);
            }
            finish(epi, o, p.c_out, ohw);
        });
    }
    bufs.put_back();
}

/// `out = conv(q(x), w)`, then `epi` per image, for a geometry where [`applies`] holds; `q` is
/// the input fake-quant, applied while the input is interleaved for the tile transform.
pub(crate) fn forward(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    out: &mut [f32],
    epi: Option<&Epilogue<'_>>,
    q: Option<&Packing>,
) {
    let plan = Plan::new(g.c_in, g.c_out, g.h, g.w, g.padding);
    let u = transform_filter(w, g.c_out, g.c_in);
    run(&plan, x, &u, out, epi, q);
}

/// `dx = convᵀ(dy, w)` for a geometry where [`applies`] holds: a stride-1 3×3 convolution of
/// `dy` with padding `2 − p` and the rotated, transposed filter (transformed straight from `w`).
pub(crate) fn grad_input(g: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let plan = Plan::new(g.c_out, g.c_in, g.h_out(), g.w_out(), 2 - g.padding);
    let u = transform_filter_rotated(w, g.c_out, g.c_in);
    run(&plan, dy, &u, dx, None, None);
}

/// `dw = Σ_images ∂conv(q(x), w)/∂w · dy` for a geometry where [`applies`] holds: the input
/// tiles as in the forward, the output gradient's tiles lifted (`A ∂y Aᵀ`), sixteen GEMMs
/// accumulated chunk after chunk (a fixed order: the chunking depends on the shapes only), and
/// the filter transform's adjoint at the end.
pub(crate) fn grad_weight(g: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32], q: Option<&Packing>) {
    let p = Plan::new(g.c_in, g.c_out, g.h, g.w, g.padding);
    let (img_in, img_out, tiles) = (p.c_in * p.h * p.w, p.c_out * p.ho * p.wo, p.tiles());
    let nb = p.images_per_chunk();
    let plane = p.c_out * p.c_in;
    let mut du = vec![0.0f32; 16 * plane];
    let mut bufs = Buffers::take();
    let Buffers(v, dm, _) = &mut bufs;
    for (i, (xs, dys)) in x.chunks(nb * img_in).zip(dy.chunks(nb * img_out)).enumerate() {
        let st = Strides::new(xs.len() / img_in * tiles, p.c_out);
        v.resize(16 * p.c_in * st.row, 0.0);
        dm.resize(16 * p.c_out * st.row, 0.0);
        v.par_chunks_mut(16 * st.row)
            .enumerate()
            .for_each_init(InputScratch::default, |s, (c, vc)| {
                wide(InputChannel {
                    p: &p,
                    xs,
                    c,
                    vc,
                    st,
                    s,
                    q,
                });
            });
        dm.par_chunks_mut(16 * st.row)
            .enumerate()
            .for_each_init(InputScratch::default, |s, (o, dmo)| {
                wide(GradTiles {
                    p: &p,
                    dys,
                    o,
                    dmo,
                    st,
                    s,
                });
            });
        // dU[ξ] (c_out × c_in) += dM[ξ] (c_out × tiles) · V[ξ]ᵀ (tiles × c_in).
        du.par_chunks_mut(plane).enumerate().for_each(|(xi, dux)| {
            let a = MatRef::strided(&dm[xi * st.row..], p.c_out, st.tiles, 16 * st.row, 1);
            let b = MatRef::strided(&v[xi * st.row..], p.c_in, st.tiles, 16 * st.row, 1).t();
            matmul(dux, p.c_in, a, b, i > 0);
        });
    }
    bufs.put_back();
    untransform_filter(&du, plane, dw);
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
    fn the_threshold_follows_the_vector_width() {
        let want = if crate::wide::vector_isa() == "avx512f" {
            128
        } else {
            64
        };
        assert_eq!(auto_min_channels(), want);
    }

    #[test]
    fn the_policy_picks_the_measured_shapes() {
        let (auto, always, off) = (WinogradPolicy::Auto, WinogradPolicy::Always, WinogradPolicy::Off);
        assert!(applies(&geometry(256, 3, 1, 1), auto));
        assert!(applies(&geometry(128, 3, 1, 1), auto));
        assert_eq!(applies(&geometry(64, 3, 1, 1), auto), auto_min_channels() <= 64);
        assert!(!applies(&geometry(32, 3, 1, 1), auto));
        assert!(applies_from(&geometry(64, 3, 1, 1), auto, 64));
        assert!(!applies_from(&geometry(64, 3, 1, 1), auto, 128));
        assert!(!applies_from(&geometry(63, 3, 1, 1), auto, 64));
        assert!(applies(&geometry(128, 3, 1, 1), always));
        assert!(!applies(&geometry(256, 3, 1, 1), off));
        assert!(!applies(&geometry(256, 3, 2, 1), always));
        assert!(!applies(&geometry(256, 5, 1, 2), always));
        assert!(!applies(&geometry(256, 3, 1, 3), always));
    }
}
