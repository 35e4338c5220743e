//! PACT: parameterized clipping activation (Choi et al., 2018).

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use super::stats::{CalibrationFlag, at_least, check_finite, ensure_calibrated, not_calibrated};
use super::{InitMode, QParams, Quantizer};
use crate::{Error, Granularity, ParamStore, QRange, Result, pact_fake_quant};

/// How PACT's clipping level α is initialised.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum PactInit {
    /// The maximum of the calibration batch.
    Max,
    /// A fixed value (the PACT paper uses 10).
    Constant(f64),
}

/// Configuration of a [`Pact`] quantizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PactConfig {
    /// Bit width, 2 to 8 (unsigned codes `[0, 2^b − 1]`).
    pub bits: u32,
    /// Initial α.
    pub alpha_init: PactInit,
    /// When α is initialised.
    pub init: InitMode,
}

impl Default for PactConfig {
    fn default() -> Self {
        Self {
            bits: 4,
            alpha_init: PactInit::Max,
            init: InitMode::Explicit,
        }
    }
}

/// PACT activation quantizer with a learnable clipping level α (variable `alpha`, one
/// element): `y = s · round(clamp(x, 0, α)/s)`, `s = α/(2^b − 1)`; see [`pact_fake_quant`].
#[derive(Debug)]
pub struct Pact {
    name: String,
    config: PactConfig,
    range: QRange,
    alpha: Var,
    calibrated: CalibrationFlag,
}

impl Pact {
    /// A PACT quantizer with α stored as `<prefix>.alpha`.
    pub fn new(config: PactConfig, store: &ParamStore<'_>) -> Result<Self> {
        let range = QRange::unsigned(config.bits)?;
        if let PactInit::Constant(a) = config.alpha_init
            && !(a.is_finite() && a > 0.0)
        {
            return Err(Error::config(format!(
                "PACT alpha init must be finite and > 0, got {a}"
            )));
        }
        Ok(Self {
            name: store.prefix(),
            range,
            alpha: store.var("alpha", 1, 0.0)?,
            config,
            calibrated: CalibrationFlag::default(),
        })
    }

    /// The clipping-level variable.
    pub fn alpha(&self) -> &Var {
        &self.alpha
    }
}

impl Quantizer for Pact {
    fn kind(&self) -> &'static str {
        "pact"
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        ensure_calibrated(self, x, train, self.config.init, &self.name)?;
        pact_fake_quant(x, self.alpha.as_tensor(), self.config.bits)
    }

    fn calibrate(&self, x: &Tensor) -> Result<()> {
        check_finite(x, &format!("calibration data of pact `{}`", self.name))?;
        let alpha = match self.config.alpha_init {
            PactInit::Max => at_least(&x.detach().flatten_all()?.max(0)?.reshape(1)?, 1e-8)?,
            PactInit::Constant(a) => Tensor::new(&[a], x.device())?,
        };
        self.alpha.set(&alpha.to_dtype(self.alpha.dtype())?)?;
        self.calibrated.set();
        Ok(())
    }

    fn is_calibrated(&self) -> bool {
        self.calibrated.check(&self.alpha)
    }

    fn qparams(&self) -> Result<Option<QParams>> {
        if !self.is_calibrated() {
            return Err(not_calibrated(self, &self.name));
        }
        Ok(Some(QParams {
            scale: (self.alpha.as_tensor() / self.range.qp() as f64)?,
            offset: None,
            range: self.range,
            granularity: Granularity::PerTensor,
        }))
    }
}
