//! Named experiment protocols: the exact configurations behind the tables in docs/results.md,
//! so the table, the robustness and the tuning examples cannot drift apart.

use quarc_coreset::CandidatePool;
use quarc_correction::SoftmaxAxis;

use quarc_train::{ClcConfig, ClcLoss, Method, ObjectiveConfig, ReferenceConfig, Result, SelectorKind, TrainConfig};

/// The method suffixes [`fmnist_w2a2`] accepts.
pub const SUFFIXES: [&str; 5] = ["clc", "ccs", "noprune", "pool", "proxy"];

/// The candidate pool of `+pool`, as a multiple of the budget (the recommended pool).
pub const POOL_MULTIPLE: f64 = CandidatePool::RECOMMENDED.multiple;

/// The FMNIST-W2A2 protocol (docs/results.md) for one method spec: `SmallCnn`, LSQ W2A2 on the
/// middle layers, KD (T = 1) + CE, SGD momentum 0.9, cosine LR, `epochs` over the current
/// coreset, batch 128, R = 5, class-balanced selection.
///
/// `spec` is a [`Method`] name, optionally followed by `+clc` (Cascaded Layer Correction on
/// `conv2` and `conv3`, feature KL after global pooling, β = 1), `+ccs` (coverage-centric
/// stratified selection over the method's score: 50 strata, hardest 10 % pruned; with `+noprune`
/// as well, nothing pruned: the setting that led at 10 % on the validation split) and/or `+pool`
/// (score only a fresh random candidate pool of [`POOL_MULTIPLE`] × the budget at each
/// selection). `+proxy` (EL2N and forgetting only) scores with full-precision proxy runs over all
/// the training data instead (see [`crate::proxy`]; the configuration is the method's, the
/// runner attaches the proxy's coreset). Full-data QAT ignores `fraction`.
///
/// ```
/// use quarc_harness::protocol;
/// use quarc_train::{Method, ReferenceConfig, SelectorKind};
/// let c = protocol::fmnist_w2a2("acs+ccs", 0.01, 20, 3, ReferenceConfig::default())?;
/// assert_eq!((c.method, c.fraction, c.seed, c.select_every), (Method::Acs, 0.01, 3, 5));
/// assert!(matches!(c.selector, SelectorKind::Stratified { bins: 50, .. }) && c.objective.clc.is_none());
/// assert!(c.candidate_pool.is_none());
/// let pooled = protocol::fmnist_w2a2("acs+ccs+pool", 0.01, 20, 3, ReferenceConfig::default())?;
/// assert_eq!(pooled.candidate_pool.map(|p| p.multiple), Some(protocol::POOL_MULTIPLE));
/// let unpruned = protocol::fmnist_w2a2("acs+ccs+noprune", 0.1, 20, 0, ReferenceConfig::default())?;
/// assert!(matches!(unpruned.selector, SelectorKind::Stratified { bins: 50, prune_fraction: 0.0 }));
/// assert!(protocol::fmnist_w2a2("acs+noprune", 0.1, 20, 0, ReferenceConfig::default()).is_err());
/// assert!(protocol::fmnist_w2a2("forgetting+proxy", 0.1, 20, 0, ReferenceConfig::default()).is_ok());
/// assert!(protocol::fmnist_w2a2("acs+proxy", 0.1, 20, 0, ReferenceConfig::default()).is_err());
/// assert_eq!(protocol::fmnist_w2a2("full", 0.01, 20, 0, ReferenceConfig::default())?.fraction, 1.0);
/// let clc = protocol::fmnist_w2a2("quarc+clc", 0.1, 20, 0, ReferenceConfig::default())?.objective.clc.unwrap();
/// assert_eq!((clc.layers, clc.beta), (vec!["conv2".to_string(), "conv3".into()], 1.0));
/// assert!(protocol::fmnist_w2a2("nope", 0.1, 20, 0, ReferenceConfig::default()).is_err());
/// assert!(protocol::fmnist_w2a2("acs+foo", 0.1, 20, 0, ReferenceConfig::default()).is_err());
/// assert!(protocol::fmnist_w2a2("acs", 1.5, 20, 0, ReferenceConfig::default()).is_err());
/// # Ok::<(), quarc_train::Error>(())
/// ```
pub fn fmnist_w2a2(
    spec: &str,
    fraction: f64,
    epochs: usize,
    seed: u64,
    reference: ReferenceConfig,
) -> Result<TrainConfig> {
    let suffixes: Vec<&str> = spec.split('+').skip(1).collect();
    if let Some(extra) = suffixes.iter().find(|p| !SUFFIXES.contains(p)) {
        return Err(quarc_train::Error::InvalidConfig(format!(
            "unknown method suffix `+{extra}` in `{spec}`; use any of {SUFFIXES:?}"
        )));
    }
    let has = |s: &str| suffixes.contains(&s);
    let (clc, ccs) = (has("clc"), has("ccs"));
    if has("noprune") && !ccs {
        return Err(quarc_train::Error::InvalidConfig(format!(
            "`+noprune` in `{spec}` changes CCS's pruned share; add `+ccs`"
        )));
    }
    let base = spec.split('+').next().unwrap_or(spec);
    let method = Method::parse(base)?;
    if has("proxy") && !matches!(method, Method::El2n | Method::Forgetting) {
        return Err(quarc_train::Error::InvalidConfig(format!(
            "`+proxy` in `{spec}` scores EL2N or forgetting only"
        )));
    }
    let config = TrainConfig {
        method,
        fraction: if method == Method::Full { 1.0 } else { fraction },
        epochs,
        select_every: 5,
        batch_size: 128,
        eval_batch_size: 1000,
        objective: ObjectiveConfig {
            clc: clc.then(|| ClcConfig {
                layers: vec!["conv2".into(), "conv3".into()],
                beta: 1.0,
                loss: ClcLoss::FeatureKl {
                    axis: SoftmaxAxis::ChannelAfterGap,
                },
                mode: Default::default(),
            }),
            ..Default::default()
        },
        selector: if ccs {
            SelectorKind::Stratified {
                bins: 50,
                prune_fraction: if has("noprune") { 0.0 } else { 0.1 },
            }
        } else {
            SelectorKind::TopK
        },
        candidate_pool: has("pool").then_some(CandidatePool {
            multiple: POOL_MULTIPLE,
        }),
        reference,
        seed,
        ..TrainConfig::default()
    };
    config.validate()?;
    Ok(config)
}
