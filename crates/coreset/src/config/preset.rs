//! The named presets: every method of the project's tables as a [`CoresetConfig`].

use super::{CoresetConfig, ScheduleConfig, ScorerConfig, SelectorConfig, WeightedPart};
use crate::{BetaSchedule, Budget, CandidatePool, Direction, Divergence, Error, ModelSource, Normalization, Result};

/// CCS strata of the recommended scored coreset.
pub const CCS_BINS: usize = 50;
/// Hardest share CCS prunes in the recommended scored coreset.
pub const CCS_PRUNE_FRACTION: f64 = 0.1;

/// Every preset name, in table order.
pub const PRESETS: [&str; 11] = [
    "random",
    "random_resample",
    "rs2",
    "el2n",
    "entropy",
    "forgetting",
    "evs",
    "ds",
    "acs",
    "res",
    "quarc",
];

/// The preset of [`CoresetConfig::recommended`]: the winner on the validation split
/// (docs/tuning.md), level with the best scored selection at 10 % and ahead at 1 %, with no
/// scoring pass.
pub const RECOMMENDED_PRESET: &str = "rs2";

fn acs() -> ScorerConfig {
    ScorerConfig::Acs {
        beta: BetaSchedule::PaperCosine,
        normalization: Normalization::None,
    }
}

fn part(weight: f64, scorer: ScorerConfig) -> WeightedPart {
    WeightedPart { weight, scorer }
}

impl CoresetConfig {
    /// The project's default coreset at `fraction`: [`RECOMMENDED_PRESET`] (RS2, a fresh
    /// class-balanced random subset every epoch, without replacement across epochs).
    ///
    /// ```
    /// use quarc_coreset::{CoresetConfig, SelectorConfig};
    /// let c = CoresetConfig::recommended(0.01)?;
    /// assert_eq!(c.selector, SelectorConfig::Rs2 {});
    /// assert!(c.build((0..100).map(|i| i % 10).collect(), 10, 0)?.needs().index_only); // no scoring pass
    /// # Ok::<(), quarc_coreset::Error>(())
    /// ```
    pub fn recommended(fraction: f64) -> Result<Self> {
        Self::preset(RECOMMENDED_PRESET, fraction, 1)
    }

    /// The best scored coreset on the validation split (docs/tuning.md): ACS scores,
    /// coverage-centric selection (CCS: 50 strata, hardest 10 % pruned), re-selected every
    /// `select_every` epochs from a fresh random candidate pool of 10× the budget
    /// ([`CandidatePool::RECOMMENDED`]), so a pass scores `10·k` samples, not the data set.
    ///
    /// ```
    /// use quarc_coreset::{CandidatePool, CoresetConfig, SelectorConfig};
    /// let c = CoresetConfig::recommended_scored(0.01, 5)?;
    /// assert!(matches!(c.selector, SelectorConfig::Stratified { bins: 50, .. }));
    /// assert_eq!(c.pool, Some(CandidatePool::RECOMMENDED));
    /// # Ok::<(), quarc_coreset::Error>(())
    /// ```
    pub fn recommended_scored(fraction: f64, select_every: usize) -> Result<Self> {
        let mut c = Self::preset("acs", fraction, select_every)?;
        c.selector = SelectorConfig::Stratified {
            bins: CCS_BINS,
            prune_fraction: CCS_PRUNE_FRACTION,
            keep: Direction::KeepHighest,
        };
        c.pool = Some(CandidatePool::RECOMMENDED);
        c.validate()?;
        Ok(c)
    }

    /// The preset `name` (one of [`PRESETS`]) at `fraction`, re-selecting every `select_every`
    /// epochs where the method is adaptive; class-balanced top-k unless the method says otherwise.
    ///
    /// | preset | scorer | selector | schedule |
    /// |---|---|---|---|
    /// | `random` | random | top-k | one-shot |
    /// | `random_resample` | random, new draw per selection | top-k | every R |
    /// | `rs2` | none (random order) | RS2, without replacement across epochs | every epoch |
    /// | `el2n`, `entropy` | of the FP reference | top-k | one-shot |
    /// | `forgetting` | forgetting events (+ 10⁻³ random tie-break) | top-k | every R |
    /// | `evs`, `ds`, `res` | ACS's EVS, DS; QuaRC's RES | top-k | every R |
    /// | `acs` | `β(t)·EVS + (1 − β(t))·DS`, β(t) = cos(πt/2E) | top-k | every R |
    /// | `quarc` | ACS + 1·RES | top-k | every R |
    pub fn preset(name: &str, fraction: f64, select_every: usize) -> Result<Self> {
        let every = ScheduleConfig::Every { epochs: select_every };
        let reference = ModelSource::Reference;
        let (scorer, schedule) = match name {
            "random" => (ScorerConfig::Random { resample: false }, ScheduleConfig::OneShot {}),
            "random_resample" => (ScorerConfig::Random { resample: true }, every),
            "rs2" => (
                ScorerConfig::Random { resample: false },
                ScheduleConfig::Every { epochs: 1 },
            ),
            "el2n" => (ScorerConfig::El2n { source: reference }, ScheduleConfig::OneShot {}),
            "entropy" => (ScorerConfig::Entropy { source: reference }, ScheduleConfig::OneShot {}),
            "forgetting" => (
                ScorerConfig::WeightedSum {
                    parts: vec![
                        part(1.0, ScorerConfig::Forgetting {}),
                        part(1e-3, ScorerConfig::Random { resample: false }),
                    ],
                    normalization: Normalization::None,
                },
                every,
            ),
            "evs" => (ScorerConfig::Evs {}, every),
            "ds" => (ScorerConfig::Ds {}, every),
            "acs" => (acs(), every),
            "res" => (
                ScorerConfig::Res {
                    divergence: Divergence::default(),
                    temperature: 1.0,
                },
                every,
            ),
            "quarc" => (
                ScorerConfig::WeightedSum {
                    parts: vec![
                        part(1.0, acs()),
                        part(
                            1.0,
                            ScorerConfig::Res {
                                divergence: Divergence::default(),
                                temperature: 1.0,
                            },
                        ),
                    ],
                    normalization: Normalization::None,
                },
                every,
            ),
            other => {
                return Err(Error::InvalidConfig(format!(
                    "unknown coreset preset `{other}`; one of {PRESETS:?}"
                )));
            }
        };
        let selector = if name == "rs2" {
            SelectorConfig::Rs2 {}
        } else {
            SelectorConfig::TopK {
                keep: Direction::KeepHighest,
            }
        };
        let config = CoresetConfig {
            scorer,
            selector,
            class_balanced: true,
            budget: Budget::Fraction(fraction),
            schedule,
            pool: None,
        };
        config.validate()?;
        Ok(config)
    }
}
