//! Depthwise convolution on small planes, [`LANES`] channels at a time.
//!
//! An 8² plane is only 64 outputs: the plane-by-plane passes then spend most of their time on
//! per-plane work (copies, loop set-up) rather than on the taps. Here each block of [`LANES`]
//! channels of an image is interleaved (16 × 16 register transposes, `crate::transpose`) into a
//! zero-padded `hp × wp × LANES` buffer, and every output position is one vector per tap:
//! `y[pos] = Σ_tap w[tap] ⊙ x[pos·s + offset(tap)]`, the lanes being the block's channels. Used
//! on CPUs with AVX-512F or AVX2 (16 × 16 transposes as four 8 × 8 ones there) when the channel
//! count is a multiple of 16 (every MobileNetV2 layer); with scalar transposes it was slower
//! than the plane-by-plane passes.
//!
//! - forward: the tap sum per position (first tap a product, then additions in tap order, the
//!   same arithmetic as the plane-by-plane forward), de-interleaved into the output planes;
//! - input gradient: at stride 1 the same tap sum over the output gradient with the taps flipped
//!   (`Gather`; the same sums as the plane-by-plane gather); otherwise each output-gradient vector
//!   scattered along the taps, tap by tap, into a zeroed padded buffer whose interior is
//!   de-interleaved;
//! - weight gradient: per image, f32 lane sums per tap over the positions, then added in f64 over
//!   the batch in order.
//!
//! 3 × 3 kernels at stride 1 (and the stride-1 gather) go through the taps row by row
//! ([`Rows3`]): four neighbouring outputs of a row (two for the gather on AVX2) load each kernel
//! row's six input vectors once for its three taps (4.5 loads per output instead of 9), and the
//! weight gradient keeps its nine tap sums in registers the same way. Every sum keeps its order,
//! so the bits do not change. The scratch buffers start on a cache line and are zeroed once per
//! worker, not per image.

use rayon::prelude::*;

use super::super::epilogue::{Epilogue, finish};
use super::super::geometry::ConvGeometry;
use crate::aligned::Lines;
use crate::lanes::load_n;
use crate::transpose::{self, LANES, deinterleave16, interleave16};
use crate::wide::{Kernel, wide};

/// Planes at most this large (input or output, in values) take the blocked passes. The
/// plane-by-plane passes win on larger planes, whose runs are long enough (measured on the
/// harness's 8² and 32² MobileNetV2 layers).
const MAX_PLANE: usize = 100;

/// Whether the blocked passes suit `g` (a small-plane depthwise convolution).
pub(super) fn suits(g: &ConvGeometry) -> bool {
    transpose::fast() && g.c_in.is_multiple_of(LANES) && g.p_in() <= MAX_PLANE && g.p_out() <= MAX_PLANE
}

/// What every block of one call shares.
struct Layout<'a> {
    g: &'a ConvGeometry,
    /// Padded width.
    wp: usize,
    /// Entries of the padded buffer (`hp · wp · LANES`).
    len: usize,
    /// Per tap, the offset (in positions) of its input from the position of output `(0, 0)`.
    offsets: Vec<usize>,
    /// Per output position, the padded position of its first tap.
    bases: Vec<usize>,
    kk: usize,
    /// The forward's taps row by row, for 3 × 3 kernels at stride 1 and dilation 1.
    rows3: Option<Rows3>,
    /// The input gradient as a gather (stride 1, padding ≤ the kernel's reach): see [`Gather`].
    gather: Option<Gather>,
}

/// A 3 × 3, stride-1, dilation-1 tap sum as three kernel rows: tap `(ky, kx)` reads position
/// `base + rows[ky] + kx` (or `+ 2 − kx` when the taps are flipped), so [`BLOCK`] neighbouring
/// outputs of a row share each kernel row's `BLOCK + 2` input vectors.
#[derive(Clone, Copy)]
struct Rows3 {
    rows: [usize; 3],
    /// Outputs per row.
    width: usize,
    flipped: bool,
}

/// Outputs of a row summed together by [`tap_rows3`].
const BLOCK: usize = 4;

/// The stride-1 input gradient as a forward pass over the output gradient: `dy` sits in a
/// zero-bordered buffer (`rows × width` positions, `dy` at `(top, left)`), and input position
/// `(iy, ix)` sums `w[tap] ⊙ dy_buffer[(iy, ix) + offset(tap)]` with the taps flipped, in tap order.
struct Gather {
    width: usize,
    len: usize,
    top: usize,
    left: usize,
    offsets: Vec<usize>,
    bases: Vec<usize>,
    rows3: Option<Rows3>,
}

impl Gather {
    fn of(g: &ConvGeometry) -> Option<Self> {
        let (reach_y, reach_x) = ((g.kh - 1) * g.dilation, (g.kw - 1) * g.dilation);
        if g.stride != 1 || g.padding > reach_y || g.padding > reach_x {
            return None;
        }
        let width = g.w + reach_x;
        let offsets = (0..g.kh)
            .flat_map(|ky| (0..g.kw).map(move |kx| (reach_y - ky * g.dilation) * width + reach_x - kx * g.dilation))
            .collect();
        let bases = (0..g.h)
            .flat_map(|iy| (0..g.w).map(move |ix| iy * width + ix))
            .collect();
        let rows3 = is_3x3_unit(g).then_some(Rows3 {
            rows: [2 * width, width, 0],
            width: g.w,
            flipped: true,
        });
        Some(Self {
            width,
            len: (g.h + reach_y) * width * LANES,
            top: reach_y - g.padding,
            left: reach_x - g.padding,
            offsets,
            bases,
            rows3,
        })
    }

    /// Copies the interleaved `h_out × w_out` output gradient `grid` into the buffer's interior.
    #[inline(always)]
    fn place(&self, g: &ConvGeometry, grid: &[f32], dst: &mut [f32]) {
        let row = g.w_out() * LANES;
        for (oy, src) in grid.chunks_exact(row).enumerate() {
            let start = ((oy + self.top) * self.width + self.left) * LANES;
            dst[start..start + row].copy_from_slice(src);
        }
    }
}

impl<'a> Layout<'a> {
    fn of(g: &'a ConvGeometry) -> Self {
        let (hp, wp) = (g.h + 2 * g.padding, g.w + 2 * g.padding);
        let offsets = (0..g.kh)
            .flat_map(|ky| (0..g.kw).map(move |kx| ky * g.dilation * wp + kx * g.dilation))
            .collect();
        let bases = (0..g.h_out())
            .flat_map(|oy| (0..g.w_out()).map(move |ox| oy * g.stride * wp + ox * g.stride))
            .collect();
        let rows3 = (is_3x3_unit(g) && g.stride == 1).then_some(Rows3 {
            rows: [0, wp, 2 * wp],
            width: g.w_out(),
            flipped: false,
        });
        Self {
            g,
            wp,
            len: hp * wp * LANES,
            offsets,
            bases,
            kk: g.kh * g.kw,
            rows3,
            gather: Gather::of(g),
        }
    }

    /// Every block's weights, block by block and tap-major within a block:
    /// `out[block · kk + tap][lane] = w[block · 16 + lane][tap]`.
    fn weights(&self, w: &[f32]) -> Vec<[f32; LANES]> {
        let mut out = vec![[0.0; LANES]; blocks(self.g) * self.kk];
        // channel c = block · 16 + lane holds w[c · kk..(c + 1) · kk]
        for (c, channel) in w.chunks_exact(self.kk).enumerate() {
            let taps = &mut out[c / LANES * self.kk..(c / LANES + 1) * self.kk];
            for (tap, v) in taps.iter_mut().zip(channel) {
                tap[c % LANES] = *v;
            }
        }
        out
    }

    /// Block `b`'s weights out of [`Layout::weights`].
    fn block<'w>(&self, weights: &'w [[f32; LANES]], b: usize) -> &'w [[f32; LANES]] {
        &weights[b * self.kk..(b + 1) * self.kk]
    }

    /// Interleaves planes `c0..c0 + 16` of `image` (`c_in` planes of `h × w`) into the interior
    /// of the padded buffer `dst` through `inter`; the padding must already be zero.
    #[inline(always)]
    fn pad_in(&self, image: &[f32], c0: usize, inter: &mut [f32], dst: &mut [f32]) {
        let (g, row) = (self.g, self.g.w * LANES);
        interleave16(&image[c0 * g.p_in()..], g.p_in(), g.p_in(), inter);
        for (iy, src) in inter.chunks_exact(row).enumerate() {
            let start = ((iy + g.padding) * self.wp + g.padding) * LANES;
            dst[start..start + row].copy_from_slice(src);
        }
    }

    /// The interior of the padded buffer `src` back into planes `c0..c0 + 16` of `image`.
    #[inline(always)]
    fn unpad_out(&self, src: &[f32], c0: usize, inter: &mut [f32], image: &mut [f32]) {
        let (g, row) = (self.g, self.g.w * LANES);
        for (iy, dst) in inter.chunks_exact_mut(row).enumerate() {
            let start = ((iy + g.padding) * self.wp + g.padding) * LANES;
            dst.copy_from_slice(&src[start..start + row]);
        }
        deinterleave16(inter, g.p_in(), g.p_in(), &mut image[c0 * g.p_in()..]);
    }
}

/// Whether `g` has a 3 × 3 kernel at dilation 1.
fn is_3x3_unit(g: &ConvGeometry) -> bool {
    g.kh == 3 && g.kw == 3 && g.dilation == 1
}

/// Planes `c0..c0 + 16` (of `p` values each) of `image` into `dst` (`p × LANES`).
#[inline(always)]
fn interleave(image: &[f32], p: usize, c0: usize, dst: &mut [f32]) {
    interleave16(&image[c0 * p..], p, p, dst);
}

/// The inverse of [`interleave`].
#[inline(always)]
fn deinterleave(src: &[f32], p: usize, c0: usize, image: &mut [f32]) {
    deinterleave16(src, p, p, &mut image[c0 * p..]);
}

/// A vector of [`LANES`] values at `at` in an interleaved buffer.
#[inline(always)]
fn lanes(buf: &[f32], at: usize) -> &[f32] {
    &buf[at * LANES..at * LANES + LANES]
}

/// Forward: `grid[pos] = Σ_t weights[t] ⊙ padded[bases[pos] + offsets[t]]`, the sum in
/// registers, the first tap a product. (Slices as arguments: the compiler may then assume they
/// do not overlap, which it cannot for the scratch vectors themselves.) 3 × 3 kernels keep their
/// nine weight vectors in registers.
#[inline(always)]
fn tap_sums(
    weights: &[[f32; LANES]],
    offsets: &[usize],
    bases: &[usize],
    rows3: Option<Rows3>,
    padded: &[f32],
    grid: &mut [f32],
) {
    if let (Ok(w), Ok(o)) = (
        <&[[f32; LANES]; 9]>::try_from(weights),
        <&[usize; 9]>::try_from(offsets),
    ) {
        // on AVX2 (sixteen 8-lane registers) the flipped gather measured faster with blocks of two
        // outputs (single thread, 5 rounds: 1.20×), the forward with four (blocks of two: 0.92×)
        let avx512 = crate::wide::isa() == crate::wide::Isa::Avx512;
        return match rows3 {
            Some(r) if r.flipped && avx512 => tap_rows3::<true, BLOCK, { BLOCK + 2 }>(w, o, r, bases, padded, grid),
            Some(r) if r.flipped => tap_rows3::<true, 2, 4>(w, o, r, bases, padded, grid),
            Some(r) => tap_rows3::<false, BLOCK, { BLOCK + 2 }>(w, o, r, bases, padded, grid),
            None => tap_sums_fixed(w, o, bases, padded, grid),
        };
    }
    let (Some((w0, wrest)), Some((o0, orest))) = (weights.split_first(), offsets.split_first()) else {
        return;
    };
    for (out, &base) in grid.chunks_exact_mut(LANES).zip(bases) {
        let mut acc = [0.0f32; LANES];
        let x = lanes(padded, base + o0);
        for l in 0..LANES {
            acc[l] = w0[l] * x[l];
        }
        for (wt, &off) in wrest.iter().zip(orest) {
            let x = lanes(padded, base + off);
            for l in 0..LANES {
                acc[l] += wt[l] * x[l];
            }
        }
        out.copy_from_slice(&acc);
    }
}

/// [`tap_sums`] for a fixed number of taps (the same arithmetic, in the same order).
#[inline(always)]
fn tap_sums_fixed<const K: usize>(
    weights: &[[f32; LANES]; K],
    offsets: &[usize; K],
    bases: &[usize],
    padded: &[f32],
    grid: &mut [f32],
) {
    let (w, o) = (*weights, *offsets);
    for (out, &base) in grid.chunks_exact_mut(LANES).zip(bases) {
        let mut acc = [0.0f32; LANES];
        let x = lanes(padded, base + o[0]);
        for l in 0..LANES {
            acc[l] = w[0][l] * x[l];
        }
        for t in 1..K {
            let x = lanes(padded, base + o[t]);
            for l in 0..LANES {
                acc[l] += w[t][l] * x[l];
            }
        }
        out.copy_from_slice(&acc);
    }
}

/// [`tap_sums_fixed`] for 3 × 3 taps as three kernel rows ([`Rows3`]): `B` outputs of a row at a
/// time ([`BLOCK`], or two), each kernel row's `V = B + 2` input vectors loaded once for its three
/// taps. Every output still sums its taps in tap order, the first a product: the same bits. The
/// outputs past a row's last whole block take [`tap_sums_fixed`].
#[inline(always)]
fn tap_rows3<const FLIPPED: bool, const B: usize, const V: usize>(
    w: &[[f32; LANES]; 9],
    offsets: &[usize; 9],
    r: Rows3,
    bases: &[usize],
    padded: &[f32],
    grid: &mut [f32],
) {
    debug_assert_eq!(V, B + 2);
    let w = *w;
    let whole = r.width / B * B;
    for (row_out, row_bases) in grid.chunks_exact_mut(r.width * LANES).zip(bases.chunks_exact(r.width)) {
        for (out, &base) in row_out.chunks_exact_mut(B * LANES).zip(row_bases.iter().step_by(B)) {
            let mut acc = [[0.0f32; LANES]; B];
            for ky in 0..3 {
                let start = (base + r.rows[ky]) * LANES;
                let v: [[f32; LANES]; V] = load_n(&padded[start..]);
                for kx in 0..3 {
                    let (wt, c) = (w[ky * 3 + kx], if FLIPPED { 2 - kx } else { kx });
                    for j in 0..B {
                        for l in 0..LANES {
                            let term = wt[l] * v[c + j][l];
                            acc[j][l] = if ky == 0 && kx == 0 { term } else { acc[j][l] + term };
                        }
                    }
                }
            }
            for (o, a) in out.chunks_exact_mut(LANES).zip(&acc) {
                o.copy_from_slice(a);
            }
        }
        tap_sums_fixed(&w, offsets, &row_bases[whole..], padded, &mut row_out[whole * LANES..]);
    }
}

/// Input gradient: `padded[bases[pos] + offsets[t]] += weights[t] ⊙ grid[pos]`, tap by tap (within a
/// tap every position writes its own entry, so no addition waits on the one before).
#[inline(always)]
fn scatter_taps(weights: &[[f32; LANES]], offsets: &[usize], bases: &[usize], grid: &[f32], padded: &mut [f32]) {
    for (wt, &off) in weights.iter().zip(offsets) {
        for (dy, &base) in grid.chunks_exact(LANES).zip(bases) {
            let at = (base + off) * LANES;
            let dst = &mut padded[at..at + LANES];
            for l in 0..LANES {
                dst[l] += wt[l] * dy[l];
            }
        }
    }
}

/// Weight gradient of one image: `out[t] = Σ_pos grid[pos] ⊙ padded[bases[pos] + offsets[t]]`,
/// each tap's sum in registers.
#[inline(always)]
fn weight_lanes(
    offsets: &[usize],
    bases: &[usize],
    rows3: Option<Rows3>,
    padded: &[f32],
    grid: &[f32],
    out: &mut [[f32; LANES]],
) {
    if let (Some(r), Ok(out)) = (rows3, <&mut [[f32; LANES]; 9]>::try_from(&mut *out)) {
        return weight_rows3(r, bases, padded, grid, out);
    }
    for (sum, &off) in out.iter_mut().zip(offsets) {
        let mut acc = [0.0f32; LANES];
        for (dy, &base) in grid.chunks_exact(LANES).zip(bases) {
            let x = lanes(padded, base + off);
            for l in 0..LANES {
                acc[l] += dy[l] * x[l];
            }
        }
        *sum = acc;
    }
}

/// [`weight_lanes`] for 3 × 3 taps as three kernel rows ([`Rows3`], not flipped): the nine tap
/// sums stay in registers while [`BLOCK`] outputs of a row load their gradient vectors once and
/// each kernel row's `BLOCK + 2` input vectors once. Every tap still sums the positions in order:
/// the same bits.
#[inline(always)]
fn weight_rows3(r: Rows3, bases: &[usize], padded: &[f32], grid: &[f32], out: &mut [[f32; LANES]; 9]) {
    let mut acc = [[0.0f32; LANES]; 9];
    for (row_dy, row_bases) in grid.chunks_exact(r.width * LANES).zip(bases.chunks_exact(r.width)) {
        let blocks = row_dy.chunks_exact(BLOCK * LANES);
        let rest = blocks.remainder();
        for (dy, &base) in blocks.zip(row_bases.iter().step_by(BLOCK)) {
            let dy: [[f32; LANES]; BLOCK] = load_n(dy);
            for ky in 0..3 {
                let start = (base + r.rows[ky]) * LANES;
                let v: [[f32; LANES]; BLOCK + 2] = load_n(&padded[start..]);
                for j in 0..BLOCK {
                    for kx in 0..3 {
                        for l in 0..LANES {
                            acc[ky * 3 + kx][l] += dy[j][l] * v[j + kx][l];
                        }
                    }
                }
            }
        }
        let tail = &row_bases[r.width / BLOCK * BLOCK..];
        for (dy, &base) in rest.chunks_exact(LANES).zip(tail) {
            for (t, sum) in acc.iter_mut().enumerate() {
                let x = lanes(padded, base + r.rows[t / 3] + t % 3);
                for l in 0..LANES {
                    sum[l] += dy[l] * x[l];
                }
            }
        }
    }
    *out = acc;
}

/// One worker's buffers.
#[derive(Default)]
struct Scratch {
    /// Whether the buffers are sized and zeroed (once per worker and call: the passes overwrite
    /// the same interior entries for every block, so the borders stay zero).
    ready: bool,
    inter: Lines,
    padded: Lines,
    grid: Lines,
    lanes: Vec<[f32; LANES]>,
    sums: Vec<[f64; LANES]>,
}

impl Scratch {
    /// Sizes the interleaved plane (`p_in` positions), zeroes the padded buffer (`len` long) and
    /// the grid (`p` positions), the first time it is called.
    fn zero(&mut self, p_in: usize, len: usize, p: usize) {
        if std::mem::replace(&mut self.ready, true) {
            return;
        }
        self.inter = Lines::zeroed(p_in * LANES);
        self.padded = Lines::zeroed(len);
        self.grid = Lines::zeroed(p * LANES);
    }
}

/// The number of channel blocks.
fn blocks(g: &ConvGeometry) -> usize {
    g.c_in.div_ceil(LANES)
}

/// `out[b, c] = x[b, c] ⋆ w[c]`, then `epi` per image.
pub(super) fn forward(g: &ConvGeometry, x: &[f32], w: &[f32], out: &mut [f32], epi: Option<&Epilogue<'_>>) {
    let lay = Layout::of(g);
    let weights = lay.weights(w);
    out.par_chunks_mut(g.c_in * g.p_out())
        .zip(x.par_chunks(g.c_in * g.p_in()))
        .for_each_init(Scratch::default, |s, (out, img)| {
            let (lay, w) = (&lay, &weights[..]);
            wide(ForwardImage { lay, w, img, out, s });
            finish(epi, out, g.c_in, g.p_out());
        });
}

struct ForwardImage<'a> {
    lay: &'a Layout<'a>,
    /// [`Layout::weights`].
    w: &'a [[f32; LANES]],
    img: &'a [f32],
    out: &'a mut [f32],
    s: &'a mut Scratch,
}

impl Kernel for ForwardImage<'_> {
    type Out = ();

    #[inline(always)]
    fn run(self) {
        let (lay, s) = (self.lay, self.s);
        s.zero(lay.g.p_in(), lay.len, lay.g.p_out());
        for b in 0..blocks(lay.g) {
            let c0 = b * LANES;
            lay.pad_in(self.img, c0, &mut s.inter, &mut s.padded);
            let w = lay.block(self.w, b);
            tap_sums(w, &lay.offsets, &lay.bases, lay.rows3, &s.padded, &mut s.grid);
            deinterleave(&s.grid, lay.g.p_out(), c0, self.out);
        }
    }
}

/// `dx[b, c] = dy[b, c] ⋆ᵀ w[c]`.
pub(super) fn grad_input(g: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let lay = Layout::of(g);
    let weights = lay.weights(w);
    dx.par_chunks_mut(g.c_in * g.p_in())
        .zip(dy.par_chunks(g.c_in * g.p_out()))
        .for_each_init(Scratch::default, |s, (dx, dy)| {
            let (lay, w) = (&lay, &weights[..]);
            wide(GradInputImage { lay, w, dy, dx, s });
        });
}

struct GradInputImage<'a> {
    lay: &'a Layout<'a>,
    /// [`Layout::weights`].
    w: &'a [[f32; LANES]],
    dy: &'a [f32],
    dx: &'a mut [f32],
    s: &'a mut Scratch,
}

impl Kernel for GradInputImage<'_> {
    type Out = ();

    #[inline(always)]
    fn run(self) {
        let (lay, s) = (self.lay, self.s);
        if let Some(gather) = &lay.gather {
            return gather_image(lay, gather, self.w, self.dy, self.dx, s);
        }
        s.zero(lay.g.p_in(), lay.len, lay.g.p_out());
        for b in 0..blocks(lay.g) {
            let c0 = b * LANES;
            interleave(self.dy, lay.g.p_out(), c0, &mut s.grid);
            s.padded.fill(0.0);
            scatter_taps(lay.block(self.w, b), &lay.offsets, &lay.bases, &s.grid, &mut s.padded);
            lay.unpad_out(&s.padded, c0, &mut s.inter, self.dx);
        }
    }
}

/// The input gradient of one image by [`Gather`].
#[inline(always)]
fn gather_image(lay: &Layout<'_>, gather: &Gather, w: &[[f32; LANES]], dy: &[f32], dx: &mut [f32], s: &mut Scratch) {
    let g = lay.g;
    // the buffer's border stays zero: every block overwrites the same interior
    s.zero(g.p_in(), gather.len, g.p_out());
    for b in 0..blocks(g) {
        let c0 = b * LANES;
        interleave(dy, g.p_out(), c0, &mut s.grid);
        gather.place(g, &s.grid, &mut s.padded);
        tap_sums(
            lay.block(w, b),
            &gather.offsets,
            &gather.bases,
            gather.rows3,
            &s.padded,
            &mut s.inter,
        );
        deinterleave(&s.inter, g.p_in(), c0, dx);
    }
}

/// `dw[c] = Σ_b dy[b, c] ⋆ x[b, c]`, one channel block per task.
pub(super) fn grad_weight(g: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let lay = Layout::of(g);
    dw.par_chunks_mut(LANES * lay.kk)
        .enumerate()
        .for_each_init(Scratch::default, |s, (b, dw)| {
            let lay = &lay;
            wide(GradWeightBlock { lay, x, dy, b, dw, s });
        });
}

struct GradWeightBlock<'a> {
    lay: &'a Layout<'a>,
    x: &'a [f32],
    dy: &'a [f32],
    b: usize,
    dw: &'a mut [f32],
    s: &'a mut Scratch,
}

impl Kernel for GradWeightBlock<'_> {
    type Out = ();

    #[inline(always)]
    fn run(self) {
        let (lay, s, g) = (self.lay, self.s, self.lay.g);
        let c0 = self.b * LANES;
        s.zero(g.p_in(), lay.len, g.p_out());
        s.sums.clear();
        s.sums.resize(lay.kk, [0.0; LANES]);
        for image in 0..g.batch {
            lay.pad_in(&self.x[image * g.c_in * g.p_in()..], c0, &mut s.inter, &mut s.padded);
            interleave(&self.dy[image * g.c_in * g.p_out()..], g.p_out(), c0, &mut s.grid);
            s.lanes.clear();
            s.lanes.resize(lay.kk, [0.0; LANES]);
            weight_lanes(&lay.offsets, &lay.bases, lay.rows3, &s.padded, &s.grid, &mut s.lanes);
            for (sum, part) in s.sums.iter_mut().zip(&s.lanes) {
                for l in 0..LANES {
                    sum[l] += part[l] as f64;
                }
            }
        }
        for (lane, dw) in self.dw.chunks_exact_mut(lay.kk).enumerate() {
            for (t, d) in dw.iter_mut().enumerate() {
                *d = s.sums[t][lane] as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{forward_planes, grad_input_planes, grad_weight_planes, test_values as values};
    use super::*;

    /// The blocked passes agree with the plane-by-plane ones: the forward and the stride-1 input
    /// gradient bit for bit (the same sums in the same order), the rest to rounding.
    #[test]
    fn blocked_passes_agree_with_the_plane_passes() {
        if !transpose::fast() {
            return; // the blocked passes need the register transposes (AVX-512F or AVX2)
        }
        for (h, w, k, stride, padding, dilation) in [
            (8, 8, 3, 1, 1, 1),
            (8, 7, 3, 2, 1, 1),
            (6, 6, 5, 1, 2, 1),
            (7, 9, 3, 1, 2, 2),
            (4, 4, 3, 1, 0, 1),
            (6, 10, 3, 1, 1, 1),
            (9, 5, 3, 1, 0, 1),
            (5, 6, 3, 1, 2, 1),
        ] {
            let g = ConvGeometry {
                batch: 3,
                c_in: 32,
                h,
                w,
                c_out: 32,
                kh: k,
                kw: k,
                stride,
                padding,
                dilation,
                groups: 32,
            };
            assert!(suits(&g));
            let case = format!("{h}×{w} k{k} s{stride} p{padding} d{dilation}");
            let (x, wt) = (values(3 * 32 * g.p_in(), 1), values(32 * k * k, 2));
            let dy = values(3 * 32 * g.p_out(), 3);
            let (mut a, mut b) = (vec![f32::NAN; dy.len()], vec![f32::NAN; dy.len()]);
            forward(&g, &x, &wt, &mut a, None);
            forward_planes(&g, &x, &wt, &mut b, None);
            assert_eq!(a, b, "forward {case}");
            let (mut a, mut b) = (vec![f32::NAN; x.len()], vec![f32::NAN; x.len()]);
            grad_input(&g, &dy, &wt, &mut a);
            grad_input_planes(&g, &dy, &wt, &mut b);
            if stride == 1 && padding <= (k - 1) * dilation {
                assert_eq!(a, b, "input gradient {case}");
            }
            close(&a, &b, &format!("input gradient {case}"));
            let (mut a, mut b) = (vec![f32::NAN; wt.len()], vec![f32::NAN; wt.len()]);
            grad_weight(&g, &x, &dy, &mut a);
            grad_weight_planes(&g, &x, &dy, &mut b);
            close(&a, &b, &format!("weight gradient {case}"));
        }
    }

    /// The row-blocked weight gradient sums every tap's positions in the same order as the
    /// per-tap loop: the same bits, on rows with and without a partial block.
    #[test]
    fn weight_rows_agree_bit_for_bit_with_the_tap_loop() {
        for (h, w) in [(8, 8), (6, 10), (9, 5)] {
            let g = ConvGeometry {
                batch: 1,
                c_in: 16,
                h,
                w,
                c_out: 16,
                kh: 3,
                kw: 3,
                stride: 1,
                padding: 1,
                dilation: 1,
                groups: 16,
            };
            let lay = Layout::of(&g);
            let rows3 = lay.rows3.expect("3 × 3 at stride 1 takes the rows");
            let padded = values(lay.len, 5);
            let grid = values(g.p_out() * LANES, 6);
            let (mut a, mut b) = (vec![[0.0f32; LANES]; 9], vec![[f32::NAN; LANES]; 9]);
            weight_lanes(&lay.offsets, &lay.bases, None, &padded, &grid, &mut a);
            weight_lanes(&lay.offsets, &lay.bases, Some(rows3), &padded, &grid, &mut b);
            assert_eq!(a, b, "{h}×{w}");
        }
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{what} at {i}: {x} vs {y}");
        }
    }
}
