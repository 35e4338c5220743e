//! `QatConfig`: which quantizers a model's layers get, and the first/last-layer policy.

use serde::{Deserialize, Serialize};

use crate::{Error, LsqConfig, QuantizerConfig, Result, Signedness};

/// What happens to the first or last layer of a model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerPolicy {
    /// Full precision weights and inputs (the usual choice for 2–4-bit QAT).
    #[default]
    KeepFp,
    /// The configured quantizers at 8 bits.
    EightBit,
    /// The configured quantizers at the configured bit widths.
    Quantize,
}

/// Where a layer sits in the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerPosition {
    /// The first layer (sees the image).
    First,
    /// Any layer in between.
    Middle,
    /// The last layer (produces the logits).
    Last,
}

/// The quantizers of one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerQuant {
    /// Weight quantizer.
    pub weight: QuantizerConfig,
    /// Input-activation quantizer; `None` leaves the input in full precision.
    pub activation: Option<QuantizerConfig>,
}

impl LayerQuant {
    /// A full-precision layer.
    pub fn full_precision() -> Self {
        Self {
            weight: QuantizerConfig::Identity,
            activation: None,
        }
    }
}

/// Quantization-aware-training configuration of a model (serde: JSON or TOML).
///
/// ```
/// use quarc_quant_core::{QatConfig, LayerPosition};
/// let cfg = QatConfig::lsq(2, 2)?;
/// assert_eq!(cfg.layer(LayerPosition::Middle).weight.bits(), Some(2));
/// assert_eq!(cfg.layer(LayerPosition::First).weight.bits(), None); // first layer kept FP
/// let json = serde_json::to_string(&cfg).unwrap();
/// assert_eq!(serde_json::from_str::<QatConfig>(&json).unwrap(), cfg);
/// # Ok::<(), quarc_quant_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QatConfig {
    /// Quantizer for weights of quantized layers.
    pub weight: QuantizerConfig,
    /// Quantizer for the inputs of quantized layers (`identity` for weight-only QAT).
    pub activation: QuantizerConfig,
    /// Policy for the first layer.
    pub first_layer: LayerPolicy,
    /// Policy for the last layer.
    pub last_layer: LayerPolicy,
}

impl Default for QatConfig {
    fn default() -> Self {
        Self {
            weight: QuantizerConfig::Lsq(LsqConfig::new(4, Signedness::Signed)),
            activation: QuantizerConfig::Lsq(LsqConfig::new(4, Signedness::Unsigned)),
            first_layer: LayerPolicy::KeepFp,
            last_layer: LayerPolicy::KeepFp,
        }
    }
}

impl QatConfig {
    /// LSQ with `w_bits` signed weights and `a_bits` unsigned (post-ReLU) activations, per
    /// tensor; first and last layer in full precision.
    pub fn lsq(w_bits: u32, a_bits: u32) -> Result<Self> {
        let cfg = Self {
            weight: QuantizerConfig::Lsq(LsqConfig::new(w_bits, Signedness::Signed)),
            activation: QuantizerConfig::Lsq(LsqConfig::new(a_bits, Signedness::Unsigned)),
            ..Default::default()
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<()> {
        self.weight.validate()?;
        self.activation.validate()?;
        if matches!(self.weight, QuantizerConfig::Pact(_)) {
            return Err(Error::config(
                "PACT clips to [0, α]: it is an activation quantizer, not a weight quantizer",
            ));
        }
        Ok(())
    }

    /// The quantizers for a layer at `position`.
    pub fn layer(&self, position: LayerPosition) -> LayerQuant {
        let activation = match self.activation {
            QuantizerConfig::Identity => None,
            ref a => Some(a.clone()),
        };
        let policy = match position {
            LayerPosition::First => self.first_layer,
            LayerPosition::Middle => LayerPolicy::Quantize,
            LayerPosition::Last => self.last_layer,
        };
        match policy {
            LayerPolicy::KeepFp => LayerQuant::full_precision(),
            LayerPolicy::Quantize => LayerQuant {
                weight: self.weight.clone(),
                // The first layer sees the image: its input stays as given.
                activation: if position == LayerPosition::First {
                    None
                } else {
                    activation
                },
            },
            LayerPolicy::EightBit => LayerQuant {
                weight: self.weight.with_bits(8),
                activation: if position == LayerPosition::First {
                    None
                } else {
                    activation.map(|a| a.with_bits(8))
                },
            },
        }
    }
}
