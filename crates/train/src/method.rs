//! The coreset of a run: the method's [`CoresetConfig`] preset with the run's overrides.

use quarc_coreset::{Coreset, CoresetConfig, Direction, ScorerConfig, SelectorConfig, WeightedPart};

use crate::{Method, Result, SelectorKind, TrainConfig};

/// The run's coreset as data (validated), or `None` for full-data QAT: `config.coreset` when
/// set, else the preset of `config.method` with the run's fraction, R, β schedule, λ, score
/// normalisation, class balance, selector and candidate pool.
pub fn coreset_config(config: &TrainConfig) -> Result<Option<CoresetConfig>> {
    if let Some(c) = &config.coreset {
        c.validate()?;
        return Ok(Some(c.clone()));
    }
    let Some(name) = config.method.preset() else {
        return Ok(None);
    };
    let mut c = CoresetConfig::preset(name, config.fraction, config.select_every)?;
    set_beta(&mut c.scorer, config);
    if let (Method::Quarc, ScorerConfig::WeightedSum { parts, .. }) = (config.method, &mut c.scorer) {
        parts[1].weight = config.quarc_lambda; // ACS + λ·RES
    }
    c.class_balanced = config.class_balanced;
    c.pool = config.candidate_pool;
    if let (SelectorKind::Stratified { bins, prune_fraction }, SelectorConfig::TopK { .. }) =
        (config.selector, &c.selector)
    {
        c.selector = SelectorConfig::Stratified {
            bins,
            prune_fraction,
            keep: Direction::KeepHighest,
        };
    }
    c.validate()?;
    Ok(Some(c))
}

/// The run's β schedule and score normalisation into every ACS part of the scorer.
fn set_beta(scorer: &mut ScorerConfig, config: &TrainConfig) {
    match scorer {
        ScorerConfig::Acs { beta, normalization } => {
            *beta = config.beta_schedule;
            *normalization = config.score_normalization;
        }
        ScorerConfig::WeightedSum { parts, .. } => {
            for WeightedPart { scorer, .. } in parts.iter_mut() {
                set_beta(scorer, config);
            }
        }
        _ => {}
    }
}

/// The coreset of a run, or `None` for full-data QAT.
pub fn build_coreset(config: &TrainConfig, labels: Vec<u32>) -> Result<Option<Coreset>> {
    coreset_config(config)?
        .map(|c| c.build(labels, config.num_classes, config.seed))
        .transpose()
        .map_err(Into::into)
}
