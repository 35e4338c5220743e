//! Quantized layers and the model-level QAT configuration.

mod qat_config;
mod qconv2d;
mod qlinear;

pub use qat_config::{LayerPolicy, LayerPosition, LayerQuant, QatConfig};
pub use qconv2d::{QConv2d, conv2d_with_bias};
pub use qlinear::QLinear;
