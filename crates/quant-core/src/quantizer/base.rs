//! The `Quantizer` trait and the parameters it exports.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::{Granularity, QRange, Result};

/// Whether a quantizer quantizes weights or activations. It decides LSQ's gradient-scale `N`
/// (activations count elements per sample) and the usual signedness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A layer's weight tensor.
    Weight,
    /// An activation (a layer's input), batch on axis 0.
    Activation,
}

/// The quantization grid of a calibrated quantizer: `x ≈ scale · code + offset`,
/// `code ∈ [range.qn(), range.qp()]`, rounding half to even.
#[derive(Clone, Debug)]
pub struct QParams {
    /// Step size: one element or `(C,)`.
    pub scale: Tensor,
    /// Offset, same shape as `scale`; `None` means zero.
    pub offset: Option<Tensor>,
    /// The integer range.
    pub range: QRange,
    /// Which elements share a scale.
    pub granularity: Granularity,
}

/// A fake quantizer: forward rounds onto an integer grid and dequantizes, backward follows a
/// straight-through estimator. Object safe, `ModuleT`-like (`train` selects training
/// behaviour: observers update, first-batch init may run).
///
/// # Implementing your own
/// ```
/// use candle_core::{Device, Tensor};
/// use quarc_quant_core::{Quantizer, QParams, QRange, Granularity, Result};
///
/// /// Rounds to a fixed grid of 0.25, straight-through.
/// #[derive(Debug)]
/// struct QuarterGrid;
/// impl Quantizer for QuarterGrid {
///     fn kind(&self) -> &'static str { "quarter_grid" }
///     fn forward_t(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
///         let scale = Tensor::new(&[0.25f32], x.device())?;
///         quarc_quant_core::fake_quant(x, &scale, None, QRange::signed(8)?, Granularity::PerTensor)
///     }
///     fn calibrate(&self, _x: &Tensor) -> Result<()> { Ok(()) }
///     fn is_calibrated(&self) -> bool { true }
///     fn qparams(&self) -> Result<Option<QParams>> { Ok(None) }
/// }
/// let q: Box<dyn Quantizer> = Box::new(QuarterGrid);
/// let y = q.forward_t(&Tensor::new(&[0.3f32, -0.7], &Device::Cpu)?, true)?;
/// assert_eq!(y.to_vec1::<f32>()?, vec![0.25, -0.75]);
/// # Ok::<(), quarc_quant_core::Error>(())
/// ```
pub trait Quantizer: std::fmt::Debug + Send + Sync {
    /// Short name of the method (`"lsq"`, `"pact"`, …).
    fn kind(&self) -> &'static str;

    /// Fake-quantizes `x`.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor>;

    /// Initialises the quantizer's parameters from data (a weight tensor, or a batch of
    /// activations). Calling it again re-initialises.
    fn calibrate(&self, x: &Tensor) -> Result<()>;

    /// Whether the parameters are initialised (a forward pass before that is an error,
    /// unless the quantizer was configured to initialise on its first training batch).
    fn is_calibrated(&self) -> bool;

    /// The grid, for export; `None` for quantizers that do not quantize (identity).
    fn qparams(&self) -> Result<Option<QParams>>;

    /// A per-tensor LSQ grid that a convolution may apply to its input while packing it (see
    /// [`crate::QConv2d`] and `quarc_kernels::conv2d_lsq_input`), after the checks and the
    /// calibration that [`Quantizer::forward_t`] does; `None` (the default) when this quantizer
    /// cannot be fused that way, and the caller runs [`Quantizer::forward_t`] instead.
    fn fusable_lsq(&self, x: &Tensor, train: bool) -> Result<Option<FusableLsq>> {
        let _ = (x, train);
        Ok(None)
    }
}

/// What a convolution needs to apply a per-tensor LSQ quantizer while packing its input.
#[derive(Clone, Debug)]
pub struct FusableLsq {
    /// The learnable step (one element); gradients flow to it through the fused op.
    pub step: Tensor,
    /// The integer grid, step floor and gradient scale.
    pub spec: quarc_kernels::LsqInput,
}
