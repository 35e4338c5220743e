//! Composed fake-quant built only from candle ops: the reference the fused kernels are tested
//! against, and the path that runs on CUDA and Metal (and for dtypes the kernels lack).
//!
//! Every function here has a fast twin in [`crate::ste`] with the same signature and the same
//! results: forward bit for bit, gradients to rounding error.

use candle_core::Tensor;

use super::kernel::StepGrad;
use super::spec::{FakeQuantSpec, STEP_EPS};
use super::{Backend, Granularity, LsqOptions};
use crate::{QRange, Result, round_half_even};

/// `a.detach() + (b − b.detach())`: the value of `a`, the gradient of `b`. The forward value is
/// exactly `a` (the second term is an exact zero), which keeps the composed path bit-exact.
fn value_of_grad_of(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    a.detach() + (b - b.detach())?
}

/// The composed fake-quant shared by all public reference functions.
pub(crate) fn fake_quant_composed(
    x: &Tensor,
    step: &Tensor,
    offset: Option<&Tensor>,
    spec: FakeQuantSpec,
) -> Result<Tensor> {
    let bshape = spec.broadcast_shape(x.shape())?;
    // Step: forward max(step, eps), gradient straight through, scaled by g.
    let scaled = (step * spec.grad_scale)?;
    let step = value_of_grad_of(&step.maximum(STEP_EPS)?, &scaled)?.reshape(bshape.as_slice())?;
    let offset = match offset {
        Some(o) => Some(value_of_grad_of(o, &(o * spec.grad_scale)?)?.reshape(bshape.as_slice())?),
        None => None,
    };
    let shifted = match &offset {
        Some(o) => x.broadcast_sub(o)?,
        None => x.clone(),
    };
    let v = shifted.broadcast_div(&step)?;
    // Inside the range (boundaries included) the gradient flows; outside, v is a constant.
    let inside = v.ge(spec.qn)?.mul(&v.le(spec.qp)?)?;
    let clamped = v.detach().clamp(spec.qn, spec.qp)?;
    let v_c = inside.where_cond(&v, &clamped)?;
    let rounded = round_half_even(&v_c.detach())?;
    let out = match spec.step_grad {
        // Straight-through rounding: value round(v_c), gradient of v_c.
        StepGrad::Lsq => value_of_grad_of(&rounded, &v_c)?.broadcast_mul(&step)?,
        // PACT: the step gradient ignores the rounding residual, i.e. d/ds of s·v_c.
        StepGrad::Pact => value_of_grad_of(&rounded.broadcast_mul(&step)?, &v_c.broadcast_mul(&step)?)?,
    };
    Ok(match &offset {
        Some(o) => out.broadcast_add(o)?,
        None => out,
    })
}

/// Composed LSQ fake-quant (Esser et al. 2020); see [`crate::lsq_fake_quant`].
pub fn lsq_fake_quant_slow(x: &Tensor, step: &Tensor, range: QRange, opts: LsqOptions) -> Result<Tensor> {
    crate::lsq_fake_quant(
        x,
        step,
        range,
        LsqOptions {
            backend: Backend::Composed,
            ..opts
        },
    )
}

/// Composed LSQ+ fake-quant (Bhalgat et al. 2020); see [`crate::lsq_plus_fake_quant`].
pub fn lsq_plus_fake_quant_slow(
    x: &Tensor,
    step: &Tensor,
    offset: &Tensor,
    range: QRange,
    opts: LsqOptions,
) -> Result<Tensor> {
    crate::lsq_plus_fake_quant(
        x,
        step,
        offset,
        range,
        LsqOptions {
            backend: Backend::Composed,
            ..opts
        },
    )
}

/// Composed PACT fake-quant (Choi et al. 2018); see [`crate::pact_fake_quant`].
pub fn pact_fake_quant_slow(x: &Tensor, alpha: &Tensor, bits: u32) -> Result<Tensor> {
    super::pact_with(x, alpha, bits, Backend::Composed)
}

/// Composed uniform fake-quant with a fixed scale and offset; see [`crate::fake_quant`].
pub fn fake_quant_slow(
    x: &Tensor,
    scale: &Tensor,
    offset: Option<&Tensor>,
    range: QRange,
    granularity: Granularity,
) -> Result<Tensor> {
    super::fake_quant_with(x, scale, offset, range, granularity, Backend::Composed)
}
