//! What the model builder is told about one layer, and the per-layer overrides.

use quarc_quant_core::{LayerPosition, LayerQuant, validate_bits};

use crate::{Error, Result};

/// A square-kernel 2-D convolution: channels, kernel, stride, padding, groups, bias, and how its
/// input is quantized.
///
/// ```
/// use quarc_models::ConvSpec;
/// let s = ConvSpec::new(32, 64, 3).stride(2);
/// assert_eq!((s.padding, s.stride, s.groups, s.bias), (1, 2, 1, true)); // "same" padding by default
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel size (square).
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side (default `kernel / 2`).
    pub padding: usize,
    /// Channel groups (`in_channels` for a depthwise conv).
    pub groups: usize,
    /// Whether the conv has a bias (default yes, as candle-nn's `conv2d`; `ConvBn` drops it).
    pub bias: bool,
    /// Whether the input can be negative (then the input quantizer gets signed codes).
    pub signed_input: bool,
    /// The layer's place for the first/last-layer policy; `None`: from the build order (the
    /// first layer built is first, the last is last).
    pub position: Option<LayerPosition>,
}

impl ConvSpec {
    /// `in_channels → out_channels`, `kernel`×`kernel`, stride 1, "same" padding, one group, bias.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            padding: kernel / 2,
            groups: 1,
            bias: true,
            signed_input: false,
            position: None,
        }
    }

    /// With this stride.
    pub fn stride(self, stride: usize) -> Self {
        Self { stride, ..self }
    }

    /// With this padding.
    pub fn padding(self, padding: usize) -> Self {
        Self { padding, ..self }
    }

    /// With this many channel groups.
    pub fn groups(self, groups: usize) -> Self {
        Self { groups, ..self }
    }

    /// Without a bias.
    pub fn no_bias(self) -> Self {
        Self { bias: false, ..self }
    }

    /// The input can be negative: signed input codes.
    pub fn signed_input(self) -> Self {
        Self {
            signed_input: true,
            ..self
        }
    }

    /// At this position for the first/last-layer policy, whatever the build order says.
    pub fn position(self, position: LayerPosition) -> Self {
        Self {
            position: Some(position),
            ..self
        }
    }
}

/// A fully connected layer: sizes, bias, and how its input is quantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearSpec {
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Whether the layer has a bias (default yes).
    pub bias: bool,
    /// Whether the input can be negative (then the input quantizer gets signed codes).
    pub signed_input: bool,
    /// The layer's place for the first/last-layer policy; `None`: from the build order.
    pub position: Option<LayerPosition>,
}

impl LinearSpec {
    /// `in_features → out_features` with a bias.
    pub fn new(in_features: usize, out_features: usize) -> Self {
        Self {
            in_features,
            out_features,
            bias: true,
            signed_input: false,
            position: None,
        }
    }

    /// Without a bias.
    pub fn no_bias(self) -> Self {
        Self { bias: false, ..self }
    }

    /// The input can be negative: signed input codes.
    pub fn signed_input(self) -> Self {
        Self {
            signed_input: true,
            ..self
        }
    }

    /// At this position for the first/last-layer policy, whatever the build order says.
    pub fn position(self, position: LayerPosition) -> Self {
        Self {
            position: Some(position),
            ..self
        }
    }
}

/// What a per-layer override does to the layers whose names match its pattern.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerOverride {
    /// Keep the layer in full precision.
    KeepFp,
    /// The configured quantizers at other bit widths (2–8).
    Bits {
        /// Weight bits.
        weight: u32,
        /// Input bits.
        activation: u32,
    },
    /// These exact quantizers (another quantizer, granularity, signedness).
    Quantizers(LayerQuant),
}

impl LayerOverride {
    pub(crate) fn validate(&self) -> Result<()> {
        match self {
            Self::KeepFp => Ok(()),
            Self::Bits { weight, activation } => {
                validate_bits(*weight)?;
                Ok(validate_bits(*activation)?)
            }
            Self::Quantizers(q) => {
                q.weight.validate()?;
                Ok(q.activation.as_ref().map(|a| a.validate()).transpose().map(|_| ())?)
            }
        }
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters (dots included)
/// and `?` for one character; everything else matches itself.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None; // (pattern index after `*`, name index it matched to)
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi + 1, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The checked list of overrides: every pattern must match a layer of the model.
pub(crate) fn check_overrides(overrides: &[(String, LayerOverride)], layers: &[String]) -> Result<()> {
    for (pattern, o) in overrides {
        o.validate()?;
        if !layers.iter().any(|l| name_matches(pattern, l)) {
            return Err(Error::InvalidConfig(format!(
                "layer override `{pattern}` matches no layer; the model's layers are {layers:?}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_patterns_match_like_globs() {
        assert!(name_matches("fc", "fc"));
        assert!(!name_matches("fc", "fc2"));
        assert!(name_matches("layer1.*", "layer1.0.conv1.conv"));
        assert!(!name_matches("layer1.*", "layer2.0.conv1.conv"));
        assert!(name_matches("*.depthwise.*", "block3.depthwise.conv"));
        assert!(name_matches("block?.conv", "block7.conv"));
        assert!(!name_matches("block?.conv", "block12.conv"));
        assert!(name_matches("*", "anything"));
        assert!(name_matches("a*b*c", "a.x.b.y.c"));
        assert!(!name_matches("a*b*c", "a.x.b.y.d"));
    }

    #[test]
    fn an_override_that_matches_nothing_is_an_error_naming_it() {
        let layers = vec!["conv1.conv".to_string(), "fc".to_string()];
        assert!(check_overrides(&[("fc".into(), LayerOverride::KeepFp)], &layers).is_ok());
        let e = check_overrides(&[("fc2".into(), LayerOverride::KeepFp)], &layers).unwrap_err();
        assert!(e.to_string().contains("`fc2` matches no layer"), "{e}");
        let bits = LayerOverride::Bits {
            weight: 9,
            activation: 4,
        };
        assert!(check_overrides(&[("fc".into(), bits)], &layers).is_err());
    }
}
