//! Slice kernels of training-mode BatchNorm with a fused activation: channel statistics, the
//! normalising forward, and the closed-form backward. `x` is `n × c × hw` (NCHW flattened).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::Activation;
use super::planes::{Affine, BackwardSums, ChannelStats, InputGradPlane, Plane};
use crate::wide::wide;

/// Sizes of a BatchNorm input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnShape {
    /// Batch.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Elements per channel plane (H·W).
    pub hw: usize,
}

impl BnShape {
    /// Elements per channel over the batch (`n · hw`).
    pub fn per_channel(&self) -> usize {
        self.n * self.hw
    }
}

/// Per-channel mean and biased variance (two passes, f64 accumulation across planes).
pub fn channel_stats(x: &[f32], s: BnShape) -> (Vec<f32>, Vec<f32>) {
    (0..s.c).into_par_iter().map(|c| wide(ChannelStats { x, s, c })).unzip()
}

/// `y = act(x · scale[c] + shift[c])`.
#[allow(unsafe_code)]
pub fn normalize(x: &[f32], s: BnShape, scale: &[f32], shift: &[f32], act: Activation, y: &mut [f32]) {
    // SAFETY: the kernel stores only computed values.
    normalize_into(x, s, scale, shift, act, unsafe { crate::fresh::as_unwritten(y) });
}

/// [`normalize`] into a new vector, never zero-filled: the kernel writes every value.
#[allow(unsafe_code)]
pub(super) fn normalized(x: &[f32], s: BnShape, scale: &[f32], shift: &[f32], act: Activation) -> Vec<f32> {
    // SAFETY: `y` and `x` have the same length and are cut into the same planes, and each plane of
    // `y` is written whole (`Plane::From`).
    unsafe { crate::fresh::written_by(x.len(), |y| normalize_into(x, s, scale, shift, act, y)) }
}

fn normalize_into(x: &[f32], s: BnShape, scale: &[f32], shift: &[f32], act: Activation, y: &mut [MaybeUninit<f32>]) {
    y.par_chunks_mut(s.hw)
        .zip(x.par_chunks(s.hw))
        .enumerate()
        .for_each(|(plane, (yo, xi))| {
            let (a, b) = (scale[plane % s.c], shift[plane % s.c]);
            wide(Affine {
                y: Plane::From { x: xi, y: yo },
                a,
                b,
                act,
            });
        });
}

/// `y = act(y · scale[c] + shift[c])` in place on whole `c × hw` images, on the calling thread
/// (the epilogue of a convolution chunk; the same arithmetic as [`normalize`], so the fused and
/// the separate pass agree bit for bit).
pub fn affine_in_place(y: &mut [f32], c: usize, hw: usize, scale: &[f32], shift: &[f32], act: Activation) {
    for (plane, yo) in y.chunks_exact_mut(hw).enumerate() {
        let (a, b) = (scale[plane % c], shift[plane % c]);
        wide(Affine {
            y: Plane::InPlace(yo),
            a,
            b,
            act,
        });
    }
}

/// The forward's per-channel `y = act(x · scale + shift)`: what the backward needs to tell
/// where the activation passed the gradient, from `x` alone.
#[derive(Clone, Copy, Debug)]
pub struct ForwardAffine<'a> {
    /// `γ / √(σ² + ε)` per channel.
    pub scale: &'a [f32],
    /// `β − μ · scale` per channel.
    pub shift: &'a [f32],
    /// The activation.
    pub act: Activation,
}

/// Per channel `(Σ g, Σ g·(x − μ))` with `g = dy · act'(x · scale + shift)`.
pub fn backward_sums(x: &[f32], dy: &[f32], s: BnShape, mean: &[f32], f: ForwardAffine<'_>) -> (Vec<f64>, Vec<f64>) {
    (0..s.c)
        .into_par_iter()
        .map(|c| {
            wide(BackwardSums {
                x,
                dy,
                s,
                c,
                mu: mean[c],
                affine: (f.scale[c], f.shift[c]),
                act: f.act,
            })
        })
        .unzip()
}

/// The input gradient: `dx = γ·σ⁻¹ · (g − Σg/M − (x − μ)·σ⁻²·Σg(x − μ)/M)`, with `γ·σ⁻¹` the
/// forward's `scale`. The coefficients are computed once per channel, and planes of fewer than
/// 256 values go a whole image per task (ResNet-18's 4² planes: one task and two f64 divisions
/// per 16 values before).
#[allow(clippy::too_many_arguments)]
pub fn backward_input(
    x: &[f32],
    dy: &[f32],
    s: BnShape,
    mean: &[f32],
    invstd: &[f32],
    sums: (&[f64], &[f64]),
    f: ForwardAffine<'_>,
    dx: &mut [f32],
) {
    // SAFETY: the kernel stores only computed values.
    #[allow(unsafe_code)]
    let dx = unsafe { crate::fresh::as_unwritten(dx) };
    backward_input_into(x, dy, s, mean, invstd, sums, f, dx);
}

/// [`backward_input`] into unwritten storage, which it writes whole when `dx`, `x` and `dy`
/// have the same length.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_input_into(
    x: &[f32],
    dy: &[f32],
    s: BnShape,
    mean: &[f32],
    invstd: &[f32],
    sums: (&[f64], &[f64]),
    f: ForwardAffine<'_>,
    dx: &mut [MaybeUninit<f32>],
) {
    let m = s.per_channel().max(1) as f64;
    // γ·σ⁻¹ is the forward's scale (the same product)
    let coefs: Vec<[f32; 4]> = (0..s.c)
        .map(|c| {
            let a = (sums.0[c] / m) as f32;
            let b = (sums.1[c] / m) as f32 * invstd[c] * invstd[c];
            [f.scale[c], a, mean[c], b]
        })
        .collect();
    let plane_grad = |plane: usize, d: &mut [MaybeUninit<f32>]| {
        let c = plane % s.c;
        let r = plane * s.hw..(plane + 1) * s.hw;
        wide(InputGradPlane {
            x: &x[r.clone()],
            dy: &dy[r],
            dx: d,
            coef: coefs[c],
            affine: (f.scale[c], f.shift[c]),
            act: f.act,
        });
    };
    if s.hw >= PLANES_MIN {
        dx.par_chunks_mut(s.hw)
            .enumerate()
            .for_each(|(plane, d)| plane_grad(plane, d));
        return;
    }
    dx.par_chunks_mut((s.c * s.hw).max(1))
        .enumerate()
        .for_each(|(image, d)| {
            for (c, d) in d.chunks_exact_mut(s.hw.max(1)).enumerate() {
                plane_grad(image * s.c + c, d);
            }
        });
}

/// Planes at least this large are one task each in [`backward_input`]; smaller ones a whole
/// image per task.
const PLANES_MIN: usize = 256;
