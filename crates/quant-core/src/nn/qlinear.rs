//! `QLinear`: a candle-nn `Linear` with a weight quantizer and an optional input quantizer.

use candle_core::{Module, ModuleT, Tensor};
use candle_nn::Linear;

use super::LayerQuantizers;
use super::qat_config::LayerQuant;
use crate::{ParamStore, Quantizer, Result};

/// A fully connected layer trained with fake quantization. Names as in candle-nn
/// (`<prefix>.weight` `(out, in)`, `<prefix>.bias`); quantizers under `<prefix>.wq.*`,
/// `<prefix>.aq.*`.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use quarc_quant_core::{ParamStore, QLinear, QatConfig, LayerPosition};
/// let varmap = candle_nn::VarMap::new();
/// let store = ParamStore::new(&varmap, DType::F32, &Device::Cpu);
/// let fc = QLinear::new(16, 4, true, &QatConfig::lsq(4, 4)?.layer(LayerPosition::Middle), &store.pp("fc"))?;
/// let x = Tensor::rand(0f32, 1.0, (5, 16), &Device::Cpu)?;
/// fc.calibrate(&x)?;
/// assert_eq!(fc.forward_t(&x, false)?.dims(), &[5, 4]);
/// # Ok::<(), quarc_quant_core::Error>(())
/// ```
#[derive(Debug)]
pub struct QLinear {
    linear: Linear,
    q: LayerQuantizers,
}

impl QLinear {
    /// A new layer with candle-nn's default initialisation (or the weights already in the map).
    pub fn new(
        in_features: usize,
        out_features: usize,
        bias: bool,
        quant: &LayerQuant,
        store: &ParamStore<'_>,
    ) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(crate::Error::config(format!(
                "linear {in_features}→{out_features}: sizes must be positive"
            )));
        }
        let linear = if bias {
            candle_nn::linear(in_features, out_features, store.vb())?
        } else {
            candle_nn::linear_no_bias(in_features, out_features, store.vb())?
        };
        Self::wrap(linear, quant, store)
    }

    /// A quantized copy of an existing layer: its weight (and bias) are **copied** into
    /// `store`'s map under `<prefix>.weight` / `<prefix>.bias`, so training the result never
    /// changes `linear`.
    pub fn from_linear(linear: &Linear, quant: &LayerQuant, store: &ParamStore<'_>) -> Result<Self> {
        let weight = store.copy_into("weight", linear.weight())?;
        let bias = linear.bias().map(|b| store.copy_into("bias", b)).transpose()?;
        let copy = Linear::new(weight.as_tensor().clone(), bias.map(|b| b.as_tensor().clone()));
        Self::wrap(copy, quant, store)
    }

    /// Wraps `linear`, whose tensors already live in `store`'s map.
    fn wrap(linear: Linear, quant: &LayerQuant, store: &ParamStore<'_>) -> Result<Self> {
        let (_, in_features) = linear.weight().dims2()?;
        let q = LayerQuantizers::build(quant, linear.weight().dims(), &[1, in_features], store)?;
        Ok(Self { linear, q })
    }

    /// Initialises the weight quantizer from the weights and the input quantizer from `x`.
    /// An unsigned input quantizer and an `x` with negative values is an error
    /// ([`crate::Error::NegativeInput`]).
    pub fn calibrate(&self, x: &Tensor) -> Result<()> {
        self.q.calibrate(self.linear.weight(), x).map(|_| ())
    }

    /// The layer's parameter prefix.
    pub fn name(&self) -> &str {
        &self.q.name
    }

    /// The fake-quantized weight.
    pub fn quantized_weight(&self, train: bool) -> Result<Tensor> {
        self.q.weight.forward_t(self.linear.weight(), train)
    }

    /// Forward pass.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.q.calibrate_if_active(self.linear.weight(), x)?;
        let x = match &self.q.activation {
            Some(a) => a.forward_t(x, train)?,
            None => x.clone(),
        };
        let w = self.quantized_weight(train)?;
        Ok(Linear::new(w, self.linear.bias().cloned()).forward(&x)?)
    }

    /// The wrapped full-precision layer.
    pub fn linear(&self) -> &Linear {
        &self.linear
    }

    /// The weight quantizer.
    pub fn weight_quantizer(&self) -> &dyn Quantizer {
        self.q.weight.as_ref()
    }

    /// The input quantizer, if any.
    pub fn activation_quantizer(&self) -> Option<&dyn Quantizer> {
        self.q.activation.as_deref()
    }
}

impl ModuleT for QLinear {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        Ok(QLinear::forward_t(self, xs, train)?)
    }
}
