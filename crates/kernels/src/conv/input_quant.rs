//! A per-tensor LSQ fake-quant of a convolution's input, applied while the input is packed into
//! the GEMM operand (im2col) instead of as a separate pass that writes and re-reads `x_q`.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::fake_quant::quantize;

/// The integer grid and gradient scale of the input quantizer (`y = s · clamp(round(x/s), qn, qp)`,
/// step floored at `eps`; LSQ's step gradient multiplied by `grad_scale`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LsqInput {
    /// Lowest integer level.
    pub qn: f32,
    /// Highest integer level.
    pub qp: f32,
    /// Floor of the step size.
    pub eps: f32,
    /// LSQ's gradient scale `g` for the step.
    pub grad_scale: f64,
}

/// The grid with the step read from its tensor.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grid {
    pub step: f32,
    pub qn: f32,
    pub qp: f32,
}

impl Grid {
    pub fn new(step: f32, spec: &LsqInput) -> Self {
        Self {
            step: if step < spec.eps { spec.eps } else { step },
            qn: spec.qn,
            qp: spec.qp,
        }
    }
}

/// What the packing routines need: the grid and a flag raised when a NaN input (or step) is seen.
#[derive(Debug)]
pub(crate) struct Packing {
    grid: Grid,
    nan: AtomicBool,
}

impl Packing {
    pub fn new(grid: Grid) -> Self {
        Self {
            nan: AtomicBool::new(grid.step.is_nan()),
            grid,
        }
    }

    /// Copies `src` into `dst`, quantized.
    #[inline(always)]
    pub fn copy<'a>(&self, dst: &mut [f32], src: impl Iterator<Item = &'a f32>) {
        let Grid { step, qn, qp } = self.grid;
        let mut nan = false;
        for (d, v) in dst.iter_mut().zip(src) {
            nan |= v.is_nan();
            *d = quantize(*v, step, qn, qp);
        }
        if nan {
            self.nan.store(true, Ordering::Relaxed);
        }
    }

    /// Quantizes `v` in place.
    #[inline(always)]
    pub fn quantize_in_place(&self, v: &mut [f32]) {
        let Grid { step, qn, qp } = self.grid;
        let mut nan = false;
        for x in v.iter_mut() {
            nan |= x.is_nan();
            *x = quantize(*x, step, qn, qp);
        }
        if nan {
            self.nan.store(true, Ordering::Relaxed);
        }
    }

    /// The grid it quantizes to.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// Whether a NaN was seen.
    pub fn saw_nan(&self) -> bool {
        self.nan.load(Ordering::Relaxed)
    }
}

/// `dst = src` or its quantized copy.
#[inline(always)]
pub(crate) fn copy_packed<'a>(q: Option<&Packing>, dst: &mut [f32], src: impl Iterator<Item = &'a f32>) {
    match q {
        None => dst.iter_mut().zip(src).for_each(|(d, v)| *d = *v),
        Some(q) => q.copy(dst, src),
    }
}
