//! `QLinear`: a candle-nn `Linear` with a weight quantizer and an optional input quantizer.

use candle_core::{Module, ModuleT, Tensor};
use candle_nn::Linear;

use super::qat_config::LayerQuant;
use crate::{ParamStore, Quantizer, Result, Role};

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
    weight_q: Box<dyn Quantizer>,
    act_q: Option<Box<dyn Quantizer>>,
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
        Self::from_linear(linear, quant, store)
    }

    /// Wraps an existing layer.
    pub fn from_linear(linear: Linear, quant: &LayerQuant, store: &ParamStore<'_>) -> Result<Self> {
        let (_, in_features) = linear.weight().dims2()?;
        let weight_q = quant.weight.build(
            Role::Weight,
            quant.weight.channels_for(linear.weight().dims())?,
            &store.pp("wq"),
        )?;
        let act_q = match &quant.activation {
            Some(a) => Some(a.build(Role::Activation, a.channels_for(&[1, in_features])?, &store.pp("aq"))?),
            None => None,
        };
        Ok(Self {
            linear,
            weight_q,
            act_q,
        })
    }

    /// Initialises the weight quantizer from the weights and the input quantizer from `x`.
    pub fn calibrate(&self, x: &Tensor) -> Result<()> {
        super::calibrate_pair(
            self.weight_q.as_ref(),
            self.act_q.as_deref(),
            self.linear.weight(),
            x,
            "qlinear",
        )
    }

    /// The fake-quantized weight.
    pub fn quantized_weight(&self, train: bool) -> Result<Tensor> {
        self.weight_q.forward_t(self.linear.weight(), train)
    }

    /// Forward pass.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = match &self.act_q {
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
        self.weight_q.as_ref()
    }

    /// The input quantizer, if any.
    pub fn activation_quantizer(&self) -> Option<&dyn Quantizer> {
        self.act_q.as_deref()
    }
}

impl ModuleT for QLinear {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        Ok(QLinear::forward_t(self, xs, train)?)
    }
}
