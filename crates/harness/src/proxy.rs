//! The `+proxy` rows of the tables: EL2N and forgetting scored by full-precision proxy runs over
//! all the training data (the papers' procedures), cached per seed and shared by both methods
//! and every fraction.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use quarc_coreset::{GivenScores, Scorer};
use quarc_train::{Error, Experiment, Method, ProxyConfig, ProxyScores, Result, coreset_config};
use serde::{Deserialize, Serialize};

/// The proxy runs of the `+proxy` rows: two runs of the reference's recipe, EL2N after the
/// first of its epochs (the EL2N paper scores early in training and averages runs), forgetting
/// over every epoch (the forgetting paper counts over a whole training run).
pub const PROXY: ProxyConfig = ProxyConfig {
    runs: 2,
    el2n_after_epochs: 1,
};

/// What computing a seed's proxy scores cost, kept beside the scores.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct ProxyCost {
    runs: usize,
    el2n_after_epochs: usize,
    secs: f64,
}

/// Whether a method spec asks for proxy scores.
pub fn wants_proxy(spec: &str) -> bool {
    spec.split('+').skip(1).any(|s| s == "proxy")
}

/// Gives `exp` a coreset scored by its seed's proxy runs (EL2N or forgetting, by
/// `exp.config.method`), computing them first if `cache` (a `.safetensors` path) has none.
/// Returns the seconds the proxy runs took (also when cached: the cost of the scores).
pub fn attach_proxy(exp: &mut Experiment, cache: &Path) -> Result<f64> {
    let method = exp.config.method;
    if !matches!(method, Method::El2n | Method::Forgetting) {
        return Err(Error::InvalidConfig(format!(
            "`+proxy` scores EL2N or forgetting, not `{}`",
            method.name()
        )));
    }
    let (scores, secs) = load_or_compute(exp, cache)?;
    let (name, values) = match method {
        Method::El2n => ("el2n_proxy", scores.el2n),
        _ => ("forgetting_proxy", scores.forgetting),
    };
    let coreset =
        coreset_config(&exp.config)?.ok_or_else(|| Error::InvalidConfig("`+proxy` needs a coreset method".into()))?;
    let (classes, seed) = (exp.config.num_classes, exp.config.seed);
    exp.custom.coreset = Some(Arc::new(move |labels| {
        let scorer: Box<dyn Scorer> = Box::new(GivenScores::new(name, values.clone())?);
        Ok(coreset.build_with_scorer(scorer, labels, classes, seed)?)
    }));
    Ok(secs)
}

fn load_or_compute(exp: &Experiment, cache: &Path) -> Result<(ProxyScores, f64)> {
    let cost_path = cache.with_extension("json");
    if cache.is_file() {
        let scores = ProxyScores::load(cache, exp.train.len())?;
        let cost: ProxyCost = std::fs::read(&cost_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| Error::Run {
                path: cost_path.clone(),
                reason: "missing or unreadable proxy cost record".into(),
            })?;
        return Ok((scores, cost.secs));
    }
    let t0 = Instant::now();
    let scores = exp.proxy_scores(PROXY)?;
    let secs = t0.elapsed().as_secs_f64();
    let cost = ProxyCost {
        runs: PROXY.runs,
        el2n_after_epochs: PROXY.el2n_after_epochs,
        secs,
    };
    let json = serde_json::to_vec_pretty(&cost).map_err(|e| Error::InvalidConfig(e.to_string()))?;
    quarc_quant_core::atomic_write(&cost_path, &json)?;
    scores.save(cache)?;
    Ok((scores, secs))
}
