//! Straight-through-estimator fake-quant ops.
//!
//! Each op has a fused CPU kernel (one pass forward, closed-form one-pass backward, rayon across
//! chunks; f32 and f64) and a composed twin in [`reference`](mod@reference) built only from candle ops, which
//! is what CUDA, Metal and other dtypes run. [`Backend::Auto`] picks the kernel on CPU.
//!
//! All of them compute `y = s · clamp(round((x − o) / s), qn, qp) + o` with round half to even
//! (see [`crate::round_half_even`]) and the straight-through gradient:
//!
//! | | inside `qn ≤ (x−o)/s ≤ qp` (boundaries inside) | outside |
//! |---|---|---|
//! | `∂y/∂x` | 1 | 0 |
//! | `∂y/∂s` (LSQ, LSQ+) | `round(v) − v` | `qn` or `qp` |
//! | `∂y/∂s` (PACT) | 0 | `qn` or `qp` |
//! | `∂y/∂o` (LSQ+) | 0 | 1 |
//!
//! The step and offset gradients are multiplied by the gradient scale `g` (LSQ's
//! `1/√(N·Qp)`). NaN in the input, step or offset gives [`crate::Error::NonFinite`];
//! ±∞ inputs saturate to `qn`/`qp`.

mod fused;
pub(crate) use quarc_kernels::fake_quant as kernel;
pub mod reference;
mod spec;

pub use spec::{Granularity, STEP_EPS};

use candle_core::{DType, Tensor};
use kernel::StepGrad;
use spec::FakeQuantSpec;

use crate::{Error, QRange, Result};

/// Which implementation a fake-quant op runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// The fused kernel on CPU for f32/f64, the composed ops everywhere else.
    #[default]
    Auto,
    /// Always the composed candle ops.
    Composed,
}

/// Options of [`lsq_fake_quant`] and [`lsq_plus_fake_quant`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LsqOptions {
    /// Multiplier of the step (and offset) gradient; LSQ uses `1/√(N·Qp)`. Default 1.
    pub grad_scale: f64,
    /// Per-tensor (step of one element) or per-channel (one step per index of `axis`).
    pub granularity: Granularity,
    /// Fused kernel or composed ops.
    pub backend: Backend,
}

impl Default for LsqOptions {
    fn default() -> Self {
        Self {
            grad_scale: 1.0,
            granularity: Granularity::PerTensor,
            backend: Backend::Auto,
        }
    }
}

/// LSQ's gradient scale `1/√(n·Qp)` for `n` elements sharing one step.
///
/// ```
/// let r = quarc_quant_core::QRange::signed(4)?; // Qp = 7
/// assert!((quarc_quant_core::lsq_grad_scale(7 * 64, r) - 1.0 / 56.0).abs() < 1e-12);
/// # Ok::<(), quarc_quant_core::Error>(())
/// ```
pub fn lsq_grad_scale(n: usize, range: QRange) -> f64 {
    1.0 / ((n.max(1) as f64) * range.qp().max(1) as f64).sqrt()
}

pub(crate) fn validate(x: &Tensor, step: &Tensor, offset: Option<&Tensor>, spec: &FakeQuantSpec) -> Result<()> {
    if x.elem_count() == 0 {
        return Err(Error::Empty("fake-quant input has no elements".into()));
    }
    if !matches!(x.dtype(), DType::F16 | DType::BF16 | DType::F32 | DType::F64) {
        return Err(Error::UnsupportedDType {
            dtype: x.dtype(),
            context: "fake-quant input (needs a float dtype)".into(),
        });
    }
    spec.check_param(x, step, "step")?;
    if let Some(o) = offset {
        spec.check_param(x, o, "offset")?;
    }
    Ok(())
}

fn use_fused(x: &Tensor, backend: Backend) -> bool {
    backend == Backend::Auto && x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

fn run(x: &Tensor, step: &Tensor, offset: Option<&Tensor>, spec: FakeQuantSpec, backend: Backend) -> Result<Tensor> {
    validate(x, step, offset, &spec)?;
    if use_fused(x, backend) {
        fused::fake_quant_fused(x, step, offset, spec)
    } else {
        let out = reference::fake_quant_composed(x, step, offset, spec)?;
        check_finite_composed(&out)?;
        Ok(out)
    }
}

/// The composed path reports NaN like the fused kernel does (inputs that are NaN give NaN
/// outputs there; the fused kernel flags them while it runs).
fn check_finite_composed(out: &Tensor) -> Result<()> {
    let nan = out.ne(out)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
    if nan > 0.0 {
        return Err(Error::NonFinite {
            what: "fake-quant input, step or offset (NaN)".into(),
        });
    }
    Ok(())
}

/// LSQ fake quantization (Esser et al., ICLR 2020) with a learnable step.
///
/// # Shapes
/// `x`: any shape. `step`: one element (per-tensor) or `(C,)` with `C = x.dim(axis)`
/// (per-channel); same dtype as `x`.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use quarc_quant_core::{lsq_fake_quant, LsqOptions, QRange};
/// let x = Tensor::new(&[-1.5f32, -0.6, 0.125, 2.5], &Device::Cpu)?;
/// let step = Var::new(&[0.5f32], &Device::Cpu)?;
/// let y = lsq_fake_quant(&x, step.as_tensor(), QRange::signed(2)?, LsqOptions::default())?;
/// assert_eq!(y.to_vec1::<f32>()?, vec![-1.0, -0.5, 0.0, 0.5]);
/// // d(sum y)/d step = qn + (round(-1.2) + 1.2) + (0 − 0.25) + qp = −1.05
/// let grads = y.sum_all()?.backward()?;
/// let ds = grads.get(step.as_tensor()).unwrap().to_vec1::<f32>()?[0];
/// assert!((ds + 1.05).abs() < 1e-6);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn lsq_fake_quant(x: &Tensor, step: &Tensor, range: QRange, opts: LsqOptions) -> Result<Tensor> {
    let spec = FakeQuantSpec::new(range, opts.grad_scale, StepGrad::Lsq, opts.granularity);
    run(x, step, None, spec, opts.backend)
}

/// LSQ+ fake quantization (Bhalgat et al., CVPR-W 2020): LSQ with a learnable offset,
/// `y = s · clamp(round((x − o)/s), qn, qp) + o`.
///
/// # Shapes
/// As [`lsq_fake_quant`]; `offset` has the same shape as `step`.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use quarc_quant_core::{lsq_plus_fake_quant, LsqOptions, QRange};
/// // s = 0.5, o = −1, unsigned 2-bit [0, 3]: (x + 1)/0.5 = [0, 1.2, 7] → [0, 1, 3] → [−1, −0.5, 0.5]
/// let x = Tensor::new(&[-1.0f32, -0.4, 2.5], &Device::Cpu)?;
/// let (s, o) = (Var::new(&[0.5f32], &Device::Cpu)?, Var::new(&[-1.0f32], &Device::Cpu)?);
/// let y = lsq_plus_fake_quant(&x, s.as_tensor(), o.as_tensor(), QRange::unsigned(2)?, LsqOptions::default())?;
/// assert_eq!(y.to_vec1::<f32>()?, vec![-1.0, -0.5, 0.5]);
/// // the offset gradient is 1 for each element outside the range (here only 2.5)
/// let g = y.sum_all()?.backward()?;
/// assert_eq!(g.get(o.as_tensor()).unwrap().to_vec1::<f32>()?, vec![1.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn lsq_plus_fake_quant(
    x: &Tensor,
    step: &Tensor,
    offset: &Tensor,
    range: QRange,
    opts: LsqOptions,
) -> Result<Tensor> {
    let spec = FakeQuantSpec::new(range, opts.grad_scale, StepGrad::Lsq, opts.granularity);
    run(x, step, Some(offset), spec, opts.backend)
}

fn pact_with(x: &Tensor, alpha: &Tensor, bits: u32, backend: Backend) -> Result<Tensor> {
    let range = QRange::unsigned(bits)?;
    let spec = FakeQuantSpec::new(range, 1.0, StepGrad::Pact, Granularity::PerTensor);
    validate(x, alpha, None, &spec)?;
    run(x, &(alpha / range.qp() as f64)?, None, spec, backend)
}

fn fake_quant_with(
    x: &Tensor,
    scale: &Tensor,
    offset: Option<&Tensor>,
    range: QRange,
    granularity: Granularity,
    backend: Backend,
) -> Result<Tensor> {
    let spec = FakeQuantSpec::new(range, 1.0, StepGrad::Lsq, granularity);
    let offset = offset.map(|o| o.detach());
    run(x, &scale.detach(), offset.as_ref(), spec, backend)
}

/// PACT (Choi et al., 2018): clip activations to `[0, α]` with a learnable `α`, then quantize
/// uniformly onto `2^bits` levels: `y = s · round(clamp(x, 0, α) / s)` with `s = α / (2^bits − 1)`.
///
/// Gradients: `∂y/∂x = 1` on `[0, α]`, else 0; `∂y/∂α = 1` where `x > α` (PACT's estimator, the
/// rounding residual ignored), else 0.
///
/// # Shapes
/// `x`: any shape; `alpha`: one element, same dtype.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// let x = Tensor::new(&[-1.0f32, 0.4, 1.0, 5.0], &Device::Cpu)?;
/// let alpha = Var::new(&[3.0f32], &Device::Cpu)?;
/// // 2 bits: s = 3 / 3 = 1 → [0, 0, 1, 3]
/// let y = quarc_quant_core::pact_fake_quant(&x, alpha.as_tensor(), 2)?;
/// assert_eq!(y.to_vec1::<f32>()?, vec![0.0, 0.0, 1.0, 3.0]);
/// let g = y.sum_all()?.backward()?;
/// assert_eq!(g.get(alpha.as_tensor()).unwrap().to_vec1::<f32>()?, vec![1.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pact_fake_quant(x: &Tensor, alpha: &Tensor, bits: u32) -> Result<Tensor> {
    pact_with(x, alpha, bits, Backend::Auto)
}

/// Uniform fake quantization with a fixed (observed) scale and offset, straight-through on `x`
/// only: `y = s · clamp(round((x − o)/s), qn, qp) + o`. For a zero point `z`, pass
/// `o = −z·s`.
///
/// # Shapes
/// `scale` and `offset`: one element or `(C,)` along the granularity's axis.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use quarc_quant_core::{fake_quant, Granularity, QRange};
/// // per-channel (axis 0) 8-bit signed, scales [0.1, 1.0]
/// let x = Tensor::new(&[[0.26f32, -0.04], [2.6, 300.0]], &Device::Cpu)?;
/// let s = Tensor::new(&[0.1f32, 1.0], &Device::Cpu)?;
/// let y = fake_quant(&x, &s, None, QRange::signed(8)?, Granularity::PerChannel { axis: 0 })?;
/// let v = y.to_vec2::<f32>()?;
/// assert!((v[0][0] - 0.3).abs() < 1e-6 && v[0][1] == 0.0 && v[1] == vec![3.0, 127.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn fake_quant(
    x: &Tensor,
    scale: &Tensor,
    offset: Option<&Tensor>,
    range: QRange,
    granularity: Granularity,
) -> Result<Tensor> {
    fake_quant_with(x, scale, offset, range, granularity, Backend::Auto)
}
