//! Quantized layers and the model-level QAT configuration.

mod qat_config;
mod qconv2d;
mod qlinear;

pub use qat_config::{LayerPolicy, LayerPosition, LayerQuant, QatConfig};
pub use qconv2d::{QConv2d, conv2d_with_bias};
pub use qlinear::QLinear;

/// Calibrates a layer's weight quantizer on its weight and its input quantizer (if any) on `x`,
/// and reports it as a `tracing` event.
fn calibrate_pair(
    weight_q: &dyn crate::Quantizer,
    act_q: Option<&dyn crate::Quantizer>,
    weight: &candle_core::Tensor,
    x: &candle_core::Tensor,
    layer: &str,
) -> crate::Result<()> {
    weight_q.calibrate(weight)?;
    if let Some(a) = act_q {
        a.calibrate(x)?;
    }
    tracing::debug!(
        layer,
        weight = weight_q.kind(),
        activation = act_q.map_or("none", |a| a.kind()),
        input = ?x.dims(),
        "calibrated"
    );
    Ok(())
}
