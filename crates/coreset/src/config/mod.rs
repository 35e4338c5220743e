//! The whole coreset as data: scorer, selector, budget and schedule, with named presets.

mod preset;
mod scorer;

pub use preset::{CCS_BINS, CCS_PRUNE_FRACTION, PRESETS, RECOMMENDED_PRESET};
pub use scorer::{ScorerConfig, WeightedPart};

use serde::{Deserialize, Serialize};

use crate::{
    Budget, CandidatePool, ClassBalanced, Coreset, Direction, Error, RandomSelector, Result, Rs2, Scorer,
    SelectionSchedule, Selector, Stratified, TopK,
};

/// How the subset is taken from the scores. Tagged by `type`; unknown fields are errors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SelectorConfig {
    /// The highest (or lowest) scores.
    TopK {
        /// Which end to keep.
        keep: Direction,
    },
    /// Coverage-centric selection (CCS): prune the hardest share, spread the budget over strata.
    Stratified {
        /// Number of equal-width score strata (1 ..= 10 000).
        bins: usize,
        /// Hardest share dropped first, in [0, 1).
        prune_fraction: f64,
        /// Which end counts as hardest.
        keep: Direction,
    },
    /// Uniformly at random (scores ignored).
    Random {},
    /// RS2: a fresh random subset at every selection, without replacement across selections.
    Rs2 {},
}

/// When the coreset is re-selected.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleConfig {
    /// Once, before the first epoch.
    OneShot {},
    /// Every `epochs` epochs (≥ 1) from epoch 0.
    Every {
        /// The period R.
        epochs: usize,
    },
}

/// A coreset: what [`CoresetConfig::build`] turns into a [`Coreset`]. Serialisable (JSON), with
/// unknown fields rejected at every level and [`CoresetConfig::validate`] naming any bad value.
///
/// ```
/// use quarc_coreset::CoresetConfig;
/// let acs = CoresetConfig::preset("acs", 0.1, 5)?;                 // a named preset …
/// let json = serde_json::to_string(&acs).unwrap();
/// let back: CoresetConfig = serde_json::from_str(&json).unwrap();  // … is plain data
/// assert_eq!(back, acs);
/// let labels: Vec<u32> = (0..100).map(|i| i % 10).collect();
/// let coreset = back.build(labels, 10, /* seed */ 0)?;
/// assert!(coreset.needs().reference);                              // DS reads the FP reference
/// assert!(CoresetConfig::preset("acs", 1.5, 5).is_err());           // fraction outside (0, 1]
/// # Ok::<(), quarc_coreset::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoresetConfig {
    /// The per-sample score.
    pub scorer: ScorerConfig,
    /// How the subset is taken from the scores.
    pub selector: SelectorConfig,
    /// Apply the selector inside each class with `round(f·n_c)` samples (at least one).
    pub class_balanced: bool,
    /// How many samples.
    pub budget: Budget,
    /// When to re-select.
    pub schedule: ScheduleConfig,
    /// Score only a fresh random candidate pool of this many times the budget at each
    /// selection (none: score the whole data set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<CandidatePool>,
}

/// The largest stratum count accepted: allocation follows it, so a typo must not become gigabytes.
pub const MAX_BINS: usize = 10_000;

impl CoresetConfig {
    /// Checks every value, nested ones included, before any work starts.
    pub fn validate(&self) -> Result<()> {
        self.scorer.validate()?;
        match self.budget {
            Budget::Fraction(f) if !(f > 0.0 && f <= 1.0) => {
                return Err(Error::InvalidBudget(format!(
                    "budget fraction must be in (0, 1], got {f}"
                )));
            }
            Budget::Count(0) => return Err(Error::InvalidBudget("budget count must be ≥ 1".into())),
            _ => {}
        }
        if let SelectorConfig::Stratified {
            bins, prune_fraction, ..
        } = self.selector
        {
            if bins == 0 || bins > MAX_BINS {
                return Err(Error::InvalidConfig(format!(
                    "selector stratified: bins must be in 1..={MAX_BINS}, got {bins}"
                )));
            }
            if !(0.0..1.0).contains(&prune_fraction) {
                return Err(Error::InvalidConfig(format!(
                    "selector stratified: prune_fraction must be in [0, 1), got {prune_fraction}"
                )));
            }
        }
        if let ScheduleConfig::Every { epochs: 0 } = self.schedule {
            return Err(Error::InvalidConfig("schedule every: epochs must be ≥ 1".into()));
        }
        if let Some(pool) = &self.pool {
            pool.validate()?;
        }
        Ok(())
    }

    /// The coreset over a data set with these labels.
    pub fn build(&self, labels: Vec<u32>, num_classes: usize, seed: u64) -> Result<Coreset> {
        self.validate()?;
        let scorer = self.scorer.build(labels.len(), seed)?;
        self.build_with_scorer(scorer, labels, num_classes, seed)
    }

    /// The coreset with this configuration's selector, budget, schedule, class balance and pool
    /// around a scorer of the caller's (`self.scorer` is ignored): a user's own [`Scorer`], or
    /// [`crate::GivenScores`] computed before training.
    pub fn build_with_scorer(
        &self,
        scorer: Box<dyn Scorer>,
        labels: Vec<u32>,
        num_classes: usize,
        seed: u64,
    ) -> Result<Coreset> {
        self.validate()?;
        let inner: Box<dyn Selector> = match self.selector {
            SelectorConfig::TopK { keep } => Box::new(TopK { direction: keep }),
            SelectorConfig::Stratified {
                bins,
                prune_fraction,
                keep,
            } => Box::new(Stratified::new(keep, bins, prune_fraction)?),
            SelectorConfig::Random {} => Box::new(RandomSelector),
            SelectorConfig::Rs2 {} => Box::new(Rs2),
        };
        let selector: Box<dyn Selector> = if self.class_balanced {
            Box::new(ClassBalanced::boxed(inner))
        } else {
            inner
        };
        let schedule = match self.schedule {
            ScheduleConfig::OneShot {} => SelectionSchedule::one_shot(),
            ScheduleConfig::Every { epochs } => SelectionSchedule::every(epochs)?,
        };
        let coreset = Coreset::new(scorer, selector, schedule, self.budget, labels, num_classes, seed)?;
        match self.pool {
            Some(pool) => coreset.with_candidate_pool(pool),
            None => Ok(coreset),
        }
    }

    /// Whether the coreset is re-selected during training.
    pub fn adaptive(&self) -> bool {
        matches!(self.schedule, ScheduleConfig::Every { .. })
    }
}
