//! Exporting trained quantized layers.

use candle_nn::BatchNorm;

use super::bn_fold::batch_norm_affine;
use super::file::{ActivationGrid, LayerExport, LayerKind};
use super::integer::{IntegerTensor, f32_vec};
use crate::{Error, QConv2d, QLinear, Quantizer, Result};

fn weight_codes(name: &str, q: &dyn Quantizer, w: &candle_core::Tensor) -> Result<IntegerTensor> {
    let qp = q.qparams()?.ok_or_else(|| {
        Error::config(format!(
            "layer `{name}` has a full-precision weight: nothing to export as integers"
        ))
    })?;
    IntegerTensor::quantize(w, &qp)
}

fn input_grid(q: Option<&dyn Quantizer>) -> Result<Option<ActivationGrid>> {
    let Some(q) = q else { return Ok(None) };
    let Some(qp) = q.qparams()? else { return Ok(None) };
    Ok(Some(ActivationGrid {
        range: qp.range,
        granularity: qp.granularity,
        scale: f32_vec(&qp.scale)?,
        offset: qp.offset.as_ref().map(f32_vec).transpose()?,
    }))
}

/// Exports a trained [`QConv2d`], optionally folding the BatchNorm that follows it (eval mode)
/// into a per-channel output multiplier and bias, so the weight codes keep their own grid.
pub fn export_conv2d(name: &str, layer: &QConv2d, bn: Option<&BatchNorm>) -> Result<LayerExport> {
    let conv = layer.conv();
    let weight = weight_codes(name, layer.weight_quantizer(), conv.weight())?;
    let out_c = weight.shape[0];
    let (bias, output_multiplier) = match bn {
        Some(bn) => {
            if bn.running_mean().dims() != [out_c] {
                return Err(Error::ShapeMismatch {
                    context: format!("BatchNorm after `{name}`"),
                    expected: vec![out_c],
                    got: bn.running_mean().dims().to_vec(),
                });
            }
            let (k, b) = batch_norm_affine(conv.bias(), bn)?;
            (Some(f32_vec(&b)?), Some(f32_vec(&k)?))
        }
        None => (conv.bias().map(f32_vec).transpose()?, None),
    };
    let c = conv.config();
    Ok(LayerExport {
        name: name.to_string(),
        kind: LayerKind::Conv2d {
            padding: c.padding,
            stride: c.stride,
            dilation: c.dilation,
            groups: c.groups,
        },
        weight,
        bias,
        output_multiplier,
        input: input_grid(layer.activation_quantizer())?,
    })
}

/// Exports a trained [`QLinear`].
pub fn export_linear(name: &str, layer: &QLinear) -> Result<LayerExport> {
    let lin = layer.linear();
    Ok(LayerExport {
        name: name.to_string(),
        kind: LayerKind::Linear,
        weight: weight_codes(name, layer.weight_quantizer(), lin.weight())?,
        bias: lin.bias().map(f32_vec).transpose()?,
        output_multiplier: None,
        input: input_grid(layer.activation_quantizer())?,
    })
}
