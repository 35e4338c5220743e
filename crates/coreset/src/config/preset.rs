//! The named presets: every method of the project's tables as a [`CoresetConfig`].

use super::{CoresetConfig, ScheduleConfig, ScorerConfig, SelectorConfig, WeightedPart};
use crate::{BetaSchedule, Budget, Direction, Divergence, Error, ModelSource, Normalization, Result};

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
