//! Serializable quantizer configuration.

use serde::{Deserialize, Serialize};

use super::{
    Identity, Lsq, LsqConfig, LsqPlus, LsqPlusConfig, Pact, PactConfig, Quantizer, Role, Uniform, UniformConfig,
};
use crate::{Granularity, ParamStore, Result, Signedness, validate_bits};

/// Which quantizer to build, with its settings. Internally tagged for JSON/TOML:
/// `{"type": "lsq", "bits": 2, "signedness": "signed"}`.
///
/// ```
/// use quarc_quant_core::{QuantizerConfig, LsqConfig, Signedness};
/// let c = QuantizerConfig::Lsq(LsqConfig::new(2, Signedness::Unsigned));
/// let json = serde_json::to_string(&c).unwrap();
/// assert!(json.contains(r#""type":"lsq""#));
/// assert_eq!(serde_json::from_str::<QuantizerConfig>(&json).unwrap(), c);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum QuantizerConfig {
    /// Full precision.
    Identity,
    /// LSQ.
    Lsq(LsqConfig),
    /// LSQ+.
    LsqPlus(LsqPlusConfig),
    /// PACT (activations).
    Pact(PactConfig),
    /// Uniform with an observer.
    Uniform(UniformConfig),
}

impl QuantizerConfig {
    /// The bit width (`None` for identity).
    pub fn bits(&self) -> Option<u32> {
        match self {
            Self::Identity => None,
            Self::Lsq(c) => Some(c.bits),
            Self::LsqPlus(c) => Some(c.bits),
            Self::Pact(c) => Some(c.bits),
            Self::Uniform(c) => Some(c.bits),
        }
    }

    /// The same quantizer at another bit width (identity stays identity).
    pub fn with_bits(&self, bits: u32) -> Self {
        let mut c = self.clone();
        match &mut c {
            Self::Identity => {}
            Self::Lsq(x) => x.bits = bits,
            Self::LsqPlus(x) => x.bits = bits,
            Self::Pact(x) => x.bits = bits,
            Self::Uniform(x) => x.bits = bits,
        }
        c
    }

    /// The same quantizer with codes of the given signedness (LSQ, LSQ+, uniform). Use it for
    /// inputs that can be negative (after a linear projection rather than a ReLU). Identity and
    /// PACT (which clips at 0 by definition) are returned unchanged.
    pub fn with_signedness(&self, signedness: Signedness) -> Self {
        let mut c = self.clone();
        match &mut c {
            Self::Lsq(x) => x.signedness = signedness,
            Self::LsqPlus(x) => x.signedness = signedness,
            Self::Uniform(x) => x.signedness = signedness,
            Self::Identity | Self::Pact(_) => {}
        }
        c
    }

    /// Checks the settings without building anything.
    pub fn validate(&self) -> Result<()> {
        match self.bits() {
            Some(b) => validate_bits(b),
            None => Ok(()),
        }
    }

    /// The granularity (per tensor for identity and PACT).
    pub fn granularity(&self) -> Granularity {
        match self {
            Self::Lsq(c) => c.granularity,
            Self::LsqPlus(c) => c.granularity,
            Self::Uniform(c) => c.granularity,
            Self::Identity | Self::Pact(_) => Granularity::PerTensor,
        }
    }

    /// Builds the quantizer for a tensor in `role` with `channels` step-sharing groups
    /// (use [`QuantizerConfig::channels_for`]), its parameters under `store`'s prefix.
    pub fn build(&self, role: Role, channels: usize, store: &ParamStore<'_>) -> Result<Box<dyn Quantizer>> {
        self.validate()?;
        Ok(match self {
            Self::Identity => Box::new(Identity),
            Self::Lsq(c) => Box::new(Lsq::new(c.clone(), role, channels, store)?),
            Self::LsqPlus(c) => Box::new(LsqPlus::new(c.clone(), role, channels, store)?),
            Self::Pact(c) => Box::new(Pact::new(c.clone(), store)?),
            Self::Uniform(c) => Box::new(Uniform::new(c.clone(), channels, store)?),
        })
    }

    /// The number of steps for a tensor of shape `dims` under this granularity.
    pub fn channels_for(&self, dims: &[usize]) -> Result<usize> {
        match self.granularity() {
            Granularity::PerTensor => Ok(1),
            Granularity::PerChannel { axis } => dims
                .get(axis)
                .copied()
                .ok_or(crate::Error::InvalidAxis { axis, rank: dims.len() }),
        }
    }
}
