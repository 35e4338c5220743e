//! Dense (`groups = 1`) convolution: im2col + GEMM, rayon over chunks of images.
//!
//! Layers with few output pixels per image fold several images into one GEMM (wider `N`);
//! pointwise (1×1, stride 1, unpadded) convs use the input directly as the GEMM operand.
//! Chunking depends on the shapes only (never on the thread count), and the weight gradient
//! sums its per-slice partials in a fixed order, so results are identical for any number of
//! threads.

use std::cell::Cell;

use rayon::prelude::*;

use super::epilogue::{Epilogue, finish};
use super::geometry::ConvGeometry;
use super::im2col::{col2im_add, im2col};
use super::input_quant::Packing;
use super::small_k;
use crate::gemm::{MatRef, matmul};
use crate::packed::{PackedLhs, matmul_packed, padded_stride};

/// Minimum GEMM width (output pixels × images) a chunk aims for.
const TARGET_COLUMNS: usize = 256;
/// Columns the packed GEMM computes at once on the widest path (its `NR`; a multiple of every
/// path's, and the same on all of them so that the chunking, and with it the order of the
/// weight-gradient sums, does not depend on the CPU).
const COLUMN_BLOCK: usize = 32;
/// Weight-gradient partial sums (reduced in order); bounds the extra memory to this many
/// weight-sized buffers.
const WEIGHT_GRAD_SLICES: usize = 8;

/// Images per GEMM: 1 for large outputs, more for small ones, keeping ≥ 4 chunks per batch.
/// Between the fewest that reach [`TARGET_COLUMNS`] and twice as many, the count whose columns
/// leave the least of the last [`COLUMN_BLOCK`] unused (SmallCnn's 7² outputs: 11 images, 539
/// columns, instead of 6 and 294, a last block 6 columns wide).
pub(crate) fn images_per_chunk(g: &ConvGeometry) -> usize {
    let p = g.p_out().max(1);
    if p >= TARGET_COLUMNS {
        return 1;
    }
    let cap = g.batch.div_ceil(4).max(1);
    let fewest = TARGET_COLUMNS.div_ceil(p).min(cap);
    let unused = |n: usize| (n * p).next_multiple_of(COLUMN_BLOCK) - n * p;
    // the smallest count with the smallest unused fraction (compared as cross products)
    (fewest..=(2 * fewest).min(cap)).fold(fewest, |best, n| {
        if unused(n) * best * p < unused(best) * n * p {
            n
        } else {
            best
        }
    })
}

/// Fills `col` (`k_dim × n·p_out`, row stride `ld`) for the `n` images in `xs`, fake-quantized
/// when `q` is given.
pub(super) fn unfold(g: &ConvGeometry, xs: &[f32], n: usize, col: &mut Vec<f32>, ld: usize, q: Option<&Packing>) {
    let (k, p, img) = (g.k_dim(), g.p_out(), g.c_in * g.p_in());
    col.resize(k * ld, 0.0);
    for b in 0..n {
        im2col(g, &xs[b * img..(b + 1) * img], col, ld, b * p, q);
    }
}

thread_local! {
    /// Per-thread operands of the forward and input-gradient GEMMs (the unfolded matrix and a
    /// staging matrix), kept between chunks and calls: a fresh pair per rayon split cost a zero
    /// fill and page faults each time.
    static SCRATCH: Cell<(Vec<f32>, Vec<f32>)> = const { Cell::new((Vec::new(), Vec::new())) };
}

/// Scratch kept per thread at most (values, both vectors together): a larger pair, from a layer
/// with large images, is freed after its call instead of staying with the thread.
const SCRATCH_KEPT: usize = 8 << 20;

/// Runs `f` with this thread's two scratch vectors (taken out for the call: a nested call finds
/// empty ones and allocates its own). Their contents are stale: `f` writes what it reads.
fn with_scratch<R>(f: impl FnOnce(&mut Vec<f32>, &mut Vec<f32>) -> R) -> R {
    let (mut a, mut b) = SCRATCH.take();
    let r = f(&mut a, &mut b);
    if a.capacity() + b.capacity() <= SCRATCH_KEPT {
        SCRATCH.set((a, b));
    }
    r
}

/// Copies `n` images of `c × p` (NCHW) into one `c × n·p` matrix with row stride `ld`.
fn gather(src: &[f32], n: usize, c: usize, p: usize, dst: &mut Vec<f32>, ld: usize) {
    dst.resize(c * ld, 0.0);
    for b in 0..n {
        for ch in 0..c {
            let s = &src[(b * c + ch) * p..(b * c + ch + 1) * p];
            dst[ch * ld + b * p..ch * ld + (b + 1) * p].copy_from_slice(s);
        }
    }
}

/// The inverse of [`gather`], from a matrix with row stride `ld`.
fn scatter(src: &[f32], ld: usize, n: usize, c: usize, p: usize, dst: &mut [f32]) {
    for b in 0..n {
        for ch in 0..c {
            dst[(b * c + ch) * p..(b * c + ch + 1) * p].copy_from_slice(&src[ch * ld + b * p..ch * ld + (b + 1) * p]);
        }
    }
}

/// `out = conv(q(x), w)` (then `epi`, chunk by chunk): `x` is `batch × c_in × h × w`, `w` is
/// `c_out × c_in × kh × kw`, `q` the input fake-quant applied while packing, if any.
pub(crate) fn forward(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    out: &mut [f32],
    epi: Option<&Epilogue<'_>>,
    q: Option<&Packing>,
) {
    let (k, p) = (g.k_dim(), g.p_out());
    let nb = images_per_chunk(g);
    let (img_in, img_out) = (g.c_in * g.p_in(), g.c_out * p);
    // the weights packed once for every chunk
    let wp = PackedLhs::new(MatRef::row_major(w, g.c_out, k));
    out.par_chunks_mut(nb * img_out)
        .zip(x.par_chunks(nb * img_in))
        .for_each(|(o, xs)| {
            with_scratch(|col, tmp| {
                let n = xs.len() / img_in;
                if n == 1 && g.is_pointwise() && q.is_none() {
                    // the input is the operand as it lies: `gemm` packs it (`matmul_packed` would
                    // read a 1 024-float row stride that crowds one L1 set, or pay for a copy)
                    matmul(
                        o,
                        p,
                        MatRef::row_major(w, g.c_out, k),
                        MatRef::row_major(xs, k, p),
                        false,
                    );
                } else {
                    let ld = padded_stride(n * p);
                    unfold(g, xs, n, col, ld, q);
                    if n == 1 {
                        matmul_packed(o, p, &wp, col, ld, p, false);
                    } else {
                        tmp.resize(g.c_out * n * p, 0.0);
                        matmul_packed(tmp, n * p, &wp, col, ld, n * p, false);
                        scatter(tmp, n * p, n, g.c_out, p, o);
                    }
                }
                finish(epi, o, g.c_out, p);
            })
        });
}

/// `dx = convᵀ(dy, w)`: the gradient with respect to the input. `dx` must arrive zeroed (the op
/// allocates it so): col2im adds into it.
pub(crate) fn grad_input(g: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let (k, p) = (g.k_dim(), g.p_out());
    let nb = images_per_chunk(g);
    let (img_in, img_out) = (g.c_in * g.p_in(), g.c_out * p);
    if nb == 1 && g.is_pointwise() {
        return grad_input_pointwise(g, dy, w, dx);
    }
    // `wᵀ` packed once for every chunk
    let wt = PackedLhs::new(MatRef::row_major(w, g.c_out, k).t());
    dx.par_chunks_mut(nb * img_in)
        .zip(dy.par_chunks(nb * img_out))
        .for_each(|(dxs, dys)| {
            with_scratch(|dcol, gm| {
                let n = dys.len() / img_out;
                // `dy` read in place only where its row stride already spreads over the L1 sets
                let ld = padded_stride(n * p);
                let gmat: &[f32] = if n == 1 && ld == p {
                    dys
                } else {
                    gather(dys, n, g.c_out, p, gm, ld);
                    gm
                };
                dcol.resize(k * ld, 0.0);
                matmul_packed(dcol, ld, &wt, gmat, ld, n * p, false);
                if g.is_pointwise() {
                    scatter(dcol, ld, n, g.c_in, p, dxs);
                } else {
                    for b in 0..n {
                        col2im_add(g, dcol, ld, b * p, &mut dxs[b * img_in..(b + 1) * img_in]);
                    }
                }
            })
        });
}

/// [`grad_input`] for pointwise layers with an image per chunk: `dx = wᵀ · dy` image by image,
/// with `gemm` reading `dy` as it lies and `wᵀ` copied once per call (as a strided view `gemm`
/// would repack it for every image).
fn grad_input_pointwise(g: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let (k, p) = (g.k_dim(), g.p_out());
    let mut w_t = vec![0.0f32; k * g.c_out];
    transpose_into(w, g.c_out, k, &mut w_t);
    let wt = MatRef::row_major(&w_t, k, g.c_out);
    dx.par_chunks_mut(g.c_in * g.p_in())
        .zip(dy.par_chunks(g.c_out * p))
        .for_each(|(dxs, dys)| matmul(dxs, p, wt, MatRef::row_major(dys, g.c_out, p), false));
}

/// Images per slice of the weight gradient: whole chunks, at most [`WEIGHT_GRAD_SLICES`] slices.
pub(super) fn weight_grad_slice_images(g: &ConvGeometry) -> usize {
    let nb = images_per_chunk(g);
    let chunks = g.batch.div_ceil(nb);
    chunks.div_ceil(WEIGHT_GRAD_SLICES.min(chunks).max(1)) * nb
}

/// Whether the weight gradient is accumulated transposed (`dwᵀ = im2col(x) · dyᵀ`): measured
/// faster when the unfolded operand has at least as many rows as there are output channels and
/// there are at most 256 of those (ResNet-18 64–256-channel 3×3 layers: 1.05–1.6×; the 512-channel
/// and 1×1 layers keep `dy · im2col(x)ᵀ`).
fn weight_grad_transposed(g: &ConvGeometry) -> bool {
    g.k_dim() >= g.c_out && g.c_out <= 256
}

/// `dw = Σ_images dy · im2col(q(x))ᵀ`: the gradient with respect to the weight, summed over fixed
/// slices of the batch in a fixed order (thread-count independent). Where
/// [`weight_grad_transposed`] says so, each slice accumulates `dwᵀ = im2col(x) · dyᵀ` instead
/// (the large unfolded operand as the GEMM's row-major left side) and the sum is transposed once.
pub(crate) fn grad_weight(g: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32], q: Option<&Packing>) {
    if small_k::applies(g) {
        return small_k::grad_weight(g, x, dy, dw, q);
    }
    let (img_in, img_out) = (g.c_in * g.p_in(), g.c_out * g.p_out());
    let slice_images = weight_grad_slice_images(g);
    let transposed = weight_grad_transposed(g);
    let partials: Vec<Vec<f32>> = x
        .par_chunks(slice_images * img_in)
        .zip(dy.par_chunks(slice_images * img_out))
        .map(|(xs, dys)| with_scratch(|col, gm| weight_grad_slice(g, xs, dys, q, transposed, col, gm)))
        .collect();
    sum_partials(&partials, transposed, g.k_dim(), g.c_out, dw);
}

/// One slice's `dy · im2col(q(x))ᵀ` (or its transpose), chunk after chunk in order, with `col`
/// and `gm` as scratch for the unfolded input and the gathered output gradient.
#[allow(clippy::too_many_arguments)]
fn weight_grad_slice(
    g: &ConvGeometry,
    xs: &[f32],
    dys: &[f32],
    q: Option<&Packing>,
    transposed: bool,
    col: &mut Vec<f32>,
    gm: &mut Vec<f32>,
) -> Vec<f32> {
    let (k, p, nb) = (g.k_dim(), g.p_out(), images_per_chunk(g));
    let (img_in, img_out) = (g.c_in * g.p_in(), g.c_out * p);
    let mut acc = vec![0.0f32; k * g.c_out];
    for (i, (xc, dc)) in xs.chunks(nb * img_in).zip(dys.chunks(nb * img_out)).enumerate() {
        let n = xc.len() / img_in;
        // the slice's first product overwrites `acc` instead of adding to its zeros
        let accumulate = i > 0;
        let gmat = if n == 1 {
            MatRef::row_major(dc, g.c_out, p)
        } else {
            gather(dc, n, g.c_out, p, gm, n * p);
            MatRef::row_major(gm, g.c_out, n * p)
        };
        let cols = if n == 1 && g.is_pointwise() && q.is_none() {
            MatRef::row_major(xc, k, p)
        } else {
            unfold(g, xc, n, col, n * p, q);
            MatRef::row_major(col, k, n * p)
        };
        if transposed {
            matmul(&mut acc, g.c_out, cols, gmat.t(), accumulate);
        } else {
            matmul(&mut acc, k, gmat, cols.t(), accumulate);
        }
    }
    acc
}

/// Sums the slices' partials in order into `dw` (`c_out × k`), transposing the sum when the
/// partials are `k × c_out`.
fn sum_partials(partials: &[Vec<f32>], transposed: bool, k: usize, c_out: usize, dw: &mut [f32]) {
    let sum_into = |total: &mut [f32]| {
        let Some((first, rest)) = partials.split_first() else {
            return total.fill(0.0);
        };
        total.copy_from_slice(first);
        for part in rest {
            for (t, v) in total.iter_mut().zip(part) {
                *t += *v;
            }
        }
    };
    if !transposed {
        sum_into(dw);
        return;
    }
    let mut total = vec![0.0f32; k * c_out];
    sum_into(&mut total);
    transpose_into(&total, k, c_out, dw);
}

/// `dst[c · rows + r] = src[r · cols + c]` (`src` is `rows × cols`, row-major), in tiles, with
/// rayon over blocks of `dst`'s rows.
fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const TILE: usize = 32;
    if rows == 0 {
        return;
    }
    dst[..rows * cols]
        .par_chunks_mut(TILE * rows)
        .enumerate()
        .for_each(|(block, out)| {
            let c0 = block * TILE;
            for r0 in (0..rows).step_by(TILE) {
                for (dc, line) in out.chunks_exact_mut(rows).enumerate() {
                    for r in r0..(r0 + TILE).min(rows) {
                        line[r] = src[r * cols + c0 + dc];
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::transpose_into;

    #[test]
    fn transpose_into_moves_every_value_across_partial_tiles() {
        for (rows, cols) in [(1, 1), (45, 70), (32, 64), (3, 100), (70, 2)] {
            let src: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            let mut dst = vec![f32::NAN; rows * cols];
            transpose_into(&src, rows, cols, &mut dst);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(dst[c * rows + r], src[r * cols + c], "{rows}×{cols} at ({r}, {c})");
                }
            }
        }
    }
}
