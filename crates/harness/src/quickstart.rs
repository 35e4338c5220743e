//! The quickstart's protocol, shared by `examples/quickstart.rs` and `examples/deploy.rs`:
//! SmallCnn, LSQ W2A2, a 10 % coreset of the bundled Fashion-MNIST subset, 12 epochs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quarc_data::{Dataset, Normalize};
use quarc_train::{Experiment, ReferenceConfig, Result, TrainConfig};

/// The project's default method, `TrainConfig::default()`'s (picked on a validation split,
/// docs/tuning.md): RS2.
pub const RECOMMENDED: &str = quarc_coreset::RECOMMENDED_PRESET;

/// The best scored selection on the validation split: ACS scores, coverage-centric stratified
/// selection, scoring a fresh candidate pool of 10× the budget.
pub const BEST_SCORED: &str = "acs+ccs+pool";

/// The quickstart's runs: label and method spec (see [`crate::protocol::fmnist_w2a2`]).
pub const RUNS: [(&str, &str); 5] = [
    ("random", "random"),
    ("RS2 (default)", RECOMMENDED),
    ("ACS", "acs"),
    ("QuaRC (score + CLC)", "quarc+clc"),
    ("ACS + CCS (best scored)", BEST_SCORED),
];

/// The configuration of the quickstart's run of `spec`, its FP reference shared under `out`.
pub fn config(spec: &str, out: &Path) -> Result<TrainConfig> {
    let reference = ReferenceConfig {
        checkpoint: Some(out.join("reference.safetensors")),
        epochs: 4,
        lr: 0.05,
    };
    let mut c = crate::protocol::fmnist_w2a2(spec, 0.1, 12, 0, reference)?;
    c.select_every = 4;
    c.batch_size = 64;
    c.eval_batch_size = 500;
    c.validate()?;
    Ok(c)
}

/// The run directory of `spec` under `out`.
pub fn run_dir(spec: &str, out: &Path) -> PathBuf {
    out.join(spec)
}

/// The quickstart's experiment for `spec` on `train`/`test`.
pub fn experiment(spec: &str, out: &Path, train: Arc<dyn Dataset>, test: Arc<dyn Dataset>) -> Result<Experiment> {
    Ok(Experiment {
        config: config(spec, out)?,
        train,
        test,
        normalize: Some(Normalize::fashion_mnist()),
        run_dir: run_dir(spec, out),
        device: candle_core::Device::Cpu,
        verbose: true,
        noise: None,
        custom: Default::default(),
    })
}
