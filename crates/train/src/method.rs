//! Builds the scorer, selector and schedule of a [`Method`].

use quarc_coreset::{
    Annealed, Budget, ClassBalanced, Coreset, Direction, Disagreement, El2n, Entropy, ErrorVector, Forgetting,
    Normalization, RandomScore, RelativeEntropy, Scorer, SelectionSchedule, Selector, Stratified, TopK, WeightedSum,
};

use crate::{Method, Result, SelectorKind, TrainConfig};

/// The coreset of a run, or `None` for [`Method::Full`].
pub fn build_coreset(config: &TrainConfig, labels: Vec<u32>) -> Result<Option<Coreset>> {
    let n = labels.len();
    let scorer: Box<dyn Scorer> = match config.method {
        Method::Full => return Ok(None),
        Method::Random => Box::new(RandomScore::new(config.seed)),
        Method::RandomResample => Box::new(RandomScore {
            seed: config.seed,
            resample_each_selection: true,
        }),
        Method::El2n => Box::new(El2n::default()),
        Method::Entropy => Box::new(Entropy::default()),
        // No history at epoch 0: a tiny random term breaks the ties randomly instead of by index.
        Method::Forgetting => Box::new(WeightedSum::new(
            vec![
                (1.0, Box::new(Forgetting::new(n)?)),
                (1e-3, Box::new(RandomScore::new(config.seed))),
            ],
            Normalization::None,
        )?),
        Method::Evs => Box::new(ErrorVector),
        Method::Ds => Box::new(Disagreement),
        Method::Acs => Box::new(Annealed::acs_with(config.beta_schedule, config.score_normalization)),
        Method::Res => Box::new(RelativeEntropy::default()),
        Method::Quarc => Box::new(WeightedSum::new(
            vec![
                (
                    1.0,
                    Box::new(Annealed::acs_with(config.beta_schedule, config.score_normalization)),
                ),
                (config.quarc_lambda, Box::new(RelativeEntropy::default())),
            ],
            Normalization::None,
        )?),
    };
    let inner: Box<dyn Selector> = match config.selector {
        SelectorKind::TopK => Box::new(TopK::highest()),
        SelectorKind::Stratified { bins, prune_fraction } => {
            Box::new(Stratified::new(Direction::KeepHighest, bins, prune_fraction)?)
        }
    };
    let selector: Box<dyn Selector> = if config.class_balanced {
        Box::new(ClassBalanced::boxed(inner))
    } else {
        inner
    };
    let schedule = if config.method.adaptive() {
        SelectionSchedule::every(config.select_every)?
    } else {
        SelectionSchedule::one_shot()
    };
    Ok(Some(Coreset::new(
        scorer,
        selector,
        schedule,
        Budget::Fraction(config.fraction),
        labels,
        config.num_classes,
        config.seed,
    )?))
}
