//! Scores from full-precision proxy runs over all the training data, computed the way the EL2N
//! paper (Paul et al. 2021: early in training, averaged over runs) and the forgetting paper
//! (Toneva et al. 2019: events over a whole training run) compute them.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use quarc_base::functional::error_vector_norm;
use quarc_base::mix;
use quarc_coreset::{Forgetting, ModelOutput, Progress, ScoreInput, Scorer};
use quarc_data::{Augment, BatchLoader, LoaderConfig};
use quarc_models::{Mode, Model, checkpoint};
use serde::{Deserialize, Serialize};

use super::reference::FpEvent;
use super::{BuiltIn, Experiment, ModelFactory};
use crate::{Error, Result};

/// The most proxy runs accepted: each is a full-data training run, so a typo must not become days.
pub const MAX_PROXY_RUNS: usize = 100;

/// How the proxy runs go. Each run trains a fresh full-precision model on all the training data
/// with the reference's recipe (`config.reference`: epochs, learning rate; SGD momentum 0.9,
/// cosine, CE), from its own initial weights (built-in models) and batch order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Independent runs; both scores are averaged over them (1..=[`MAX_PROXY_RUNS`]).
    pub runs: usize,
    /// EL2N is taken after this many epochs of each run (1..=`config.reference.epochs`): early
    /// in training, as the EL2N paper scores.
    pub el2n_after_epochs: usize,
}

impl Default for ProxyConfig {
    /// Two runs, EL2N after the first epoch.
    fn default() -> Self {
        Self {
            runs: 2,
            el2n_after_epochs: 1,
        }
    }
}

/// Per-sample scores (by dataset index) from [`Experiment::proxy_scores`].
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyScores {
    /// EL2N, `‖softmax(z) − onehot(y)‖₂` in evaluation mode after
    /// [`ProxyConfig::el2n_after_epochs`], averaged over the runs.
    pub el2n: Vec<f32>,
    /// Forgetting events (a correct prediction on a training batch turning incorrect at the
    /// sample's next batch) over every epoch of a run, averaged over the runs; a sample never
    /// predicted correctly in a run counts its presentations + 1 there.
    pub forgetting: Vec<f32>,
}

impl ProxyScores {
    /// Writes both score vectors to a safetensors file (`el2n`, `forgetting`), atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let cpu = Device::Cpu;
        let n = self.el2n.len();
        let tensors: HashMap<String, Tensor> = [
            ("el2n".to_string(), Tensor::from_slice(&self.el2n, n, &cpu)?),
            (
                "forgetting".to_string(),
                Tensor::from_slice(&self.forgetting, self.forgetting.len(), &cpu)?,
            ),
        ]
        .into();
        Ok(checkpoint::save_tensors(&tensors, path)?)
    }

    /// Reads scores written by [`ProxyScores::save`] for a data set of `num_samples` samples.
    /// Errors when the file is unreadable, lacks a vector, or holds the wrong type, length or a
    /// non-finite value.
    pub fn load(path: impl AsRef<Path>, num_samples: usize) -> Result<Self> {
        let path = path.as_ref();
        let bad = |reason: String| Error::Run {
            path: path.to_path_buf(),
            reason,
        };
        let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| bad(e.to_string()))?;
        let vector = |name: &str| -> Result<Vec<f32>> {
            let t = tensors.get(name).ok_or_else(|| bad(format!("no `{name}` scores")))?;
            if t.dtype() != DType::F32 || t.dims() != [num_samples] {
                return Err(bad(format!(
                    "`{name}` is {:?} {:?}, expected F32 [{num_samples}]",
                    t.dtype(),
                    t.dims()
                )));
            }
            let v = t.to_vec1::<f32>()?;
            match v.iter().position(|x| !x.is_finite()) {
                Some(i) => Err(bad(format!("`{name}` score of sample {i} is not finite"))),
                None => Ok(v),
            }
        };
        Ok(Self {
            el2n: vector("el2n")?,
            forgetting: vector("forgetting")?,
        })
    }
}

impl ProxyConfig {
    /// Checks the run count and the EL2N epoch against `reference_epochs`.
    pub fn validate(&self, reference_epochs: usize) -> Result<()> {
        if !(1..=MAX_PROXY_RUNS).contains(&self.runs) {
            return Err(Error::InvalidConfig(format!(
                "proxy runs must be in 1..={MAX_PROXY_RUNS}, got {}",
                self.runs
            )));
        }
        if !(1..=reference_epochs).contains(&self.el2n_after_epochs) {
            return Err(Error::InvalidConfig(format!(
                "proxy el2n_after_epochs must be in 1..={reference_epochs} (the reference's epochs), got {}",
                self.el2n_after_epochs
            )));
        }
        Ok(())
    }
}

impl Experiment {
    /// Trains `proxy.runs` full-precision proxy models on all the training data and returns the
    /// EL2N and forgetting scores of every training sample, averaged over the runs. Deterministic
    /// for a seed. With a user's model factory every run starts from the factory's weights and
    /// only the batch order differs.
    pub fn proxy_scores(&self, proxy: ProxyConfig) -> Result<ProxyScores> {
        proxy.validate(self.config.reference.epochs)?;
        let n = self.train.len();
        let (mut el2n, mut forgetting) = (vec![0.0f32; n], vec![0.0f32; n]);
        for run in 0..proxy.runs {
            let t0 = Instant::now();
            let (e, f) = self.proxy_run(run, proxy.el2n_after_epochs)?;
            for (acc, v) in el2n.iter_mut().zip(e).chain(forgetting.iter_mut().zip(f)) {
                *acc += v / proxy.runs as f32;
            }
            self.say(format!(
                "proxy run {}/{} done ({:.1} s)",
                run + 1,
                proxy.runs,
                t0.elapsed().as_secs_f64()
            ));
        }
        Ok(ProxyScores { el2n, forgetting })
    }

    /// One proxy run: its EL2N after `el2n_after` epochs and its forgetting scores.
    fn proxy_run(&self, run: usize, el2n_after: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let c = &self.config;
        let seed = mix(c.seed ^ mix(0x5052_4f58_0000 + run as u64));
        let factory: std::sync::Arc<dyn ModelFactory> = match &self.custom.model {
            Some(f) => f.clone(),
            None => std::sync::Arc::new(BuiltIn {
                kind: c.model,
                classes: c.num_classes,
                seed,
            }),
        };
        let vars = VarMap::new();
        let model = factory.build(&vars, None, &self.device)?;
        let augment = if c.augment { Augment::cifar() } else { Augment::none() };
        let cfg = LoaderConfig::train(c.batch_size, augment, self.normalize.clone(), seed);
        let loader = BatchLoader::new(self.train.clone(), cfg, &self.device)?;
        let n = self.train.len();
        let mut tracker = Forgetting::new(n)?;
        let mut el2n: Option<Vec<f32>> = None;
        let label = format!("proxy {}", run + 1);
        self.train_fp(&vars, model.as_ref(), &loader, &label, &mut |event| match event {
            FpEvent::Batch { batch, logits } => {
                let out = ModelOutput::logits_only(logits.clone());
                let input = ScoreInput {
                    indices: &batch.indices,
                    labels: &batch.labels,
                    student: &out,
                    reference: None,
                };
                Ok(tracker.observe(&input, &Progress::new(0, 1))?)
            }
            FpEvent::EpochEnd { epochs_done } if epochs_done == el2n_after => {
                el2n = Some(self.el2n_of(model.as_ref())?);
                Ok(())
            }
            FpEvent::EpochEnd { .. } => Ok(()),
        })?;
        let el2n = el2n.ok_or_else(|| Error::InvalidConfig("proxy run ended before its EL2N epoch".into()))?;
        Ok((el2n, tracker.scores()))
    }

    /// EL2N of every training sample under `model` (evaluation mode, no augmentation).
    fn el2n_of(&self, model: &dyn Model) -> Result<Vec<f32>> {
        let mut out = vec![0.0f32; self.train.len()];
        for batch in self.loader(&self.train, false)?.epoch(0, None)? {
            let b = batch?;
            let logits = model.forward_mode(&b.images, Mode::Eval)?.logits;
            let scores = error_vector_norm(&logits, &b.labels)?
                .to_dtype(DType::F32)?
                .to_vec1::<f32>()?;
            for (&i, s) in b.indices.iter().zip(scores) {
                if let Some(slot) = out.get_mut(i) {
                    *slot = s;
                }
            }
        }
        Ok(out)
    }
}
