//! Slice kernels of training-mode BatchNorm with a fused activation: channel statistics, the
//! normalising forward, and the closed-form backward. `x` is `n × c × hw` (NCHW flattened).

use rayon::prelude::*;

use super::Activation;

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

/// Σ v over a slice with eight f32 lanes, returned in f64.
fn lane_sum(v: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0.0f32; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += f(*x);
        }
    }
    let mut total: f64 = acc.iter().map(|a| *a as f64).sum();
    for x in rest {
        total += f(*x) as f64;
    }
    total
}

/// Per-channel mean and biased variance (two passes, f64 accumulation across planes).
pub fn channel_stats(x: &[f32], s: BnShape) -> (Vec<f32>, Vec<f32>) {
    let m = s.per_channel().max(1) as f64;
    (0..s.c)
        .into_par_iter()
        .map(|c| {
            let plane = |b: usize| &x[(b * s.c + c) * s.hw..(b * s.c + c + 1) * s.hw];
            let mean = (0..s.n).map(|b| lane_sum(plane(b), |v| v)).sum::<f64>() / m;
            let mf = mean as f32;
            let var = (0..s.n)
                .map(|b| lane_sum(plane(b), |v| (v - mf) * (v - mf)))
                .sum::<f64>()
                / m;
            (mean as f32, var as f32)
        })
        .unzip()
}

/// `y = act(x · scale[c] + shift[c])`.
pub fn normalize(x: &[f32], s: BnShape, scale: &[f32], shift: &[f32], act: Activation, y: &mut [f32]) {
    y.par_chunks_mut(s.hw)
        .zip(x.par_chunks(s.hw))
        .enumerate()
        .for_each(|(plane, (yo, xi))| {
            let (a, b) = (scale[plane % s.c], shift[plane % s.c]);
            match act {
                Activation::Identity => yo.iter_mut().zip(xi).for_each(|(o, v)| *o = v * a + b),
                Activation::Relu => yo.iter_mut().zip(xi).for_each(|(o, v)| *o = (v * a + b).max(0.0)),
                Activation::Relu6 => yo
                    .iter_mut()
                    .zip(xi)
                    .for_each(|(o, v)| *o = (v * a + b).clamp(0.0, 6.0)),
            }
        });
}

/// `y = act(y · scale[c] + shift[c])` in place on whole `c × hw` images, on the calling thread
/// (the epilogue of a convolution chunk; the same arithmetic as [`normalize`], so the fused and
/// the separate pass agree bit for bit).
pub fn affine_in_place(y: &mut [f32], c: usize, hw: usize, scale: &[f32], shift: &[f32], act: Activation) {
    for (plane, yo) in y.chunks_exact_mut(hw).enumerate() {
        let (a, b) = (scale[plane % c], shift[plane % c]);
        match act {
            Activation::Identity => yo.iter_mut().for_each(|o| *o = *o * a + b),
            Activation::Relu => yo.iter_mut().for_each(|o| *o = (*o * a + b).max(0.0)),
            Activation::Relu6 => yo.iter_mut().for_each(|o| *o = (*o * a + b).clamp(0.0, 6.0)),
        }
    }
}

/// Whether the activation passes the gradient at output value `y`.
#[inline(always)]
fn passes(act: Activation, y: f32) -> f32 {
    match act {
        Activation::Identity => 1.0,
        Activation::Relu => (y > 0.0) as u8 as f32,
        Activation::Relu6 => (y > 0.0 && y < 6.0) as u8 as f32,
    }
}

/// Per channel `(Σ g, Σ g·(x − μ))` with `g = dy · act'(y)`.
pub fn backward_sums(
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    s: BnShape,
    mean: &[f32],
    act: Activation,
) -> (Vec<f64>, Vec<f64>) {
    (0..s.c)
        .into_par_iter()
        .map(|c| {
            let mu = mean[c];
            let (mut sg, mut sgx) = (0.0f64, 0.0f64);
            for b in 0..s.n {
                let r = (b * s.c + c) * s.hw..(b * s.c + c + 1) * s.hw;
                let (xp, yp, gp) = (&x[r.clone()], &y[r.clone()], &dy[r]);
                let (mut a1, mut a2) = ([0.0f32; 8], [0.0f32; 8]);
                let mut i = 0;
                while i + 8 <= s.hw {
                    for l in 0..8 {
                        let g = gp[i + l] * passes(act, yp[i + l]);
                        a1[l] += g;
                        a2[l] += g * (xp[i + l] - mu);
                    }
                    i += 8;
                }
                let (mut t1, mut t2) = (0.0f64, 0.0f64);
                for l in 0..8 {
                    t1 += a1[l] as f64;
                    t2 += a2[l] as f64;
                }
                for j in i..s.hw {
                    let g = gp[j] * passes(act, yp[j]);
                    t1 += g as f64;
                    t2 += (g * (xp[j] - mu)) as f64;
                }
                sg += t1;
                sgx += t2;
            }
            (sg, sgx)
        })
        .unzip()
}

/// The input gradient: `dx = γ·σ⁻¹ · (g − Σg/M − (x − μ)·σ⁻²·Σg(x − μ)/M)`.
#[allow(clippy::too_many_arguments)]
pub fn backward_input(
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    s: BnShape,
    mean: &[f32],
    invstd: &[f32],
    gamma: &[f32],
    sums: (&[f64], &[f64]),
    act: Activation,
    dx: &mut [f32],
) {
    let m = s.per_channel().max(1) as f64;
    dx.par_chunks_mut(s.hw).enumerate().for_each(|(plane, d)| {
        let c = plane % s.c;
        let r = plane * s.hw..(plane + 1) * s.hw;
        let (xp, yp, gp) = (&x[r.clone()], &y[r.clone()], &dy[r]);
        let k = gamma[c] * invstd[c];
        let a = (sums.0[c] / m) as f32;
        let b = (sums.1[c] / m) as f32 * invstd[c] * invstd[c];
        let mu = mean[c];
        for (j, o) in d.iter_mut().enumerate() {
            let g = gp[j] * passes(act, yp[j]);
            *o = k * (g - a - (xp[j] - mu) * b);
        }
    });
}
