//! The fused CPU fake-quant kernels: one pass forward, one pass backward, rayon across chunks.
//!
//! Every quantizer in the crate is an instance of the same affine fake-quant,
//! `y = s · clamp(round((x − o) / s), qn, qp) + o`, with per-tensor or per-channel `s` and `o`.
//! The kernels here are plain slices in, slices out; `quarc-quant-core` wraps them as candle custom ops (`ste::fused`).

use rayon::prelude::*;

use crate::float::Float;
use crate::wide::{Kernel, wide};

/// Elements per rayon task. Large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 15;

/// How elements map to channels: element `i` belongs to channel `(i / inner) % channels`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelLayout {
    /// Number of channels (1 for per-tensor).
    pub channels: usize,
    /// Elements between consecutive channel changes (the product of the trailing axes).
    pub inner: usize,
}

impl ChannelLayout {
    /// One channel covering all `numel` elements.
    pub fn per_tensor(numel: usize) -> Self {
        Self {
            channels: 1,
            inner: numel.max(1),
        }
    }
}

/// What the step-size gradient includes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepGrad {
    /// LSQ: `round(v) − v` inside the range, `qn`/`qp` outside.
    Lsq,
    /// PACT: the rounding residual is ignored: `0` inside, `qn`/`qp` outside.
    Pact,
}

/// Parameters of one kernel call, already read from the tensors.
pub struct Params<'a, T> {
    /// Step size per channel (one for per-tensor).
    pub steps: &'a [T],
    /// Offset per channel (LSQ+, asymmetric uniform), if any.
    pub offsets: Option<&'a [T]>,
    /// Lowest integer level.
    pub qn: T,
    /// Highest integer level.
    pub qp: T,
    /// Floor applied to the step size (straight-through below it).
    pub eps: T,
    /// How elements map to channels.
    pub layout: ChannelLayout,
}

impl<T: Float> Params<'_, T> {
    #[inline(always)]
    fn step(&self, c: usize) -> T {
        let s = self.steps[c];
        // Keep the step positive: max(s, eps). NaN steps stay NaN and are caught by the caller.
        if s < self.eps { self.eps } else { s }
    }
    #[inline(always)]
    fn offset(&self, c: usize) -> Option<T> {
        self.offsets.map(|o| o[c])
    }
}

/// Calls `f(channel, start, end)` for each run of equal channel inside `[start, end)`.
#[inline(always)]
fn for_each_segment(layout: ChannelLayout, start: usize, end: usize, mut f: impl FnMut(usize, usize, usize)) {
    let mut i = start;
    while i < end {
        let row = i / layout.inner;
        let row_end = ((row + 1) * layout.inner).min(end);
        f(row % layout.channels, i, row_end);
        i = row_end;
    }
}

#[inline(always)]
fn clamp<T: Float>(v: T, qn: T, qp: T) -> T {
    let v = if v > qp { qp } else { v };
    if v < qn { qn } else { v }
}

/// One element of the symmetric fake-quant, `s · clamp(round(x / s), qn, qp)` (the forward
/// kernel's arithmetic; the convolution's fused input packing uses it too).
#[inline(always)]
pub(crate) fn quantize<T: Float>(x: T, s: T, qn: T, qp: T) -> T {
    clamp(x / s, qn, qp).round_even_small() * s
}

/// Forward pass into `out`. Returns `true` if any input or step was NaN.
pub fn forward<T: Float>(x: &[T], p: &Params<'_, T>, out: &mut [T]) -> bool {
    debug_assert_eq!(x.len(), out.len());
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .enumerate()
        .map(|(k, (out, x))| {
            let base = k * CHUNK;
            let mut nan = false;
            for_each_segment(p.layout, base, base + x.len(), |c, a, b| {
                let s = p.step(c);
                nan |= s.is_nan_value();
                let (xs, os) = (&x[a - base..b - base], &mut out[a - base..b - base]);
                match p.offset(c) {
                    None => {
                        for (o, &xi) in os.iter_mut().zip(xs) {
                            nan |= xi.is_nan_value();
                            *o = quantize(xi, s, p.qn, p.qp);
                        }
                    }
                    Some(off) => {
                        nan |= off.is_nan_value();
                        for (o, &xi) in os.iter_mut().zip(xs) {
                            nan |= xi.is_nan_value();
                            *o = clamp((xi - off) / s, p.qn, p.qp).round_even_small() * s + off;
                        }
                    }
                }
            });
            nan
        })
        .reduce(|| false, |a, b| a | b)
}

/// Per-channel partial sums of one chunk: `(channel, d step, d offset)`.
type Partials = Vec<(usize, f64, f64)>;

const LANES: usize = 8;

/// Backward pass: writes `d x` into `gx` and returns the per-channel `d step` and `d offset`
/// (before any gradient scaling). Sums run in f64 in a fixed order, so the result is
/// deterministic for any thread count.
pub fn backward<T: Float>(
    x: &[T],
    grad: &[T],
    p: &Params<'_, T>,
    step_grad: StepGrad,
    gx: &mut [T],
) -> (Vec<f64>, Vec<f64>) {
    match step_grad {
        StepGrad::Lsq => backward_impl::<T, false>(x, grad, p, gx),
        StepGrad::Pact => backward_impl::<T, true>(x, grad, p, gx),
    }
}

/// One segment of constant step/offset: branch-free, in lanes of [`LANES`] so the compiler
/// vectorises it; returns `(Σ d step, Σ d offset)`.
#[inline(always)]
fn backward_segment<T: Float, const PACT: bool>(
    xs: &[T],
    gs: &[T],
    gxs: &mut [T],
    s: T,
    off: T,
    qn: T,
    qp: T,
) -> (f64, f64) {
    let zero = T::cast_from(0.0);
    let one = T::cast_from(1.0);
    let mut ds = [0f64; LANES];
    let mut d_o = [0f64; LANES];
    let mut lane = |j: usize, xi: T, g: T, out: &mut T| {
        let v = (xi - off) / s;
        let inside = if v >= qn && v <= qp { one } else { zero };
        let q = clamp(v, qn, qp).round_even_small();
        *out = g * inside;
        let outside = one - inside;
        // LSQ: round(v) − v inside, q outside. PACT: 0 inside, q outside.
        let term = if PACT { q * outside } else { q - v * inside };
        ds[j] += (g * term).cast_to();
        d_o[j] += (g * outside).cast_to();
    };
    let n = xs.len() / LANES * LANES;
    for ((xc, gc), oc) in xs[..n]
        .chunks_exact(LANES)
        .zip(gs[..n].chunks_exact(LANES))
        .zip(gxs[..n].chunks_exact_mut(LANES))
    {
        for j in 0..LANES {
            lane(j, xc[j], gc[j], &mut oc[j]);
        }
    }
    for (j, ((&xi, &g), o)) in xs[n..].iter().zip(&gs[n..]).zip(&mut gxs[n..]).enumerate() {
        lane(j, xi, g, o);
    }
    (ds.iter().sum(), d_o.iter().sum())
}

/// [`backward_segment`] compiled for the widest vectors the CPU has ([`wide`]; the same
/// arithmetic in the same order, so the same bits on every path).
struct Segment<'a, T, const PACT: bool> {
    xs: &'a [T],
    gs: &'a [T],
    gxs: &'a mut [T],
    s: T,
    off: T,
    qn: T,
    qp: T,
}

impl<T: Float, const PACT: bool> Kernel for Segment<'_, T, PACT> {
    type Out = (f64, f64);
    #[inline(always)]
    fn run(self) -> (f64, f64) {
        backward_segment::<T, PACT>(self.xs, self.gs, self.gxs, self.s, self.off, self.qn, self.qp)
    }
}

fn backward_impl<T: Float, const PACT: bool>(
    x: &[T],
    grad: &[T],
    p: &Params<'_, T>,
    gx: &mut [T],
) -> (Vec<f64>, Vec<f64>) {
    debug_assert_eq!(x.len(), grad.len());
    let zero = T::cast_from(0.0);
    let partials: Vec<Partials> = gx
        .par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(grad.par_chunks(CHUNK)))
        .enumerate()
        .map(|(k, (gx, (x, grad)))| {
            let base = k * CHUNK;
            let mut parts = Partials::new();
            for_each_segment(p.layout, base, base + x.len(), |c, a, b| {
                let (lo, hi) = (a - base, b - base);
                let (ds, d_o) = wide(Segment::<T, PACT> {
                    xs: &x[lo..hi],
                    gs: &grad[lo..hi],
                    gxs: &mut gx[lo..hi],
                    s: p.step(c),
                    off: p.offset(c).unwrap_or(zero),
                    qn: p.qn,
                    qp: p.qp,
                });
                parts.push((c, ds, d_o));
            });
            parts
        })
        .collect();
    let mut d_step = vec![0f64; p.layout.channels];
    let mut d_offset = vec![0f64; p.layout.channels];
    for parts in partials {
        for (c, ds, d_o) in parts {
            d_step[c] += ds;
            d_offset[c] += d_o;
        }
    }
    (d_step, d_offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params<'a>(steps: &'a [f32], offsets: Option<&'a [f32]>, layout: ChannelLayout) -> Params<'a, f32> {
        Params {
            steps,
            offsets,
            qn: -2.0,
            qp: 1.0,
            eps: 1e-8,
            layout,
        }
    }

    #[test]
    fn forward_hand_values_signed_2bit() {
        // s = 0.5, range [-2, 1]: x/s = [-3, -1.2, -0.25, 0.25, 0.75, 5] → codes [-2, -1, 0, 0, 1, 1]
        let x = [-1.5f32, -0.6, -0.125, 0.125, 0.375, 2.5];
        let mut out = [0f32; 6];
        let nan = forward(&x, &params(&[0.5], None, ChannelLayout::per_tensor(6)), &mut out);
        assert!(!nan);
        assert_eq!(out, [-1.0, -0.5, 0.0, 0.0, 0.5, 0.5]);
    }

    #[test]
    fn ties_round_to_even() {
        // x/s = [0.5, -0.5, -1.5] → [0, -0, -2]
        let x = [0.5f32, -0.5, -1.5];
        let mut out = [9f32; 3];
        forward(&x, &params(&[1.0], None, ChannelLayout::per_tensor(3)), &mut out);
        assert_eq!(out, [0.0, 0.0, -2.0]);
    }

    #[test]
    fn per_channel_segments_cross_chunks() {
        // 3 channels of inner 5, repeated twice (outer 2): channel of element i = (i / 5) % 3.
        let layout = ChannelLayout { channels: 3, inner: 5 };
        let mut seen = vec![usize::MAX; 30];
        for_each_segment(layout, 3, 27, |c, a, b| seen[a..b].iter_mut().for_each(|s| *s = c));
        for (i, &c) in seen.iter().enumerate().take(27).skip(3) {
            assert_eq!(c, (i / 5) % 3);
        }
    }

    #[test]
    fn nan_is_reported() {
        let x = [0.1f32, f32::NAN];
        let mut out = [0f32; 2];
        assert!(forward(
            &x,
            &params(&[1.0], None, ChannelLayout::per_tensor(2)),
            &mut out
        ));
    }

    #[test]
    fn backward_hand_values() {
        // s = 0.5, x/s = [-3, -1.2, 0.25, 5], grad = 1:
        // inside = [F, T, T, F]; gx = [0, 1, 1, 0]
        // LSQ d step = qn + (round(-1.2) + 1.2) + (0 - 0.25) + qp = -2 + 0.2 - 0.25 + 1 = -1.05
        // d offset = outside count = 2
        let x = [-1.5f32, -0.6, 0.125, 2.5];
        let g = [1f32; 4];
        let mut gx = [0f32; 4];
        let (ds, d_o) = backward(
            &x,
            &g,
            &params(&[0.5], None, ChannelLayout::per_tensor(4)),
            StepGrad::Lsq,
            &mut gx,
        );
        assert_eq!(gx, [0.0, 1.0, 1.0, 0.0]);
        assert!((ds[0] + 1.05).abs() < 1e-6, "{ds:?}");
        assert_eq!(d_o[0], 2.0);
        let (ds, _) = backward(
            &x,
            &g,
            &params(&[0.5], None, ChannelLayout::per_tensor(4)),
            StepGrad::Pact,
            &mut gx,
        );
        assert!((ds[0] + 1.0).abs() < 1e-12, "{ds:?}");
    }
}
