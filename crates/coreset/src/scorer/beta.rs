//! β(t) schedules for annealed score mixing.

use quarc_base::Progress;
use serde::{Deserialize, Serialize};

/// The weight β(t) of the first score in [`crate::Annealed`], with `t` the 0-based epoch and `E`
/// the number of epochs.
///
/// ```
/// use quarc_coreset::BetaSchedule;
/// use quarc_base::Progress;
/// let half = Progress::new(50, 100);
/// assert!((BetaSchedule::PaperCosine.beta(&half) - 0.5f64.sqrt()).abs() < 1e-12); // cos(π/4)
/// assert!((BetaSchedule::CodeCosine.beta(&half) - 0.5).abs() < 1e-12);            // ½(1 + cos(π/2))
/// assert_eq!(BetaSchedule::Linear.beta(&half), 0.5);
/// assert_eq!(BetaSchedule::Constant(0.3).beta(&half), 0.3);
/// assert_eq!(BetaSchedule::PaperCosine.beta(&Progress::new(0, 100)), 1.0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum BetaSchedule {
    /// `cos(πt / 2E)`: the ACS paper (default).
    #[default]
    PaperCosine,
    /// `½(1 + cos(πt / E))`: the official ACS code's `--adaptive cosine`.
    CodeCosine,
    /// `1 − t/E` (the ACS code's CLI default).
    Linear,
    /// `1 − (t/E)²`.
    Quadratic,
    /// `1 − √(t/E)`.
    Sqrt,
    /// A constant weight in [0, 1].
    Constant(f64),
}

impl BetaSchedule {
    /// β at `progress`, clamped to [0, 1].
    pub fn beta(&self, progress: &Progress) -> f64 {
        let r = progress.fraction();
        let b = match self {
            BetaSchedule::PaperCosine => (std::f64::consts::FRAC_PI_2 * r).cos(),
            BetaSchedule::CodeCosine => 0.5 * (1.0 + (std::f64::consts::PI * r).cos()),
            BetaSchedule::Linear => 1.0 - r,
            BetaSchedule::Quadratic => 1.0 - r * r,
            BetaSchedule::Sqrt => 1.0 - r.sqrt(),
            BetaSchedule::Constant(w) => *w,
        };
        b.clamp(0.0, 1.0)
    }
}
