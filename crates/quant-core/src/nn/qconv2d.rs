//! `QConv2d`: a candle-nn `Conv2d` with a weight quantizer and an optional input quantizer.

use candle_core::{ModuleT, Tensor};
use candle_nn::{Conv2d, Conv2dConfig};

use super::LayerQuantizers;
use super::qat_config::LayerQuant;
use crate::{ParamStore, Quantizer, Result};

/// A 2-D convolution trained with fake quantization.
///
/// Weights live under candle-nn's names (`<prefix>.weight`, `<prefix>.bias`), so a
/// full-precision checkpoint loads unchanged; the quantizers under `<prefix>.wq.*` and
/// `<prefix>.aq.*`.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use candle_nn::{Conv2dConfig, VarMap};
/// use quarc_quant_core::{ParamStore, QConv2d, QatConfig, LayerPosition};
/// let varmap = VarMap::new();
/// let store = ParamStore::new(&varmap, DType::F32, &Device::Cpu);
/// let quant = QatConfig::lsq(2, 2)?.layer(LayerPosition::Middle);
/// let conv = QConv2d::new(3, 8, 3, Conv2dConfig { padding: 1, ..Default::default() }, true, &quant, &store.pp("conv"))?;
/// let x = Tensor::rand(0f32, 1.0, (2, 3, 8, 8), &Device::Cpu)?;
/// conv.calibrate(&x)?;
/// assert_eq!(conv.forward_t(&x, true)?.dims(), &[2, 8, 8, 8]);
/// # Ok::<(), quarc_quant_core::Error>(())
/// ```
#[derive(Debug)]
pub struct QConv2d {
    conv: Conv2d,
    q: LayerQuantizers,
}

impl QConv2d {
    /// A new conv with candle-nn's default initialisation (or the weights already in the
    /// store's map under `<prefix>.weight`).
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        config: Conv2dConfig,
        bias: bool,
        quant: &LayerQuant,
        store: &ParamStore<'_>,
    ) -> Result<Self> {
        let max = quarc_kernels::MAX_PAD_OR_DILATION;
        if in_channels == 0
            || out_channels == 0
            || kernel == 0
            || config.groups == 0
            || !in_channels.is_multiple_of(config.groups)
            || config.stride == 0
            || config.dilation == 0
            || config.padding > max
            || config.dilation > max
        {
            return Err(crate::Error::config(format!(
                "conv {in_channels}→{out_channels} k{kernel} stride {} padding {} dilation {} groups {}: channels, kernel, \
                 stride and dilation must be positive, channels divisible by groups, padding and dilation at most {max}",
                config.stride, config.padding, config.dilation, config.groups
            )));
        }
        let conv = if bias {
            candle_nn::conv2d(in_channels, out_channels, kernel, config, store.vb())?
        } else {
            candle_nn::conv2d_no_bias(in_channels, out_channels, kernel, config, store.vb())?
        };
        Self::wrap(conv, quant, store)
    }

    /// A quantized copy of an existing conv: its weight (and bias) are **copied** into `store`'s
    /// map under `<prefix>.weight` / `<prefix>.bias`, so training the result never changes `conv`
    /// (a variable of that name already in the map receives the values; another shape is an
    /// error).
    pub fn from_conv(conv: &Conv2d, quant: &LayerQuant, store: &ParamStore<'_>) -> Result<Self> {
        let weight = store.copy_into("weight", conv.weight())?;
        let bias = conv.bias().map(|b| store.copy_into("bias", b)).transpose()?;
        let copy = Conv2d::new(
            weight.as_tensor().clone(),
            bias.map(|b| b.as_tensor().clone()),
            *conv.config(),
        );
        Self::wrap(copy, quant, store)
    }

    /// Wraps `conv`, whose tensors already live in `store`'s map.
    fn wrap(conv: Conv2d, quant: &LayerQuant, store: &ParamStore<'_>) -> Result<Self> {
        let c = conv.config();
        let max = quarc_kernels::MAX_PAD_OR_DILATION;
        if c.stride == 0 || c.dilation == 0 || c.groups == 0 || c.padding > max || c.dilation > max {
            return Err(crate::Error::config(format!(
                "conv stride {}, padding {}, dilation {}, groups {}: stride, dilation and groups must be positive, \
                 padding and dilation at most {max}",
                c.stride, c.padding, c.dilation, c.groups
            )));
        }
        let (_, in_per_group, _, _) = conv.weight().dims4()?;
        let in_channels = in_per_group * conv.config().groups;
        let q = LayerQuantizers::build(quant, conv.weight().dims(), &[1, in_channels, 1, 1], store)?;
        Ok(Self { conv, q })
    }

    /// Initialises the weight quantizer from the weights and the input quantizer from `x`.
    /// An unsigned input quantizer and an `x` with negative values is an error
    /// ([`crate::Error::NegativeInput`]).
    pub fn calibrate(&self, x: &Tensor) -> Result<()> {
        self.q.calibrate(self.conv.weight(), x).map(|_| ())
    }

    /// The layer's parameter prefix.
    pub fn name(&self) -> &str {
        &self.q.name
    }

    /// The fake-quantized weight.
    pub fn quantized_weight(&self, train: bool) -> Result<Tensor> {
        self.weight_q().forward_t(self.conv.weight(), train)
    }

    /// Forward pass: quantize the input and the weight, then convolve. On CPU, a per-tensor LSQ
    /// input quantizer is applied while the input is packed into the convolution's GEMM operand
    /// (`quarc_kernels::conv2d_lsq_input`: the same values and gradients, one pass over the
    /// activations fewer); elsewhere the input is fake-quantized first.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.q.calibrate_if_active(self.conv.weight(), x)?;
        let w = self.quantized_weight(train)?;
        if let Some(fused) = match &self.q.activation {
            Some(a) => a.fusable_lsq(x, train)?,
            None => None,
        } && let Some((y, nan)) = quarc_kernels::conv2d_lsq_input(x, &w, &fused.step, fused.spec, &self.params())?
        {
            if nan {
                return Err(crate::Error::NonFinite {
                    what: "fake-quant input, step or offset (NaN)".into(),
                });
            }
            return Ok(match self.conv.bias() {
                Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?,
                None => y,
            });
        }
        let x = match &self.q.activation {
            Some(a) => a.forward_t(x, train)?,
            None => x.clone(),
        };
        conv2d_with_bias(&x, &w, self.conv.bias(), &self.params())
    }

    /// `act(conv(x) · scale + shift)` per output channel in one pass on CPU: the evaluation-mode
    /// BatchNorm (and activation) that follows this conv, folded into it (see
    /// [`quarc_kernels::conv2d_affine_act`]); the conv's bias, if any, is folded into `shift`.
    /// The same values as [`QConv2d::forward_t`] followed by the affine, bit for bit when the
    /// conv has no bias.
    pub fn forward_affine_act(
        &self,
        x: &Tensor,
        scale: &Tensor,
        shift: &Tensor,
        act: quarc_kernels::Activation,
        train: bool,
    ) -> Result<Tensor> {
        let (x, w) = self.quantized_operands(x, train)?;
        let shift = match self.conv.bias() {
            Some(b) => (shift + (b * scale)?)?,
            None => shift.clone(),
        };
        Ok(quarc_kernels::conv2d_affine_act(
            &x,
            &w,
            scale,
            &shift,
            act,
            &self.params(),
        )?)
    }

    /// The fake-quantized input and weight.
    fn quantized_operands(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        self.q.calibrate_if_active(self.conv.weight(), x)?;
        let x = match &self.q.activation {
            Some(a) => a.forward_t(x, train)?,
            None => x.clone(),
        };
        Ok((x, self.quantized_weight(train)?))
    }

    fn params(&self) -> quarc_kernels::Conv2dParams {
        let cfg = self.conv.config();
        quarc_kernels::Conv2dParams {
            padding: cfg.padding,
            stride: cfg.stride,
            dilation: cfg.dilation,
            groups: cfg.groups,
        }
    }

    /// The wrapped full-precision conv.
    pub fn conv(&self) -> &Conv2d {
        &self.conv
    }

    /// The weight quantizer.
    pub fn weight_quantizer(&self) -> &dyn Quantizer {
        self.q.weight.as_ref()
    }

    fn weight_q(&self) -> &dyn Quantizer {
        self.q.weight.as_ref()
    }

    /// The input quantizer, if any.
    pub fn activation_quantizer(&self) -> Option<&dyn Quantizer> {
        self.q.activation.as_deref()
    }
}

/// `conv2d(x, w) + bias` through quarc's CPU convolution engine (candle's conv on other devices
/// and dtypes); the one conv every layer and the integer export's reference forward share.
pub fn conv2d_with_bias(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    params: &quarc_kernels::Conv2dParams,
) -> Result<Tensor> {
    let y = quarc_kernels::conv2d(x, w, params)?;
    Ok(match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?,
        None => y,
    })
}

impl ModuleT for QConv2d {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        Ok(QConv2d::forward_t(self, xs, train)?)
    }
}
