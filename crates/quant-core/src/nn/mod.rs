//! Quantized layers and the model-level QAT configuration.

mod calibration;
mod qat_config;
mod qconv2d;
mod qlinear;

pub use calibration::{CalibratedLayer, Calibration, CalibrationReport};
pub use qat_config::{LayerPolicy, LayerPosition, LayerQuant, QatConfig};
pub use qconv2d::{QConv2d, conv2d_with_bias};
pub use qlinear::QLinear;

/// The quantizers of one layer, its name and the calibration switch it registered with: what
/// [`QConv2d`] and [`QLinear`] share.
#[derive(Debug)]
struct LayerQuantizers {
    name: String,
    weight: Box<dyn crate::Quantizer>,
    activation: Option<Box<dyn crate::Quantizer>>,
    calibration: Option<Calibration>,
}

impl LayerQuantizers {
    /// Builds the quantizers of `quant` under `store` (`<prefix>.wq`, `<prefix>.aq`) for a weight
    /// of shape `weight_dims` and an input of shape `input_dims`; registers the layer with the
    /// store's calibration switch when it has a quantizer.
    fn build(
        quant: &LayerQuant,
        weight_dims: &[usize],
        input_dims: &[usize],
        store: &crate::ParamStore<'_>,
    ) -> crate::Result<Self> {
        let weight = quant.weight.build(
            crate::Role::Weight,
            quant.weight.channels_for(weight_dims)?,
            &store.pp("wq"),
        )?;
        let activation = match &quant.activation {
            Some(a) => Some(a.build(crate::Role::Activation, a.channels_for(input_dims)?, &store.pp("aq"))?),
            None => None,
        };
        let name = store.prefix();
        let quantized = quant.weight != crate::QuantizerConfig::Identity || activation.is_some();
        let calibration = match store.calibration() {
            Some(c) if quantized => {
                c.register(&name)?;
                Some(c.clone())
            }
            _ => None,
        };
        Ok(Self {
            name,
            weight,
            activation,
            calibration,
        })
    }

    /// Calibrates on `weight` and `x` when a calibration pass is running and this layer was not
    /// reached yet in it.
    fn calibrate_if_active(&self, weight: &candle_core::Tensor, x: &candle_core::Tensor) -> crate::Result<()> {
        let Some(c) = &self.calibration else {
            return Ok(());
        };
        if !c.is_active() || c.is_done(&self.name)? {
            return Ok(());
        }
        let (lo, hi) = self.calibrate(weight, x)?;
        c.record(CalibratedLayer {
            name: self.name.clone(),
            weight: self.weight.kind(),
            activation: self.activation.as_ref().map(|a| a.kind()),
            input_shape: x.dims().to_vec(),
            input_range: (lo, hi),
        })
    }

    /// Calibrates the weight quantizer on `weight` and the input quantizer (if any) on `x`,
    /// reports it as a `tracing` event and returns the input's range. An unsigned input
    /// quantizer fed negative values is an [`crate::Error::NegativeInput`].
    fn calibrate(&self, weight: &candle_core::Tensor, x: &candle_core::Tensor) -> crate::Result<(f32, f32)> {
        let flat = x.flatten_all()?.to_dtype(candle_core::DType::F32)?;
        if flat.elem_count() == 0 {
            return Err(crate::Error::Empty(format!(
                "calibration input of layer `{}`",
                self.name
            )));
        }
        let (lo, hi) = (flat.min(0)?.to_scalar::<f32>()?, flat.max(0)?.to_scalar::<f32>()?);
        self.weight.calibrate(weight)?;
        if let Some(a) = &self.activation {
            a.calibrate(x)?;
            let unsigned = a.qparams()?.is_some_and(|q| q.range.qn() == 0);
            if unsigned && lo < 0.0 {
                return Err(crate::Error::NegativeInput {
                    layer: self.name.clone(),
                    min: lo,
                });
            }
        }
        tracing::debug!(
            layer = %self.name,
            weight = self.weight.kind(),
            activation = self.activation.as_ref().map_or("none", |a| a.kind()),
            input = ?x.dims(),
            "calibrated"
        );
        Ok((lo, hi))
    }
}
