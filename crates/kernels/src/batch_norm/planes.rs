//! The per-channel and per-plane loops of the BatchNorm kernels, as [`Kernel`]s compiled for
//! AVX-512F and AVX2 besides baseline x86-64 ([`crate::wide`]): the same operations in the same
//! order on every path (eight f32 accumulators, f64 across planes), so the results are the same
//! bits; only the instructions are wider.

use std::mem::MaybeUninit;

use super::Activation;
use super::kernel::BnShape;
use crate::wide::Kernel;

/// Σ f(v) over a slice with eight f32 lanes, returned in f64.
#[inline(always)]
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

/// Whether the activation passes the gradient at pre-activation value `v = x · a + b` (the
/// forward's own arithmetic, so the same bits). Equal to testing the output `y = act(v)`:
/// `max(v, 0) > 0` iff `v > 0`, and `clamp(v, 0, 6)` lies strictly inside iff `v` does (NaN
/// passes neither), but needs only `x`, so the backward does not read `y`.
#[inline(always)]
pub(super) fn passes(act: Activation, v: f32) -> f32 {
    match act {
        Activation::Identity => 1.0,
        Activation::Relu => (v > 0.0) as u8 as f32,
        Activation::Relu6 => (v > 0.0 && v < 6.0) as u8 as f32,
    }
}

/// Mean and biased variance of channel `c` (two passes).
pub(super) struct ChannelStats<'a> {
    pub x: &'a [f32],
    pub s: BnShape,
    pub c: usize,
}

impl Kernel for ChannelStats<'_> {
    type Out = (f32, f32);

    #[inline(always)]
    fn run(self) -> (f32, f32) {
        let (x, s, c) = (self.x, self.s, self.c);
        let m = s.per_channel().max(1) as f64;
        let plane = |b: usize| &x[(b * s.c + c) * s.hw..(b * s.c + c + 1) * s.hw];
        let mean = (0..s.n).map(|b| lane_sum(plane(b), |v| v)).sum::<f64>() / m;
        let mf = mean as f32;
        let var = (0..s.n)
            .map(|b| lane_sum(plane(b), |v| (v - mf) * (v - mf)))
            .sum::<f64>()
            / m;
        (mean as f32, var as f32)
    }
}

/// `y = act(src · a + b)` over one plane, `src` being `x` or, in place, `y` itself.
pub(super) struct Affine<'a> {
    pub y: Plane<'a>,
    pub a: f32,
    pub b: f32,
    pub act: Activation,
}

/// Where [`Affine`] reads and writes.
pub(super) enum Plane<'a> {
    /// From `x` into unwritten storage of the same length: every value of `y` is written.
    From {
        x: &'a [f32],
        y: &'a mut [MaybeUninit<f32>],
    },
    /// In place.
    InPlace(&'a mut [f32]),
}

impl Kernel for Affine<'_> {
    type Out = ();

    #[inline(always)]
    fn run(self) {
        let (a, b) = (self.a, self.b);
        match self.act {
            Activation::Identity => map(self.y, |v| v * a + b),
            Activation::Relu => map(self.y, |v| (v * a + b).max(0.0)),
            Activation::Relu6 => map(self.y, |v| (v * a + b).clamp(0.0, 6.0)),
        }
    }
}

/// `y = f(x)`, or `y = f(y)` in place: one loop per activation (`f` is monomorphised).
#[inline(always)]
fn map(plane: Plane<'_>, f: impl Fn(f32) -> f32) {
    match plane {
        Plane::From { x, y } => {
            assert_eq!(x.len(), y.len(), "an affine plane is written whole");
            y.iter_mut().zip(x).for_each(|(o, v)| {
                o.write(f(*v));
            });
        }
        Plane::InPlace(y) => y.iter_mut().for_each(|o| *o = f(*o)),
    }
}

/// Channel `c`'s `(Σ g, Σ g·(x − μ))` with `g = dy · act'(x · scale + shift)`.
pub(super) struct BackwardSums<'a> {
    pub x: &'a [f32],
    pub dy: &'a [f32],
    pub s: BnShape,
    pub c: usize,
    pub mu: f32,
    /// The forward's `(scale, shift)` of channel `c`.
    pub affine: (f32, f32),
    pub act: Activation,
}

impl Kernel for BackwardSums<'_> {
    type Out = (f64, f64);

    #[inline(always)]
    fn run(self) -> (f64, f64) {
        let (s, mu, act, (sa, sb)) = (self.s, self.mu, self.act, self.affine);
        let (mut sg, mut sgx) = (0.0f64, 0.0f64);
        for b in 0..s.n {
            let r = (b * s.c + self.c) * s.hw..(b * s.c + self.c + 1) * s.hw;
            let (xp, gp) = (&self.x[r.clone()], &self.dy[r]);
            let (mut a1, mut a2) = ([0.0f32; 8], [0.0f32; 8]);
            let mut i = 0;
            while i + 8 <= s.hw {
                for l in 0..8 {
                    let g = gp[i + l] * passes(act, xp[i + l] * sa + sb);
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
                let g = gp[j] * passes(act, xp[j] * sa + sb);
                t1 += g as f64;
                t2 += (g * (xp[j] - mu)) as f64;
            }
            sg += t1;
            sgx += t2;
        }
        (sg, sgx)
    }
}

/// One plane of the input gradient: `dx = k · (g − a − (x − μ) · b)`, `coef = [k, a, μ, b]`,
/// `g = dy · act'(x · scale + shift)`.
pub(super) struct InputGradPlane<'a> {
    pub x: &'a [f32],
    pub dy: &'a [f32],
    /// Written whole: as long as `x` and `dy`.
    pub dx: &'a mut [MaybeUninit<f32>],
    pub coef: [f32; 4],
    /// The forward's `(scale, shift)` of the plane's channel.
    pub affine: (f32, f32),
    pub act: Activation,
}

impl Kernel for InputGradPlane<'_> {
    type Out = ();

    #[inline(always)]
    fn run(self) {
        let [k, a, mu, b] = self.coef;
        let (act, (sa, sb)) = (self.act, self.affine);
        assert!(
            self.x.len() == self.dx.len() && self.dy.len() == self.dx.len(),
            "an input-gradient plane is written whole"
        );
        for ((o, g), x) in self.dx.iter_mut().zip(self.dy).zip(self.x) {
            let g = g * passes(act, x * sa + sb);
            o.write(k * (g - a - (x - mu) * b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mask from the pre-activation equals the mask the forward's output would give.
    #[test]
    fn pre_activation_mask_equals_the_output_mask() {
        let edges = [
            f32::NEG_INFINITY,
            -1.0,
            -0.0,
            0.0,
            1e-40,
            3.0,
            5.999_999_5,
            6.0,
            6.000_000_5,
            f32::INFINITY,
            f32::NAN,
        ];
        for v in edges {
            let relu = v.max(0.0);
            assert_eq!(passes(Activation::Relu, v), (relu > 0.0) as u8 as f32, "ReLU at {v}");
            let relu6 = v.clamp(0.0, 6.0);
            let inside = relu6 > 0.0 && relu6 < 6.0;
            assert_eq!(passes(Activation::Relu6, v), inside as u8 as f32, "ReLU6 at {v}");
            assert_eq!(passes(Activation::Identity, v), 1.0);
        }
    }
}
