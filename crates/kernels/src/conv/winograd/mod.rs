//! Winograd convolution for dense stride-1 3×3 layers, F(4×4, 3×3) or F(2×2, 3×3): forward,
//! input gradient and weight gradient.
//!
//! Each `m × m` output tile is computed from an `(m + 2)²` input tile: the input tile is
//! transformed `V = Bᵀ d B`, the filter `U = G g Gᵀ`, the `(m + 2)²` products `M = U ⊙ V` are
//! summed over input channels as one GEMM per `ξ` (`M[ξ] = U[ξ] · V[ξ]`, `c_out × c_in` times
//! `c_in × tiles`), and each output tile is `Aᵀ M A` (Lavin & Gray, 2016). F(2×2, 3×3) does 16
//! multiplications per 4 outputs and channel pair (direct: 36) with transforms that only add and
//! halve, so its f32 error stays within a few ulps of the direct sum; F(4×4, 3×3) ([`f4`]) does
//! 36 per 16 outputs, at ten to twenty times im2col's f32 error (measured in the tests and in
//! docs/performance.md). [`tile_side`] picks between them.
//!
//! The input gradient of a stride-1 3×3 convolution with padding `p` is itself a stride-1 3×3
//! convolution of `dy` with padding `2 − p` and the 180°-rotated, transposed filter, so it runs
//! on the same code. Images are processed in chunks sized by memory (the transformed tiles of a
//! chunk stay around 8 MiB, in whole blocks of 16 images); the tile transforms run on sixteen
//! images at once, one per vector lane (`tiles`), the filter transform on sixteen filters at
//! once (`filter`). Within a chunk, rayon runs over channels for the transforms and over the
//! GEMMs. The chunking depends on the shapes only, so results do not depend on the thread
//! count.

use std::cell::Cell;
use std::mem::MaybeUninit;

mod f4;
mod filter;
mod filter_adjoint;
mod saved;
mod tiles;
mod weight_grad;

pub(crate) use saved::{SavedTiles, TilesKey};

use rayon::prelude::*;

use self::filter::transform_filter;
use self::tiles::{InputChannel, OutputChannel, with_input_scratch, with_output_grid};
use self::weight_grad::{GradTiles, untransform_filter};
use super::WinogradPolicy;
use super::epilogue::{Epilogue, finish};
use super::geometry::ConvGeometry;
use super::input_quant::Packing;
use crate::fresh::{assume_written, copy_into, written_by};
use crate::gemm::{MatRef, matmul};
use crate::transpose::LANES;
use crate::wide::wide;

/// Bytes of transformed input plus products a chunk of images aims for.
const CHUNK_BYTES: usize = 8 << 20;

/// Whether Winograd runs this geometry under `policy` (forward, input gradient and weight
/// gradient): dense, 3×3, stride 1, no dilation, padding ≤ 2, and under
/// [`WinogradPolicy::Auto`] at least [`MIN_CHANNELS`] channels in and out.
pub(crate) fn applies(g: &ConvGeometry, policy: WinogradPolicy) -> bool {
    applies_from(g, policy, MIN_CHANNELS)
}

/// The fewest channels (in and out) for which `Auto` picks Winograd (mostly F(4×4, 3×3)) over
/// im2col. At ResNet-18's 64 @ 32² layer on Zen 5's AVX-512 path it measured 1.18× (forward),
/// 1.33× (input gradient) and 1.63× (weight gradient) of im2col (docs/performance.md); on the
/// AVX2 path F(2×2, 3×3) alone had measured 1.29–1.49× on Zen 1.
const MIN_CHANNELS: usize = 64;

/// [`applies`] with `Auto`'s channel threshold given.
fn applies_from(g: &ConvGeometry, policy: WinogradPolicy, min_channels: usize) -> bool {
    let eligible = g.groups == 1 && g.kh == 3 && g.kw == 3 && g.stride == 1 && g.dilation == 1 && g.padding <= 2;
    match policy {
        WinogradPolicy::Off => false,
        WinogradPolicy::Always => eligible,
        WinogradPolicy::Auto => eligible && g.c_in >= min_channels && g.c_out >= min_channels,
    }
}

/// The output-tile side for `batch` outputs of `ho × wo` from a layer whose wider side has
/// `channels` channels: [`f4::M`] (F(4×4, 3×3)) where its GEMMs have at least `channels / 2`
/// columns (images × tiles) and it computes no more products than F(2×2, 3×3) over the padded
/// tiles; else 2. With fewer columns the 36 filter matrices, each packed once per GEMM, cost more
/// than the multiplications saved: ResNet-18's 512 @ 4² layer at batch 64 (64 columns) ran at
/// 0.45× F(2×2, 3×3), its 256 @ 8² layer (256 columns) at 1.6–1.8×. The environment variable
/// `QUARC_WINOGRAD_TILE=2` (read once; for A/B measurements) always picks 2.
fn tile_side(batch: usize, ho: usize, wo: usize, channels: usize) -> usize {
    static FORCED_F2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let forced = *FORCED_F2.get_or_init(|| std::env::var("QUARC_WINOGRAD_TILE").as_deref() == Ok("2"));
    let tiles = |m: usize| ho.div_ceil(m) * wo.div_ceil(m);
    let products = |m: usize| (m + 2) * (m + 2) * tiles(m);
    let columns = batch.saturating_mul(tiles(f4::M));
    if forced || products(2) < products(f4::M) || columns.saturating_mul(2) < channels {
        2
    } else {
        f4::M
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
    /// Output-tile side: 2 for F(2×2, 3×3), [`f4::M`] for F(4×4, 3×3).
    m: usize,
    tiles_y: usize,
    tiles_x: usize,
}

impl Plan {
    /// An F(2×2, 3×3) plan.
    #[cfg(test)]
    fn new(c_in: usize, c_out: usize, h: usize, w: usize, pad: usize) -> Self {
        Self::with_tile(c_in, c_out, h, w, pad, 2)
    }

    /// A plan with `m × m` output tiles (2 or [`f4::M`]).
    fn with_tile(c_in: usize, c_out: usize, h: usize, w: usize, pad: usize, m: usize) -> Self {
        let (ho, wo) = (h + 2 * pad - 2, w + 2 * pad - 2);
        Self {
            c_in,
            c_out,
            h,
            w,
            pad,
            ho,
            wo,
            m,
            tiles_y: ho.div_ceil(m),
            tiles_x: wo.div_ceil(m),
        }
    }

    /// Products per tile and channel pair: `(m + 2)²`.
    fn xis(&self) -> usize {
        (self.m + 2) * (self.m + 2)
    }

    fn tiles(&self) -> usize {
        self.tiles_y * self.tiles_x
    }

    /// Rows and columns of the zero-padded plane that covers every tile.
    fn padded(&self) -> (usize, usize) {
        (self.m * self.tiles_y + 2, self.m * self.tiles_x + 2)
    }

    /// Images per chunk: as many as fit [`CHUNK_BYTES`], rounded down to whole blocks of
    /// [`LANES`], and at least one block.
    fn images_per_chunk(&self) -> usize {
        let per_image = self.xis() * (self.c_in + self.c_out) * self.tiles() * 4;
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
    /// transformed tiles, the products and the staged output (in the weight gradient, the
    /// transformed gradient `dU`) are 8–38 MiB per layer, and fresh ones cost a zero fill and
    /// page faults on every call.
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

/// The transformed filter as the GEMMs' left operands `U[ξ]` (`c_out × c_in` of the plan).
#[derive(Clone, Copy)]
enum Filter<'a> {
    /// `U[ξ]` as computed, row-major.
    Direct(&'a [f32]),
    /// The F(2×2, 3×3) input gradient's `U'[ξ] = U[rotated(ξ)]ᵀ`, `U` being the forward
    /// transform of the layer's filter (`c_in × c_out` of the plan): the transform of the rotated,
    /// transposed filter, read in place.
    Rotated(&'a [f32]),
}

impl<'a> Filter<'a> {
    /// `U[ξ]` for plan `p`.
    fn at(self, p: &Plan, xi: usize) -> MatRef<'a> {
        let plane = p.c_out * p.c_in;
        match self {
            Self::Direct(u) => MatRef::row_major(&u[xi * plane..(xi + 1) * plane], p.c_out, p.c_in),
            Self::Rotated(u) => {
                let at = filter::rotated(xi) * plane;
                MatRef::row_major(&u[at..at + plane], p.c_in, p.c_out).t()
            }
        }
    }
}

/// Runs the plan over every image in `x` (`batch × c_in × h × w`), `u` being the transformed
/// filter; `out` is `batch × c_out × ho × wo`, written whole (it may arrive unwritten). With
/// `save`, each chunk's transformed input is pushed there instead of reused for the next.
fn run(
    p: &Plan,
    x: &[f32],
    u: Filter<'_>,
    out: &mut [MaybeUninit<f32>],
    epi: Option<&Epilogue<'_>>,
    q: Option<&Packing>,
    mut save: Option<&mut Vec<Vec<f32>>>,
) {
    let (img_in, ohw, tiles) = (p.c_in * p.h * p.w, p.ho * p.wo, p.tiles());
    let img_out = p.c_out * ohw;
    // Whole images on both sides, as many of each: every output value is visited below.
    assert!(
        img_in > 0 && x.len().is_multiple_of(img_in) && out.len() == x.len() / img_in * img_out,
        "winograd: {} inputs and {} outputs are not whole, matching images",
        x.len(),
        out.len()
    );
    let (nb, xis) = (p.images_per_chunk(), p.xis());
    let mut bufs = Buffers::take();
    let Buffers(v_reused, m, staged) = &mut bufs;
    let mut v_kept = Vec::new();
    for (xs, os) in x.chunks(nb * img_in).zip(out.chunks_mut(nb * img_out)) {
        let n = xs.len() / img_in;
        let st = Strides::new(n * tiles, p.c_out);
        // Every value the GEMMs read is written first: the reused buffer needs no zeroing.
        let v = if save.is_some() {
            v_kept = crate::zeroed::zeros(xis * p.c_in * st.row);
            &mut v_kept
        } else {
            &mut *v_reused
        };
        input_tiles(p, xs, q, st, v);
        m.resize(xis * st.m_plane, 0.0);
        staged.resize(p.c_out * n * ohw, 0.0);
        // One GEMM per ξ: M[ξ] (c_out × tiles, row stride `row`) = U[ξ] · V[ξ].
        m[..xis * st.m_plane]
            .par_chunks_mut(st.m_plane)
            .enumerate()
            .for_each(|(xi, mx)| {
                let a = u.at(p, xi);
                // V[ξ] is `c_in × tiles` with row stride xis·row.
                let vx = MatRef::strided(&v[xi * st.row..], p.c_in, st.tiles, xis * st.row, 1);
                matmul(mx, st.row, a, vx, false);
            });
        // Output transform by channel into `staged[o][b]`, then into the images.
        let m = &*m;
        staged[..p.c_out * n * ohw]
            .par_chunks_mut(n * ohw)
            .enumerate()
            .for_each(|(o, staged)| {
                with_output_grid(|grid| {
                    wide(OutputChannel {
                        p,
                        m,
                        st,
                        o,
                        n,
                        staged,
                        grid,
                    })
                })
            });
        let staged = &*staged;
        os.par_chunks_mut(img_out).enumerate().for_each(|(b, o)| {
            for (c, plane) in o.chunks_exact_mut(ohw).enumerate() {
                copy_into(plane, &staged[(c * n + b) * ohw..(c * n + b + 1) * ohw]);
            }
            // SAFETY: `o` is one whole image (`c_out` planes of `ohw`), each plane written above.
            #[allow(unsafe_code)]
            let o = unsafe { assume_written(o) };
            finish(epi, o, p.c_out, ohw);
        });
        if let Some(kept) = save.as_deref_mut() {
            kept.push(std::mem::take(&mut v_kept));
        }
    }
    bufs.put_back();
}

/// The input transform of one chunk `xs` into `v`, resized to `[c][ξ][tile]` rows of
/// `st.row` so that each channel is one task's contiguous block.
fn input_tiles(p: &Plan, xs: &[f32], q: Option<&Packing>, st: Strides, v: &mut Vec<f32>) {
    v.resize(p.xis() * p.c_in * st.row, 0.0);
    v.par_chunks_mut(p.xis() * st.row)
        .enumerate()
        .for_each(|(c, vc)| with_input_scratch(|s| wide(InputChannel { p, xs, c, vc, st, s, q })));
}

/// The output-tile side the forward and the weight gradient of `g` use.
fn forward_tile(g: &ConvGeometry) -> usize {
    tile_side(g.batch, g.h_out(), g.w_out(), g.c_in.max(g.c_out))
}

/// `conv(q(x), w)`, then `epi` per image, into a new vector (never zero-filled first), for a
/// geometry where [`applies`] holds; `q` is the input fake-quant, applied while the input is
/// interleaved for the tile transform. With `keep`, also the transformed input for
/// [`grad_weight`].
#[allow(unsafe_code)]
pub(crate) fn forward_fresh(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    epi: Option<&Epilogue<'_>>,
    q: Option<&Packing>,
    keep: bool,
) -> (Vec<f32>, Option<SavedTiles>) {
    let m = forward_tile(g);
    let mut chunks = keep.then(Vec::new);
    // SAFETY: `run` writes every output value: it asserts whole images on both sides, as many
    // of each, and writes each image's planes whole.
    let out = unsafe {
        written_by(g.batch * g.c_out * g.p_out(), |out| {
            forward_tiled(g, x, w, out, epi, q, m, chunks.as_mut())
        })
    };
    let saved = chunks.map(|chunks| SavedTiles {
        key: TilesKey::new(g, q.map(Packing::grid)),
        chunks,
    });
    (out, saved)
}

/// [`forward_fresh`] with `m × m` output tiles (2 or [`f4::M`]), each chunk's transformed input
/// pushed to `save` when given.
#[allow(clippy::too_many_arguments)]
fn forward_tiled(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    out: &mut [MaybeUninit<f32>],
    epi: Option<&Epilogue<'_>>,
    q: Option<&Packing>,
    m: usize,
    save: Option<&mut Vec<Vec<f32>>>,
) {
    let plan = Plan::with_tile(g.c_in, g.c_out, g.h, g.w, g.padding, m);
    let u = if m == f4::M {
        f4::transform_filter(w, g.c_out, g.c_in, false)
    } else {
        transform_filter(w, g.c_out, g.c_in)
    };
    run(&plan, x, Filter::Direct(&u), out, epi, q, save);
}

/// `dx = convᵀ(dy, w)` for a geometry where [`applies`] holds: a stride-1 3×3 convolution of
/// `dy` with padding `2 − p` and the rotated, transposed filter (for F(2×2, 3×3) the forward's
/// transform of `w`, read transposed at the rotated `ξ`; for F(4×4, 3×3) transformed from `w`
/// rotated).
pub(crate) fn grad_input(g: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [MaybeUninit<f32>]) {
    grad_input_tiled(g, dy, w, dx, tile_side(g.batch, g.h, g.w, g.c_in.max(g.c_out)));
}

/// [`grad_input`] into a new vector, never zero-filled first.
#[allow(unsafe_code)]
pub(crate) fn grad_input_fresh(g: &ConvGeometry, dy: &[f32], w: &[f32]) -> Vec<f32> {
    // SAFETY: as in `forward_fresh`: `run` writes every value of `dx`.
    unsafe { written_by(g.batch * g.c_in * g.p_in(), |dx| grad_input(g, dy, w, dx)) }
}

/// [`grad_input`] with `m × m` output tiles (2 or [`f4::M`]).
fn grad_input_tiled(g: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [MaybeUninit<f32>], m: usize) {
    let plan = Plan::with_tile(g.c_out, g.c_in, g.h_out(), g.w_out(), 2 - g.padding, m);
    // Gathering the filters in the rotated, transposed order strides through `w` (9 · c_in
    // values between lanes) and took 10–19 % of ResNet-18's 512 @ 4² input gradient; the
    // forward's transform reads `w` in order.
    if m == f4::M {
        let u = f4::transform_filter(w, g.c_out, g.c_in, true);
        run(&plan, dy, Filter::Direct(&u), dx, None, None, None);
    } else {
        let u = transform_filter(w, g.c_out, g.c_in);
        run(&plan, dy, Filter::Rotated(&u), dx, None, None, None);
    }
}

/// `dw = Σ_images ∂conv(q(x), w)/∂w · dy` for a geometry where [`applies`] holds: the input
/// tiles as in the forward, the output gradient's tiles lifted (`A ∂y Aᵀ`), one GEMM per `ξ`
/// accumulated chunk after chunk (a fixed order: the chunking depends on the shapes only), and
/// the filter transform's adjoint at the end. The input tiles come from `saved` when the
/// forward kept them for this geometry and fake-quant (the same values), else from `x`.
pub(crate) fn grad_weight(
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    q: Option<&Packing>,
    saved: Option<&SavedTiles>,
) {
    let m = forward_tile(g);
    let key = TilesKey::new(g, q.map(Packing::grid));
    let saved = saved.filter(|s| s.key == key).map(|s| &s.chunks[..]);
    if saved.is_some() {
        super::stash::count_reuse();
    }
    grad_weight_tiled(g, x, dy, dw, q, m, saved);
}

/// [`grad_weight`] with `m × m` output tiles (2 or [`f4::M`]), reading chunk `i`'s input tiles
/// from `saved[i]` when given.
fn grad_weight_tiled(
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    q: Option<&Packing>,
    m: usize,
    saved: Option<&[Vec<f32>]>,
) {
    let p = Plan::with_tile(g.c_in, g.c_out, g.h, g.w, g.padding, m);
    let (img_in, img_out, tiles) = (p.c_in * p.h * p.w, p.c_out * p.ho * p.wo, p.tiles());
    let (nb, xis) = (p.images_per_chunk(), p.xis());
    let plane = p.c_out * p.c_in;
    let mut bufs = Buffers::take();
    let Buffers(v, dm, du) = &mut bufs;
    // Not zeroed: the first chunk's GEMMs overwrite it (up to 37 MB at 512 × 512, filled on
    // every call when it was a fresh vector).
    du.resize(xis * plane, 0.0);
    if x.len() < img_in {
        du.fill(0.0); // no chunk, no GEMM: an empty batch's gradient is zero
    }
    for (i, (xs, dys)) in x.chunks(nb * img_in).zip(dy.chunks(nb * img_out)).enumerate() {
        let st = Strides::new(xs.len() / img_in * tiles, p.c_out);
        let v_len = xis * p.c_in * st.row;
        let v: &[f32] = match saved.and_then(|s| s.get(i)).filter(|v| v.len() == v_len) {
            Some(kept) => kept,
            None => {
                input_tiles(&p, xs, q, st, v);
                v
            }
        };
        dm.resize(xis * p.c_out * st.row, 0.0);
        dm.par_chunks_mut(xis * st.row).enumerate().for_each(|(o, dmo)| {
            with_input_scratch(|s| {
                wide(GradTiles {
                    p: &p,
                    dys,
                    o,
                    dmo,
                    st,
                    s,
                })
            })
        });
        // dU[ξ] (c_out × c_in) += dM[ξ] (c_out × tiles) · V[ξ]ᵀ (tiles × c_in).
        du.par_chunks_mut(plane).enumerate().for_each(|(xi, dux)| {
            let a = MatRef::strided(&dm[xi * st.row..], p.c_out, st.tiles, xis * st.row, 1);
            let b = MatRef::strided(&v[xi * st.row..], p.c_in, st.tiles, xis * st.row, 1).t();
            matmul(dux, p.c_in, a, b, i > 0);
        });
    }
    if m == f4::M {
        f4::untransform_filter(du, plane, dw);
    } else {
        untransform_filter(du, plane, dw);
    }
    bufs.put_back();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fresh::as_unwritten;

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

    /// A pseudo-random value in `[-scale, scale)` (a SplitMix64 hash of `i`).
    fn value(i: usize, scale: f32) -> f32 {
        let mut z = (i as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * scale
    }

    #[test]
    fn the_input_gradient_reads_the_transform_of_the_rotated_transposed_filter() {
        // `Filter::Rotated` over the forward's transform against the transform of rot180(w[o][i])
        // laid out at (i, o); 5 × 7 crosses blocks of sixteen filters. The taps are multiples of
        // 1/64 under 8, whose sums are exact in any order, so the two agree bit for bit (with
        // arbitrary taps the adds run in another order: within an ulp).
        let (c_out, c_in) = (5, 7);
        let w: Vec<f32> = (0..c_out * c_in * 9)
            .map(|i| ((i * 7919 % 1009) as f32 - 504.0) / 64.0)
            .collect();
        let mut wr = vec![0.0f32; w.len()];
        for o in 0..c_out {
            for i in 0..c_in {
                for k in 0..9 {
                    wr[(i * c_out + o) * 9 + k] = w[(o * c_in + i) * 9 + 8 - k];
                }
            }
        }
        let (u, ur) = (transform_filter(&w, c_out, c_in), transform_filter(&wr, c_in, c_out));
        // The input gradient's plan runs from `c_out` channels to `c_in`.
        let plan = Plan::new(c_out, c_in, 4, 4, 1);
        for xi in 0..16 {
            let a = Filter::Rotated(&u).at(&plan, xi);
            assert_eq!((a.rows(), a.cols()), (c_in, c_out));
            for r in 0..c_in {
                for c in 0..c_out {
                    let want = ur[xi * c_out * c_in + r * c_out + c];
                    assert_eq!(a.at(r, c).to_bits(), want.to_bits(), "ξ {xi}, ({r}, {c})");
                }
            }
        }
    }

    /// Max |got − want| over max |want| (at least 1e-3).
    fn rel_err(got: &[f32], want: &[f64]) -> f64 {
        let diff = got
            .iter()
            .zip(want)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        diff / want.iter().map(|v| v.abs()).fold(1e-3, f64::max)
    }

    /// The f64 direct sums `(y, dx, dw)` of a padding-1 3×3 convolution and its gradients.
    fn direct(g: &ConvGeometry, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (c_in, c_out, h, wd) = (g.c_in, g.c_out, g.h, g.w);
        let (mut y, mut dx) = (
            vec![0.0f64; g.batch * c_out * h * wd],
            vec![0.0f64; g.batch * c_in * h * wd],
        );
        let mut dw = vec![0.0f64; w.len()];
        for b in 0..g.batch {
            for o in 0..c_out {
                for i in 0..c_in {
                    for k in 0..9 {
                        let wk = w[(o * c_in + i) * 9 + k] as f64;
                        for oy in 0..h {
                            let iy = (oy + k / 3).wrapping_sub(1);
                            for ox in 0..wd {
                                let ix = (ox + k % 3).wrapping_sub(1);
                                if iy < h && ix < wd {
                                    let (xi, yo) = (
                                        ((b * c_in + i) * h + iy) * wd + ix,
                                        ((b * c_out + o) * h + oy) * wd + ox,
                                    );
                                    y[yo] += wk * x[xi] as f64;
                                    dx[xi] += wk * dy[yo] as f64;
                                    dw[(o * c_in + i) * 9 + k] += x[xi] as f64 * dy[yo] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        (y, dx, dw)
    }

    #[test]
    fn both_tile_sizes_match_the_f64_direct_sum_on_wide_layers() {
        // ResNet-18's 256 @ 8² and 512 @ 4² shapes at batch 2 (F(4×4, 3×3) is forced here;
        // `tile_side` picks it for these layers from batch 32 and 256).
        for (c, hw) in [(256usize, 8usize), (512, 4)] {
            let g = ConvGeometry {
                batch: 2,
                h: hw,
                w: hw,
                ..geometry(c, 3, 1, 1)
            };
            let x: Vec<f32> = (0..2 * c * hw * hw).map(|i| value(i, 1.0)).collect();
            let w: Vec<f32> = (0..c * c * 9).map(|i| value(i + 17, 0.05)).collect();
            let dy: Vec<f32> = (0..2 * c * hw * hw).map(|i| value(i + 5, 1.0)).collect();
            let (y64, dx64, dw64) = direct(&g, &x, &w, &dy);
            for (m, bound) in [(f4::M, 3e-5), (2, 1e-5)] {
                let (mut y, mut dx) = (vec![f32::NAN; y64.len()], vec![f32::NAN; dx64.len()]);
                let mut dw = vec![f32::NAN; dw64.len()];
                // SAFETY (both): the passes store only computed values.
                #[allow(unsafe_code)]
                let (yv, dxv) = unsafe { (as_unwritten(&mut y), as_unwritten(&mut dx)) };
                forward_tiled(&g, &x, &w, yv, None, None, m, None);
                grad_input_tiled(&g, &dy, &w, dxv, m);
                grad_weight_tiled(&g, &x, &dy, &mut dw, None, m, None);
                let (ey, edx, edw) = (rel_err(&y, &y64), rel_err(&dx, &dx64), rel_err(&dw, &dw64));
                println!("{c} @ {hw}², m {m}: y {ey:.2e}, dx {edx:.2e}, dw {edw:.2e}");
                assert!(
                    ey < bound && edx < bound && edw < bound,
                    "{c} @ {hw}², m {m}: y {ey:e}, dx {edx:e}, dw {edw:e}"
                );
                assert!(
                    ey > 0.0 && edx > 0.0 && edw > 0.0,
                    "the comparison must see some f32 rounding"
                );
            }
        }
    }

    #[test]
    fn the_weight_gradient_reads_kept_tiles_only_for_their_key() {
        let g = geometry(8, 3, 1, 1);
        let x: Vec<f32> = (0..2 * 8 * 64).map(|i| value(i, 1.0)).collect();
        let w: Vec<f32> = (0..8 * 8 * 9).map(|i| value(i + 3, 0.3)).collect();
        let dy: Vec<f32> = (0..2 * 8 * 64).map(|i| value(i + 9, 1.0)).collect();
        let dw_with = |q: Option<&Packing>, saved: Option<&SavedTiles>| {
            let mut dw = vec![f32::NAN; w.len()];
            grad_weight(&g, &x, &dy, &mut dw, q, saved);
            dw.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        let (y, saved) = forward_fresh(&g, &x, &w, None, None, true);
        let mut saved = saved.expect("kept");
        assert_eq!(y, forward_fresh(&g, &x, &w, None, None, false).0);
        assert_eq!(dw_with(None, Some(&saved)), dw_with(None, None));
        // tiles zeroed behind its back: the gradient is zero, so it read them
        saved.chunks.iter_mut().for_each(|c| c.fill(0.0));
        assert!(dw_with(None, Some(&saved)).iter().all(|&b| b == 0));
        // an input fake-quant the forward did not apply: the tiles are computed again
        let q = Packing::new(crate::conv::input_quant::Grid {
            step: 0.5,
            qn: -2.0,
            qp: 1.0,
        });
        assert_eq!(dw_with(Some(&q), Some(&saved)), dw_with(Some(&q), None));
    }

    #[test]
    fn the_tile_side_follows_the_columns_and_the_products() {
        assert_eq!(tile_side(64, 16, 16, 128), f4::M);
        assert_eq!(tile_side(64, 8, 8, 256), f4::M); // 256 columns
        assert_eq!(tile_side(63, 8, 8, 512), 2); // 252 columns < 256
        assert_eq!(tile_side(64, 8, 8, 512), f4::M);
        assert_eq!(tile_side(64, 4, 4, 512), 2); // 64 columns
        assert_eq!(tile_side(1024, 2, 2, 64), 2); // 16 products against 36
        assert_eq!(tile_side(1024, 3, 3, 64), f4::M); // 64 products against 36
        assert_eq!(tile_side(usize::MAX, 4, 4, 64), f4::M);
    }

    #[test]
    fn the_policy_picks_the_measured_shapes() {
        let (auto, always, off) = (WinogradPolicy::Auto, WinogradPolicy::Always, WinogradPolicy::Off);
        assert!(applies(&geometry(256, 3, 1, 1), auto));
        assert!(applies(&geometry(128, 3, 1, 1), auto));
        assert!(applies(&geometry(64, 3, 1, 1), auto));
        assert!(!applies(&geometry(63, 3, 1, 1), auto));
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
