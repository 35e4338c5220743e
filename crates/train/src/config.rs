//! The run configuration: serde data (JSON), validated before any work starts.

use std::path::PathBuf;

use quarc_coreset::{BetaSchedule, CandidatePool, CoresetConfig, Normalization};
use quarc_correction::{CascadeMode, SoftmaxAxis};
use quarc_quant_core::QatConfig;
use serde::{Deserialize, Serialize};

use crate::{Error, GroupPolicy, LrPlan, LrSchedule, OptimizerConfig, Result};

/// Which architecture.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ModelKind {
    /// `SmallCnn` (1×28×28).
    SmallCnn,
    /// CIFAR ResNet-20.
    ResNet20,
    /// CIFAR ResNet-18.
    ResNet18,
    /// MobileNetV2 with a width multiplier.
    MobileNetV2 {
        /// Width multiplier.
        width: f64,
    },
}

/// How the coreset is chosen: a named preset of [`CoresetConfig`] (or `Full` for full-data QAT).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Class-balanced random subset, fixed for the run.
    Random,
    /// A fresh class-balanced random subset at every selection epoch (the "resample every R"
    /// control of docs/methods.md, "Controls": data diversity without scoring).
    RandomResample,
    /// RS2 (Okanovic et al. 2023): a fresh class-balanced random subset every epoch, without
    /// replacement across epochs until the data set is used up.
    Rs2,
    /// EL2N of the full-precision reference, one-shot.
    El2n,
    /// Entropy of the reference, one-shot.
    Entropy,
    /// Forgetting events observed during QAT, re-selected every R epochs.
    Forgetting,
    /// Error vector score of the quantized model, every R epochs.
    Evs,
    /// Disagreement score, every R epochs.
    Ds,
    /// ACS: annealed EVS → DS, every R epochs.
    Acs,
    /// QuaRC's relative entropy score alone, every R epochs.
    Res,
    /// QuaRC's score: ACS + λ·RES, every R epochs.
    Quarc,
    /// No coreset: all training data every epoch.
    Full,
}

/// The one table of methods: each name is a [`CoresetConfig::preset`] (except `full`).
const METHODS: [(Method, &str); 12] = [
    (Method::Random, "random"),
    (Method::RandomResample, "random_resample"),
    (Method::Rs2, "rs2"),
    (Method::El2n, "el2n"),
    (Method::Entropy, "entropy"),
    (Method::Forgetting, "forgetting"),
    (Method::Evs, "evs"),
    (Method::Ds, "ds"),
    (Method::Acs, "acs"),
    (Method::Res, "res"),
    (Method::Quarc, "quarc"),
    (Method::Full, "full"),
];

impl Method {
    /// Every method, in table order.
    pub const ALL: [Method; 12] = {
        let mut all = [Method::Full; 12];
        let mut i = 0;
        while i < 12 {
            all[i] = METHODS[i].0;
            i += 1;
        }
        all
    };

    /// The method's name as written in configs and on the command line.
    pub fn name(&self) -> &'static str {
        METHODS.iter().find(|(m, _)| m == self).map_or("full", |(_, n)| n)
    }

    /// Parses [`Method::name`].
    pub fn parse(s: &str) -> Result<Self> {
        METHODS
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(m, _)| *m)
            .ok_or_else(|| Error::InvalidConfig(format!("unknown method `{s}`; one of {:?}", METHODS.map(|(_, n)| n))))
    }

    /// The coreset preset's name, `None` for full-data QAT.
    pub fn preset(&self) -> Option<&'static str> {
        (*self != Method::Full).then(|| self.name())
    }

    /// Whether the method re-selects during training.
    pub fn adaptive(&self) -> bool {
        self.preset()
            .and_then(|p| CoresetConfig::preset(p, 0.5, 1).ok())
            .is_some_and(|c| c.adaptive())
    }
}

/// How the coreset is taken from the scores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SelectorKind {
    /// The highest scores.
    #[default]
    TopK,
    /// CCS: prune the hardest `prune_fraction`, spread the budget over `bins` score strata.
    Stratified {
        /// Score strata.
        bins: usize,
        /// Hardest share dropped first, in [0, 1).
        prune_fraction: f64,
    },
}

/// The divergence of the layer-correction cascade.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClcLoss {
    /// KL of softmax-normalised features (QuaRC; docs/methods.md, "Cascaded layer correction").
    FeatureKl {
        /// Normalisation axis.
        axis: SoftmaxAxis,
    },
    /// Mean squared error.
    Mse,
}

/// Cascaded Layer Correction settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClcConfig {
    /// Feature names to align (the same on both models).
    pub layers: Vec<String>,
    /// Global weight β.
    pub beta: f64,
    /// Divergence.
    pub loss: ClcLoss,
    /// Cascade mode (natural forward or progressive; reference inputs needs block-wise models).
    pub mode: CascadeMode,
}

/// The training objective: `kd_weight·KD(T) + ce_weight·CE + CLC`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveConfig {
    /// Weight of distillation from the full-precision reference.
    pub kd_weight: f64,
    /// Weight of hard-label cross-entropy.
    pub ce_weight: f64,
    /// KD temperature.
    pub temperature: f64,
    /// Layer correction, if any.
    pub clc: Option<ClcConfig>,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        Self {
            kd_weight: 1.0,
            ce_weight: 1.0,
            temperature: 1.0,
            clc: None,
        }
    }
}

/// How the full-precision reference is obtained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferenceConfig {
    /// Where the FP checkpoint lives: loaded if present, trained and written there otherwise.
    /// `None`: `<run dir>/reference.safetensors`.
    pub checkpoint: Option<PathBuf>,
    /// Epochs of FP training on the full data when no checkpoint exists.
    pub epochs: usize,
    /// FP learning rate (SGD momentum 0.9, cosine).
    pub lr: f64,
}

impl Default for ReferenceConfig {
    fn default() -> Self {
        Self {
            checkpoint: None,
            epochs: 10,
            lr: 0.05,
        }
    }
}

/// A whole run.
///
/// The defaults are the configuration chosen on a validation split (docs/tuning.md): RS2 (a
/// fresh class-balanced random 10 % every epoch, no scoring pass), KD + CE. A scored `method`
/// gets the validated selector — coverage-centric stratified selection (50 strata, hardest 10 %
/// pruned) — scoring a fresh random pool of 10× the budget at each selection, so that
/// `TrainConfig { method: Method::Acs, ..Default::default() }` is the best scored coreset
/// ([`quarc_coreset::CoresetConfig::recommended_scored`]).
///
/// ```
/// use quarc_coreset::CoresetConfig;
/// use quarc_train::{Method, TrainConfig, coreset_config};
/// let default = coreset_config(&TrainConfig::default())?.unwrap();
/// assert_eq!((default.scorer, default.selector), {
///     let r = CoresetConfig::recommended(0.1)?;
///     (r.scorer, r.selector)
/// });
/// let acs = TrainConfig { method: Method::Acs, ..TrainConfig::default() };
/// assert_eq!(coreset_config(&acs)?.unwrap(), CoresetConfig::recommended_scored(0.1, 5)?);
/// # Ok::<(), quarc_train::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Architecture.
    pub model: ModelKind,
    /// Number of classes.
    pub num_classes: usize,
    /// Quantization of the twin.
    pub qat: QatConfig,
    /// Coreset method.
    pub method: Method,
    /// Coreset fraction in (0, 1].
    pub fraction: f64,
    /// Re-selection period R for adaptive methods.
    pub select_every: usize,
    /// β(t) for ACS and QuaRC.
    pub beta_schedule: BetaSchedule,
    /// λ of QuaRC's RES term.
    pub quarc_lambda: f64,
    /// How ACS rescales its EVS and DS columns before mixing them (raw by default: both lie in
    /// [0, √2]).
    pub score_normalization: Normalization,
    /// Class-balanced selection.
    pub class_balanced: bool,
    /// Top-k (keep the highest scores) or coverage-centric stratified selection (CCS).
    pub selector: SelectorKind,
    /// Any coreset, as data: when set, it replaces the coreset that `method`, `fraction`,
    /// `select_every`, `beta_schedule`, `quarc_lambda`, `score_normalization`, `class_balanced`
    /// and `selector` describe (`method` then only names the run).
    pub coreset: Option<CoresetConfig>,
    /// Score only a fresh random candidate pool of `multiple` × the budget at each selection
    /// (see [`quarc_coreset::CandidatePool`]); `None` scores the whole data set.
    pub candidate_pool: Option<CandidatePool>,
    /// QAT epochs (each one pass over the current coreset).
    pub epochs: usize,
    /// Training batch size.
    pub batch_size: usize,
    /// Scoring and evaluation batch size.
    pub eval_batch_size: usize,
    /// Optimiser.
    pub optimizer: OptimizerConfig,
    /// Learning-rate plan.
    pub lr: LrPlan,
    /// Parameter groups.
    pub groups: GroupPolicy,
    /// Loss.
    pub objective: ObjectiveConfig,
    /// Pad-crop 4 + flip augmentation (CIFAR); none for Fashion-MNIST.
    pub augment: bool,
    /// Full-precision reference.
    pub reference: ReferenceConfig,
    /// Seed of every random choice.
    pub seed: u64,
    /// Stop after this many QAT epochs in this call (resume later): for tests and time limits.
    pub stop_after: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model: ModelKind::SmallCnn,
            num_classes: 10,
            qat: QatConfig::lsq(2, 2).unwrap_or_default(),
            method: Method::Rs2,
            fraction: 0.1,
            select_every: 5,
            beta_schedule: BetaSchedule::PaperCosine,
            quarc_lambda: 1.0,
            score_normalization: Normalization::None,
            class_balanced: true,
            selector: SelectorKind::Stratified {
                bins: quarc_coreset::CCS_BINS,
                prune_fraction: quarc_coreset::CCS_PRUNE_FRACTION,
            },
            coreset: None,
            candidate_pool: Some(CandidatePool::RECOMMENDED),
            epochs: 20,
            batch_size: 128,
            eval_batch_size: 500,
            optimizer: OptimizerConfig::default(),
            lr: LrPlan {
                base: 0.01,
                schedule: LrSchedule::Cosine { eta_min: 0.0 },
                warmup_epochs: 0,
            },
            groups: GroupPolicy::default(),
            objective: ObjectiveConfig::default(),
            augment: false,
            reference: ReferenceConfig::default(),
            seed: 0,
            stop_after: None,
        }
    }
}

impl TrainConfig {
    /// Checks every setting; called before any work starts.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return bad(format!("fraction must be in (0, 1], got {}", self.fraction));
        }
        if self.epochs == 0 || self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("epochs and batch sizes must be ≥ 1".into());
        }
        if self.select_every == 0 {
            return bad("select_every (R) must be ≥ 1".into());
        }
        if let SelectorKind::Stratified { bins, prune_fraction } = self.selector
            && (bins == 0 || bins > quarc_coreset::MAX_BINS || !(0.0..1.0).contains(&prune_fraction))
        {
            return bad(format!(
                "stratified selector: bins must be in 1..={} and prune_fraction in [0, 1), got {bins} and \
                 {prune_fraction}",
                quarc_coreset::MAX_BINS
            ));
        }
        if self.num_classes < 2 {
            return bad(format!("num_classes must be ≥ 2, got {}", self.num_classes));
        }
        let o = &self.objective;
        if !(o.kd_weight >= 0.0 && o.ce_weight >= 0.0 && o.kd_weight + o.ce_weight > 0.0) {
            return bad(format!(
                "loss weights must be ≥ 0 and not both 0 (kd {}, ce {})",
                o.kd_weight, o.ce_weight
            ));
        }
        if !(o.temperature.is_finite() && o.temperature > 0.0) {
            return bad(format!("KD temperature must be > 0, got {}", o.temperature));
        }
        if let Some(c) = &o.clc {
            if c.layers.is_empty() || !c.beta.is_finite() {
                return bad("CLC needs at least one layer and a finite β".into());
            }
            if c.mode == CascadeMode::ReferenceInputs {
                return bad("the trainer runs CLC in natural-forward or progressive mode".into());
            }
        }
        if self.reference.epochs == 0 || !(self.reference.lr.is_finite() && self.reference.lr > 0.0) {
            return bad("reference training needs epochs ≥ 1 and lr > 0".into());
        }
        if let ModelKind::MobileNetV2 { width } = self.model
            && !(width > 0.0 && width <= 4.0)
        {
            return bad(format!("MobileNetV2 width must be in (0, 4], got {width}"));
        }
        self.lr.validate()?;
        self.qat.validate()?;
        crate::method::coreset_config(self)?;
        Ok(())
    }
}
