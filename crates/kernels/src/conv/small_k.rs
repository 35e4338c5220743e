//! The weight gradient of dense layers whose unfolded dimension is 9 (one input channel and a 3×3
//! kernel: the first layer of a network on grey images; also nine channels 1×1), as 9 · `c_out`
//! long dot products in registers.
//!
//! As a GEMM it is `dw (c_out × 9) = dy · im2col(x)ᵀ` per image: a product 9 columns wide and
//! 784 deep (28² outputs), which the GEMM's blocking does not suit (SmallCnn's 1→32 layer: 80
//! GFLOP/s against PyTorch's 123). Here each image's nine unfolded rows are read once per block of
//! three output channels, with the 27 sums kept as 16-lane vectors across the image's pixels; the
//! lanes are reduced once per slice of the batch. The sums run in a fixed order (slices of the
//! batch as in the GEMM path, reduced in order), so the result does not depend on the thread count.

use rayon::prelude::*;

use super::dense::{unfold, weight_grad_slice_images};
use super::geometry::ConvGeometry;
use super::input_quant::Packing;
use crate::lanes::{Lanes, load, load_n};
use crate::transpose::LANES;
use crate::wide::{Kernel, wide};

/// Taps per output channel this module handles.
const TAPS: usize = 9;
/// Output channels per register block: 27 sums, 3 gradient vectors and one input vector.
const BLOCK: usize = 3;

/// Whether [`grad_weight`] handles `g`: a dense layer with exactly nine unfolded rows.
pub(super) fn applies(g: &ConvGeometry) -> bool {
    g.groups == 1 && g.k_dim() == TAPS
}

/// `dw = Σ_images dy · im2col(q(x))ᵀ` for a geometry where [`applies`] holds.
pub(super) fn grad_weight(g: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32], q: Option<&Packing>) {
    let p = g.p_out();
    let (img_in, img_out) = (g.c_in * g.p_in(), g.c_out * p);
    let slice_images = weight_grad_slice_images(g);
    let partials: Vec<Vec<f32>> = x
        .par_chunks(slice_images * img_in)
        .zip(dy.par_chunks(slice_images * img_out))
        .map(|(xs, dys)| {
            let mut sums = vec![[0.0f32; LANES]; g.c_out * TAPS];
            let mut col = Vec::new();
            for (xi, di) in xs.chunks_exact(img_in).zip(dys.chunks_exact(img_out)) {
                unfold(g, xi, 1, &mut col, p, q);
                wide(ImageSums {
                    col: &col,
                    dy: di,
                    p,
                    sums: &mut sums,
                });
            }
            sums.iter().map(reduce).collect()
        })
        .collect();
    dw.fill(0.0);
    for part in &partials {
        for (t, v) in dw.iter_mut().zip(part) {
            *t += *v;
        }
    }
}

/// The 16 lanes of a sum, added in a fixed order.
fn reduce(v: &Lanes) -> f32 {
    v.iter().sum()
}

/// Adds one image's products into `sums[co · 9 + t]` (16 lanes each).
struct ImageSums<'a> {
    col: &'a [f32],
    dy: &'a [f32],
    p: usize,
    sums: &'a mut [Lanes],
}

impl Kernel for ImageSums<'_> {
    type Out = ();

    #[inline(always)]
    fn run(self) {
        let c_out = self.sums.len() / TAPS;
        let mut co = 0;
        while co + BLOCK <= c_out {
            block::<BLOCK>(self.col, self.dy, self.p, co, self.sums);
            co += BLOCK;
        }
        match c_out - co {
            2 => block::<2>(self.col, self.dy, self.p, co, self.sums),
            1 => block::<1>(self.col, self.dy, self.p, co, self.sums),
            _ => {}
        }
    }
}

/// Output channels `co..co + B`: their `9 · B` sums in registers over the image's pixels.
#[inline(always)]
fn block<const B: usize>(col: &[f32], dy: &[f32], p: usize, co: usize, sums: &mut [Lanes]) {
    let mut acc = [[[0.0f32; LANES]; TAPS]; B];
    for (j, a) in acc.iter_mut().enumerate() {
        a.copy_from_slice(&sums[(co + j) * TAPS..(co + j + 1) * TAPS]);
    }
    let full = p / LANES * LANES;
    for at in (0..full).step_by(LANES) {
        let mut d = [[0.0f32; LANES]; B];
        for (j, d) in d.iter_mut().enumerate() {
            [*d] = load_n::<1>(&dy[(co + j) * p + at..]);
        }
        add_products(&mut acc, &d, |t| load_n::<1>(&col[t * p + at..])[0]);
    }
    if full < p {
        // the last pixels, zero-padded to a vector
        let mut d = [[0.0f32; LANES]; B];
        for (j, d) in d.iter_mut().enumerate() {
            *d = load(dy, (co + j) * p + full, p - full);
        }
        add_products(&mut acc, &d, |t| load(col, t * p + full, p - full));
    }
    for (j, a) in acc.iter().enumerate() {
        sums[(co + j) * TAPS..(co + j + 1) * TAPS].copy_from_slice(a);
    }
}

/// `acc[j][t] += d[j] · tap(t)` lane by lane, for every channel `j` of the block and tap `t`.
#[inline(always)]
fn add_products<const B: usize>(acc: &mut [[Lanes; TAPS]; B], d: &[Lanes; B], tap: impl Fn(usize) -> Lanes) {
    for t in 0..TAPS {
        let c = tap(t);
        for (a, d) in acc.iter_mut().zip(d) {
            for ((s, dv), cv) in a[t].iter_mut().zip(d).zip(&c) {
                *s += dv * cv;
            }
        }
    }
}
