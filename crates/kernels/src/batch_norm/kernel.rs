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
    (0..s.c).into_par_iter().map(|c| channel_mean_var(x, s, c, m)).unzip()
}

/// Image `b`'s plane of channel `c`.
fn plane(x: &[f32], s: BnShape, b: usize, c: usize) -> &[f32] {
    &x[(b * s.c + c) * s.hw..(b * s.c + c + 1) * s.hw]
}

/// Mean and biased variance of channel `c` over the batch; `m` is `n · hw`.
fn channel_mean_var(x: &[f32], s: BnShape, c: usize, m: f64) -> (f32, f32) {
    let mean = (0..s.n).map(|b| lane_sum(plane(x, s, b, c), |v| v)).sum::<f64>() / m;
    let mf = mean as f32;
    let var = (0..s.n)
        .map(|b| lane_sum(plane(x, s, b, c), |v| (v - mf) * (v - mf)))
        .sum::<f64>()
        / m;
    (mean as f32, var as f32)
}

/// The planes of an `n × c × hw` buffer grouped by channel (`out[c][b]` is image `b`'s plane of
/// channel `c`), so that one task can write every plane of a channel.
fn planes_by_channel(buf: &mut [f32], s: BnShape) -> Vec<Vec<&mut [f32]>> {
    let mut by_channel: Vec<Vec<&mut [f32]>> = (0..s.c).map(|_| Vec::with_capacity(s.n)).collect();
    for (p, plane) in buf.chunks_exact_mut(s.hw.max(1)).enumerate() {
        by_channel[p % s.c].push(plane);
    }
    by_channel
}

/// One channel's statistics from a training forward.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelNorm {
    /// Batch mean.
    pub mean: f32,
    /// Biased batch variance.
    pub var: f32,
    /// `1 / √(var + ε)`.
    pub invstd: f32,
}

/// The training forward channel by channel: statistics, then `y = act(γ·(x − μ)·σ⁻¹ + β)` over the
/// channel's planes while they are still in cache (one read of `x` from memory instead of
/// [`channel_stats`] then [`normalize`]'s two; the same arithmetic, the same bits).
pub fn train_forward(
    x: &[f32],
    s: BnShape,
    (gamma, beta): (&[f32], &[f32]),
    eps: f64,
    act: Activation,
    y: &mut [f32],
) -> Vec<ChannelNorm> {
    let m = s.per_channel().max(1) as f64;
    planes_by_channel(y, s)
        .into_par_iter()
        .enumerate()
        .map(|(c, mut planes)| {
            let (mean, var) = channel_mean_var(x, s, c, m);
            let invstd = (1.0 / ((var as f64) + eps).sqrt()) as f32;
            let scale = gamma[c] * invstd;
            let shift = beta[c] - mean * scale;
            for (b, yo) in planes.iter_mut().enumerate() {
                affine_plane(yo, plane(x, s, b, c), scale, shift, act);
            }
            ChannelNorm { mean, var, invstd }
        })
        .collect()
}

/// `y = act(x · scale[c] + shift[c])`.
pub fn normalize(x: &[f32], s: BnShape, scale: &[f32], shift: &[f32], act: Activation, y: &mut [f32]) {
    y.par_chunks_mut(s.hw)
        .zip(x.par_chunks(s.hw))
        .enumerate()
        .for_each(|(plane, (yo, xi))| affine_plane(yo, xi, scale[plane % s.c], shift[plane % s.c], act));
}

/// `yo = act(xi · a + b)`.
fn affine_plane(yo: &mut [f32], xi: &[f32], a: f32, b: f32, act: Activation) {
    match act {
        Activation::Identity => yo.iter_mut().zip(xi).for_each(|(o, v)| *o = v * a + b),
        Activation::Relu => yo.iter_mut().zip(xi).for_each(|(o, v)| *o = (v * a + b).max(0.0)),
        Activation::Relu6 => yo
            .iter_mut()
            .zip(xi)
            .for_each(|(o, v)| *o = (v * a + b).clamp(0.0, 6.0)),
    }
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
        .map(|c| channel_grad_sums((x, y, dy), s, c, mean[c], act))
        .unzip()
}

/// `(Σ g, Σ g·(x − μ))` over channel `c`'s planes.
fn channel_grad_sums(
    (x, y, dy): (&[f32], &[f32], &[f32]),
    s: BnShape,
    c: usize,
    mu: f32,
    act: Activation,
) -> (f64, f64) {
    let (mut sg, mut sgx) = (0.0f64, 0.0f64);
    for b in 0..s.n {
        let (xp, yp, gp) = (plane(x, s, b, c), plane(y, s, b, c), plane(dy, s, b, c));
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
}

/// What the input gradient of one channel needs from the forward.
#[derive(Clone, Copy, Debug)]
struct InputGradCoeffs {
    /// `γ · σ⁻¹`.
    k: f32,
    /// `Σg / M`.
    a: f32,
    /// `σ⁻² · Σg(x − μ) / M`.
    b: f32,
    /// `μ`.
    mu: f32,
}

impl InputGradCoeffs {
    fn new(sums: (f64, f64), m: f64, mean: f32, invstd: f32, gamma: f32) -> Self {
        InputGradCoeffs {
            k: gamma * invstd,
            a: (sums.0 / m) as f32,
            b: (sums.1 / m) as f32 * invstd * invstd,
            mu: mean,
        }
    }

    /// `d = k · (g − a − (x − μ) · b)` over one plane.
    fn apply(&self, d: &mut [f32], (xp, yp, gp): (&[f32], &[f32], &[f32]), act: Activation) {
        for (j, o) in d.iter_mut().enumerate() {
            let g = gp[j] * passes(act, yp[j]);
            *o = self.k * (g - self.a - (xp[j] - self.mu) * self.b);
        }
    }
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
        let coeffs = InputGradCoeffs::new((sums.0[c], sums.1[c]), m, mean[c], invstd[c], gamma[c]);
        coeffs.apply(d, (&x[r.clone()], &y[r.clone()], &dy[r]), act);
    });
}

/// The training backward channel by channel: [`backward_sums`] over the channel's planes, then
/// [`backward_input`] over the same planes while they are still in cache (one read of `x`, `y`
/// and `dy` from memory instead of two; the same arithmetic, the same bits). Returns the sums.
pub fn train_backward(
    (x, y, dy): (&[f32], &[f32], &[f32]),
    s: BnShape,
    stats: &[ChannelNorm],
    gamma: &[f32],
    act: Activation,
    dx: &mut [f32],
) -> Vec<(f64, f64)> {
    let m = s.per_channel().max(1) as f64;
    planes_by_channel(dx, s)
        .into_par_iter()
        .enumerate()
        .map(|(c, mut planes)| {
            let st = stats[c];
            let sums = channel_grad_sums((x, y, dy), s, c, st.mean, act);
            let coeffs = InputGradCoeffs::new(sums, m, st.mean, st.invstd, gamma[c]);
            for (b, d) in planes.iter_mut().enumerate() {
                coeffs.apply(d, (plane(x, s, b, c), plane(y, s, b, c), plane(dy, s, b, c)), act);
            }
            sums
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic, irregular input: values of both signs, some exactly zero after ReLU.
    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    }

    /// The channel-by-channel passes give the bits of the separate whole-tensor passes, for a plane
    /// size with a remainder after the 8-lane loop.
    #[test]
    fn channel_by_channel_passes_equal_the_separate_passes_bit_for_bit() {
        let s = BnShape { n: 3, c: 5, hw: 13 };
        let len = s.n * s.c * s.hw;
        let (x, dy) = (values(len, 7), values(len, 99));
        let (gamma, beta) = (values(s.c, 3), values(s.c, 5));
        let eps = 1e-5;
        for act in [Activation::Identity, Activation::Relu, Activation::Relu6] {
            let (mean, var) = channel_stats(&x, s);
            let invstd: Vec<f32> = var.iter().map(|v| (1.0 / ((*v as f64) + eps).sqrt()) as f32).collect();
            let scale: Vec<f32> = gamma.iter().zip(&invstd).map(|(g, i)| g * i).collect();
            let shift: Vec<f32> = (0..s.c).map(|c| beta[c] - mean[c] * scale[c]).collect();
            let mut y_sep = vec![0.0; len];
            normalize(&x, s, &scale, &shift, act, &mut y_sep);
            let mut y = vec![0.0; len];
            let stats = train_forward(&x, s, (&gamma, &beta), eps, act, &mut y);
            assert_eq!(y, y_sep);
            assert_eq!(stats.iter().map(|st| st.mean).collect::<Vec<_>>(), mean);
            assert_eq!(stats.iter().map(|st| st.invstd).collect::<Vec<_>>(), invstd);

            let (sg, sgx) = backward_sums(&x, &y, &dy, s, &mean, act);
            let mut dx_sep = vec![0.0; len];
            backward_input(&x, &y, &dy, s, &mean, &invstd, &gamma, (&sg, &sgx), act, &mut dx_sep);
            let mut dx = vec![0.0; len];
            let sums = train_backward((&x, &y, &dy), s, &stats, &gamma, act, &mut dx);
            assert_eq!(dx, dx_sep);
            assert_eq!(sums, sg.into_iter().zip(sgx).collect::<Vec<_>>());
            assert!(dx.iter().any(|v| *v != 0.0));
        }
    }
}
