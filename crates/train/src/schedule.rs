//! Learning-rate schedules, stepped once per epoch.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The shape of the learning rate over the run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LrSchedule {
    /// Constant.
    Constant,
    /// Cosine annealing to `eta_min` over the run (`T_max` = number of epochs, not the ACS
    /// code's 100-of-120 mismatch).
    Cosine {
        /// Final learning rate.
        eta_min: f64,
    },
    /// `lr · (1 − epoch/E)`.
    Linear,
    /// Multiply by `gamma` every `every` epochs.
    Step {
        /// Period.
        every: usize,
        /// Factor.
        gamma: f64,
    },
}

/// A schedule with an optional linear warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrPlan {
    /// Base learning rate.
    pub base: f64,
    /// Shape after warm-up.
    pub schedule: LrSchedule,
    /// Warm-up epochs (linear from base/warmup to base).
    pub warmup_epochs: usize,
}

impl LrPlan {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !(self.base.is_finite() && self.base > 0.0) {
            return Err(Error::InvalidConfig(format!(
                "learning rate must be > 0, got {}",
                self.base
            )));
        }
        if let LrSchedule::Step { every: 0, .. } = self.schedule {
            return Err(Error::InvalidConfig("step schedule needs every ≥ 1".into()));
        }
        Ok(())
    }

    /// The learning rate of `epoch` (0-based) in a run of `epochs`.
    ///
    /// ```
    /// use quarc_train::{LrPlan, LrSchedule};
    /// let p = LrPlan { base: 0.1, schedule: LrSchedule::Cosine { eta_min: 0.0 }, warmup_epochs: 0 };
    /// assert_eq!(p.lr(0, 10), 0.1);
    /// assert!((p.lr(5, 10) - 0.05).abs() < 1e-12);
    /// let w = LrPlan { warmup_epochs: 2, ..p };
    /// assert!((w.lr(0, 10) - 0.05).abs() < 1e-12);
    /// ```
    pub fn lr(&self, epoch: usize, epochs: usize) -> f64 {
        if epoch < self.warmup_epochs {
            return self.base * (epoch + 1) as f64 / self.warmup_epochs as f64;
        }
        let e = epochs.max(1) as f64;
        let t = epoch as f64;
        match self.schedule {
            LrSchedule::Constant => self.base,
            LrSchedule::Cosine { eta_min } => {
                eta_min + 0.5 * (self.base - eta_min) * (1.0 + (std::f64::consts::PI * t / e).cos())
            }
            LrSchedule::Linear => self.base * (1.0 - t / e).max(0.0),
            LrSchedule::Step { every, gamma } => self.base * gamma.powi((epoch / every.max(1)) as i32),
        }
    }
}
